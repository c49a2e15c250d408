import { describe, expect, it } from 'vitest';
import { ConfigError, defineTopology, type QueueDefinition, type TopologyDefinition } from '../../src/index.js';

/** The problems defineTopology() reports for `def`; [] if it accepts it. */
function problemsOf(def: TopologyDefinition): readonly string[] {
  try {
    defineTopology(def);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.code).toBe('CONFIG_INVALID');
    return err.problems;
  }
}

/** The x-arguments declared for a single queue defined as `q`. */
function argumentsOf(q: QueueDefinition): Readonly<Record<string, unknown>> | undefined {
  return defineTopology({ queues: { q } }).queue('q')?.arguments;
}

/** A classic queue declared with every default, as defineTopology() describes it. */
function defaultClassicQueue(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, type: 'classic', durable: true, exclusive: false, autoDelete: false, arguments: { 'x-queue-type': 'classic' }, bindings: [], deadLetter: undefined, deadLetterOf: undefined, ...extra };
}

describe('defineTopology: what gets declared', () => {
  it('defaults to durable classic queues (x-queue-type always sent) and durable exchanges', () => {
    const t = defineTopology({ exchanges: { orders: { type: 'topic' } }, queues: { b: {}, a: {} } });
    expect(t.exchanges).toEqual([{ name: 'orders', type: 'topic', durable: true, autoDelete: false, internal: false, arguments: {} }]);
    expect(t.queue('a')).toEqual(defaultClassicQueue('a'));
    expect(t.queues.map((q) => q.name)).toEqual(['b', 'a']);
    expect(t.queue('missing')).toBeUndefined();
  });

  it('an empty definition declares nothing', () => {
    const t = defineTopology({});
    expect(t.exchanges).toEqual([]);
    expect(t.queues).toEqual([]);
  });

  it.each<[string, QueueDefinition, Record<string, unknown>]>([
    ['maxLength', { maxLength: 10 }, { 'x-queue-type': 'classic', 'x-max-length': 10 }],
    ['maxLengthBytes', { maxLengthBytes: 1_000 }, { 'x-queue-type': 'classic', 'x-max-length-bytes': 1_000 }],
    ['overflow', { overflow: 'reject-publish' }, { 'x-queue-type': 'classic', 'x-overflow': 'reject-publish' }],
    ["messageTtl '10s'", { messageTtl: '10s' }, { 'x-queue-type': 'classic', 'x-message-ttl': 10_000 }],
    ["messageTtl '250ms'", { messageTtl: '250ms' }, { 'x-queue-type': 'classic', 'x-message-ttl': 250 }],
    ['messageTtl in ms', { messageTtl: 2_500 }, { 'x-queue-type': 'classic', 'x-message-ttl': 2_500 }],
    ["expires '5m'", { expires: '5m' }, { 'x-queue-type': 'classic', 'x-expires': 300_000 }],
    ["expires '1h'", { expires: '1h' }, { 'x-queue-type': 'classic', 'x-expires': 3_600_000 }],
    ['singleActiveConsumer', { singleActiveConsumer: true }, { 'x-queue-type': 'classic', 'x-single-active-consumer': true }],
    ['maxPriority', { maxPriority: 5 }, { 'x-queue-type': 'classic', 'x-max-priority': 5 }],
    ['type quorum', { type: 'quorum' }, { 'x-queue-type': 'quorum' }],
    ['deliveryLimit', { type: 'quorum', deliveryLimit: 3 }, { 'x-queue-type': 'quorum', 'x-delivery-limit': 3 }],
    [
      'deadLetterStrategy',
      { type: 'quorum', deadLetterStrategy: 'at-least-once', overflow: 'reject-publish' },
      { 'x-queue-type': 'quorum', 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' },
    ],
    ['type stream', { type: 'stream' }, { 'x-queue-type': 'stream' }],
    ['raw arguments', { type: 'stream', arguments: { 'x-max-age': '1D' } }, { 'x-queue-type': 'stream', 'x-max-age': '1D' }],
  ])('%s becomes its x-argument', (_option, q, expected) => {
    expect(argumentsOf(q)).toEqual(expected);
  });

  it('turns exchange options into flags and arguments', () => {
    const t = defineTopology({
      exchanges: {
        main: { type: 'direct', alternateExchange: 'unrouted', durable: false, autoDelete: true, arguments: { 'x-custom': 1 } },
        unrouted: { type: 'fanout', internal: true },
      },
    });
    expect(t.exchange('main')).toEqual({
      name: 'main',
      type: 'direct',
      durable: false,
      autoDelete: true,
      internal: false,
      arguments: { 'x-custom': 1, 'alternate-exchange': 'unrouted' },
    });
    expect(t.exchange('unrouted')).toMatchObject({ type: 'fanout', internal: true, durable: true });
  });

  it('deadLetter: true declares a classic <queue>.dlq just before a classic queue, through the default exchange', () => {
    const t = defineTopology({ queues: { first: {}, plain: { deadLetter: true, maxLength: 5 } } });
    expect(t.queues.map((q) => q.name)).toEqual(['first', 'plain.dlq', 'plain']);
    expect(t.queue('plain.dlq')).toEqual(defaultClassicQueue('plain.dlq', { deadLetterOf: 'plain' }));
    expect(t.queue('plain')?.arguments).toEqual({ 'x-queue-type': 'classic', 'x-max-length': 5, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'plain.dlq' });
    expect(t.queue('plain')?.deadLetter).toEqual({ exchange: '', routingKey: 'plain.dlq' });
  });

  it('deadLetter: true on a quorum queue declares a quorum dead-letter queue', () => {
    const t = defineTopology({ queues: { 'billing.orders': { type: 'quorum', deadLetter: true } } });
    expect(t.queues.map((q) => q.name)).toEqual(['billing.orders.dlq', 'billing.orders']);
    // As replicated as its queue; and peeking it (get, then return) must never reach a delivery limit.
    expect(t.queue('billing.orders.dlq')).toMatchObject({ type: 'quorum', durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2_147_483_647 }, deadLetterOf: 'billing.orders' });
    expect(t.queue('billing.orders')?.arguments).toEqual({
      'x-queue-type': 'quorum',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': 'billing.orders.dlq',
    });
  });

  it('deadLetter: { exchange, routingKey } points at that exchange and declares no extra queue', () => {
    const t = defineTopology({
      exchanges: { dlx: { type: 'direct' } },
      queues: { a: { deadLetter: { exchange: 'dlx', routingKey: 'dead' } }, b: { deadLetter: { exchange: 'dlx' } } },
    });
    expect(t.queues.map((q) => q.name)).toEqual(['a', 'b']);
    expect(t.queue('a')?.arguments).toEqual({ 'x-queue-type': 'classic', 'x-dead-letter-exchange': 'dlx', 'x-dead-letter-routing-key': 'dead' });
    expect(t.queue('b')?.arguments).toEqual({ 'x-queue-type': 'classic', 'x-dead-letter-exchange': 'dlx' });
  });

  it('binds to declared and built-in exchanges; the routing key defaults to empty', () => {
    const t = defineTopology({
      exchanges: { orders: { type: 'topic' } },
      queues: { q: { bindings: [{ exchange: 'orders', routingKey: 'order.*' }, { exchange: 'amq.fanout' }, { exchange: 'amq.headers', arguments: { 'x-match': 'any' } }] } },
    });
    expect(t.queue('q')?.bindings).toEqual([
      { exchange: 'orders', routingKey: 'order.*', arguments: {} },
      { exchange: 'amq.fanout', routingKey: '', arguments: {} },
      { exchange: 'amq.headers', routingKey: '', arguments: { 'x-match': 'any' } },
    ]);
  });
});

describe('defineTopology: ConfigError', () => {
  it.each<[string, TopologyDefinition]>([
    ["an exchange name starting with 'amq.'", { exchanges: { 'amq.mine': { type: 'direct' } } }],
    ["a queue name starting with 'amq.'", { queues: { 'amq.mine': {} } }],
    ['an empty queue name', { queues: { '': {} } }],
    ['a binding to an undeclared exchange', { queues: { q: { bindings: [{ exchange: 'nowhere' }] } } }],
    ["a binding to the default exchange ''", { queues: { q: { bindings: [{ exchange: '' }] } } }],
    ['dead-lettering to an undeclared exchange', { queues: { q: { deadLetter: { exchange: 'nowhere' } } } }],
    ['deliveryLimit on a classic queue', { queues: { q: { deliveryLimit: 3 } } }],
    ['deadLetterStrategy on a classic queue', { queues: { q: { deadLetterStrategy: 'at-most-once' } } }],
    ["deadLetterStrategy 'at-least-once' without overflow 'reject-publish'", { queues: { q: { type: 'quorum', deadLetterStrategy: 'at-least-once' } } }],
    ['maxPriority on a quorum queue', { queues: { q: { type: 'quorum', maxPriority: 3 } } }],
    ['an exclusive quorum queue', { queues: { q: { type: 'quorum', exclusive: true } } }],
    ['a non-durable quorum queue', { queues: { q: { type: 'quorum', durable: false } } }],
    ['an auto-delete stream', { queues: { q: { type: 'stream', autoDelete: true } } }],
    ['deadLetter on a stream', { queues: { q: { type: 'stream', deadLetter: true } } }],
    ['an argument set both by name and raw', { queues: { q: { maxLength: 5, arguments: { 'x-max-length': 6 } } } }],
    ['a generated .dlq name that is declared too', { queues: { q: { deadLetter: true }, 'q.dlq': {} } }],
    ['an unknown queue option', { queues: { q: { maxlength: 5 } as QueueDefinition } }],
    ['an unknown exchange option', { exchanges: { e: { type: 'topic', durible: true } as { type: 'topic' } } }],
    ['an unknown binding option', { exchanges: { e: { type: 'topic' } }, queues: { q: { bindings: [{ exchange: 'e', key: 'a' } as { exchange: string }] } } }],
    ['an unknown top-level key', { exchanges: {}, queue: {} } as TopologyDefinition],
    ['an unknown exchange type', { exchanges: { e: { type: 'x-delayed-message' as 'direct' } } }],
    ['a bad duration string', { queues: { q: { messageTtl: '10 parsecs' } } }],
    ['a duration in an unknown unit', { queues: { q: { expires: '2d' } } }],
    ['a negative duration', { queues: { q: { messageTtl: -1 } } }],
    ['a negative maxLength', { queues: { q: { maxLength: -1 } } }],
    // Refused by RabbitMQ 4.3: a ConfigError before anything reaches the broker.
    ['a transient non-exclusive classic queue', { queues: { q: { durable: false } } }],
    ['x-queue-master-locator', { queues: { q: { arguments: { 'x-queue-master-locator': 'min-masters' } } } }],
    ['x-queue-mode', { queues: { q: { arguments: { 'x-queue-mode': 'lazy' } } } }],
    ['x-queue-version 1', { queues: { q: { arguments: { 'x-queue-version': 1 } } } }],
    ['a classic mirroring argument', { queues: { q: { arguments: { 'x-ha-policy': 'all' } } } }],
  ])('reports %s as one problem', (_what, def) => {
    expect(problemsOf(def)).toHaveLength(1);
  });

  it('says what to use instead of what RabbitMQ 4.3 refuses', () => {
    expect(problemsOf({ queues: { q: { durable: false } } })[0]).toMatch(/queues\.q: .*transient_nonexcl_queues.*exclusive: true/);
    expect(problemsOf({ queues: { q: { arguments: { 'x-queue-master-locator': 'min-masters' } } } })[0]).toMatch(/x-queue-leader-locator/);
    expect(problemsOf({ queues: { q: { arguments: { 'x-queue-version': 1 } } } })[0]).toMatch(/version 2 is the default/);
  });

  it('accepts what RabbitMQ 4.3 still takes: a transient exclusive queue, x-queue-version 2, x-queue-leader-locator', () => {
    expect(() =>
      defineTopology({
        queues: {
          replies: { durable: false, exclusive: true, autoDelete: true },
          v2: { arguments: { 'x-queue-version': 2 } },
          led: { type: 'quorum', arguments: { 'x-queue-leader-locator': 'balanced' } },
        },
      }),
    ).not.toThrow();
  });

  it('lists every problem at once: a binding to an undeclared exchange and deliveryLimit on a classic queue', () => {
    const binding: QueueDefinition = { bindings: [{ exchange: 'nowhere' }] };
    const limit: QueueDefinition = { deliveryLimit: 3 };
    expect(problemsOf({ queues: { a: binding } })).toHaveLength(1);
    expect(problemsOf({ queues: { b: limit } })).toHaveLength(1);
    expect(problemsOf({ queues: { a: binding, b: limit } })).toHaveLength(2);
    expect(problemsOf({ queues: { a: { ...binding, ...limit } } })).toHaveLength(2);
  });

  it('lists every problem of a large bad definition at once', () => {
    const found = problemsOf({
      exchanges: { 'amq.mine': { type: 'direct' } },
      queues: {
        a: { bindings: [{ exchange: 'nowhere' }], deliveryLimit: 3 },
        b: { type: 'quorum', exclusive: true, maxPriority: 3 },
        c: { type: 'stream', deadLetter: true },
        d: { maxLength: 5, arguments: { 'x-max-length': 6 } },
      },
    });
    expect(found).toHaveLength(7);
  });

  it('lists a misspelt option together with the problems of other queues', () => {
    // Each alone is one problem; a typo in one queue must not hide the mistakes in another.
    expect(problemsOf({ queues: { a: { maxlength: 5 } as QueueDefinition, b: { bindings: [{ exchange: 'nowhere' }] } } })).toHaveLength(2);
  });
});
