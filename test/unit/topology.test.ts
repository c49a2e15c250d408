import { describe, expect, it } from 'vitest';
import { ConfigError, defineTopology, type TopologyDefinition } from '../../src/index.js';

function problems(def: TopologyDefinition): readonly string[] {
  try {
    defineTopology(def);
  } catch (err) {
    if (err instanceof ConfigError) {
      expect(err.code).toBe('CONFIG_INVALID');
      return err.problems;
    }
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('defineTopology', () => {
  it('defaults to durable classic queues and durable exchanges', () => {
    const t = defineTopology({ exchanges: { orders: { type: 'topic' } }, queues: { q: {} } });
    expect(t.exchange('orders')).toMatchObject({ type: 'topic', durable: true, autoDelete: false, internal: false });
    expect(t.queue('q')).toMatchObject({ type: 'classic', durable: true, exclusive: false, autoDelete: false, arguments: {}, deadLetter: undefined });
  });

  it('turns named options into x-arguments, with durations in ms', () => {
    const t = defineTopology({
      queues: {
        c: { maxLength: 10, maxLengthBytes: 1000, overflow: 'reject-publish', messageTtl: '10s', expires: '1h', singleActiveConsumer: true, maxPriority: 5 },
        q: { type: 'quorum', deliveryLimit: 3, deadLetterStrategy: 'at-least-once', overflow: 'reject-publish' },
        s: { type: 'stream', arguments: { 'x-max-age': '1D' } },
      },
    });
    expect(t.queue('c')?.arguments).toEqual({
      'x-max-length': 10,
      'x-max-length-bytes': 1000,
      'x-overflow': 'reject-publish',
      'x-message-ttl': 10_000,
      'x-expires': 3_600_000,
      'x-single-active-consumer': true,
      'x-max-priority': 5,
    });
    expect(t.queue('q')?.arguments).toEqual({ 'x-queue-type': 'quorum', 'x-delivery-limit': 3, 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' });
    expect(t.queue('s')?.arguments).toEqual({ 'x-queue-type': 'stream', 'x-max-age': '1D' });
  });

  it('deadLetter: true declares <queue>.dlq of the same kind just before the queue, via the default exchange', () => {
    const t = defineTopology({ queues: { 'billing.orders': { type: 'quorum', deadLetter: true }, plain: { deadLetter: true } } });
    expect(t.queues.map((q) => q.name)).toEqual(['billing.orders.dlq', 'billing.orders', 'plain.dlq', 'plain']);
    expect(t.queue('billing.orders.dlq')).toMatchObject({ type: 'quorum', deadLetterOf: 'billing.orders' });
    expect(t.queue('plain.dlq')).toMatchObject({ type: 'classic', deadLetterOf: 'plain' });
    expect(t.queue('billing.orders')?.arguments).toMatchObject({ 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing.orders.dlq' });
  });

  it('accepts bindings to declared and built-in exchanges', () => {
    const t = defineTopology({
      exchanges: { orders: { type: 'topic' } },
      queues: { q: { bindings: [{ exchange: 'orders', routingKey: 'order.*' }, { exchange: 'amq.fanout' }] } },
    });
    expect(t.queue('q')?.bindings).toEqual([
      { exchange: 'orders', routingKey: 'order.*', arguments: {} },
      { exchange: 'amq.fanout', routingKey: '', arguments: {} },
    ]);
  });

  it('reports every problem in one ConfigError', () => {
    const found = problems({
      exchanges: { 'amq.mine': { type: 'direct' } },
      queues: {
        a: { bindings: [{ exchange: 'nowhere' }], deliveryLimit: 3 },
        b: { type: 'quorum', exclusive: true, maxPriority: 3 },
        c: { type: 'stream', deadLetter: true },
        d: { maxLength: 5, arguments: { 'x-max-length': 6 } },
      },
    });
    expect(found).toHaveLength(7);
    expect(found.join('\n')).toMatch(/nowhere/);
  });

  it('rejects unknown keys, bad durations and bad types', () => {
    expect(problems({ queues: { q: { maxlength: 5 } as never } }).length).toBe(1);
    expect(problems({ queues: { q: { messageTtl: '10 parsecs' } } }).length).toBe(1);
    expect(problems({ exchanges: { e: { type: 'x-delayed' as 'direct' } } }).length).toBe(1);
  });

  it('refuses a deadLetter queue name that collides with a declared queue', () => {
    expect(problems({ queues: { q: { deadLetter: true }, 'q.dlq': {} } }).length).toBe(1);
  });
});
