import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, defineConsumer, defineMessage, type ConsumerDefinition, type Duration } from '../../src/index.js';

const Ping = defineMessage({ name: 'ping', exchange: '', routingKey: 'pings', schema: z.object({ n: z.number() }) });
type PingDefinition = ConsumerDefinition<typeof Ping, 'auto' | 'manual' | 'none'>;

const handle = (): void => undefined;

/** The problems defineConsumer() reports for `def`; [] if it accepts it. */
function problemsOf(def: PingDefinition): readonly string[] {
  try {
    defineConsumer(def);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.code).toBe('CONFIG_INVALID');
    return err.problems;
  }
}

describe('defineConsumer', () => {
  it('applies the documented defaults, naming the consumer after its queue', () => {
    const c = defineConsumer({ queue: 'pings', message: Ping, handle });
    expect(c).toMatchObject({ name: 'pings', queue: 'pings', prefetch: 10, concurrency: 1, ackMode: 'auto', onError: 'dead-letter', stopTimeoutMs: 30_000 });
    expect(c.message).toBe(Ping);
    expect(c.handle).toBe(handle);
  });

  it('keeps the options it is given', () => {
    const c = defineConsumer({
      queue: 'pings',
      name: 'ping-handler',
      message: Ping,
      prefetch: 20,
      concurrency: 20,
      ackMode: 'manual',
      onError: 'requeue',
      stopTimeoutMs: 0,
      handle,
    });
    expect(c).toMatchObject({ name: 'ping-handler', prefetch: 20, concurrency: 20, ackMode: 'manual', onError: 'requeue', stopTimeoutMs: 0 });
  });

  it('refuses concurrency above prefetch, and accepts it equal', () => {
    expect(problemsOf({ queue: 'pings', message: Ping, prefetch: 2, concurrency: 3, handle })).toHaveLength(1);
    expect(problemsOf({ queue: 'pings', message: Ping, concurrency: 11, handle })).toHaveLength(1);
    expect(problemsOf({ queue: 'pings', message: Ping, prefetch: 3, concurrency: 3, handle })).toEqual([]);
  });

  it('refuses a definition without a handler, or with a handler that is not a function', () => {
    expect(problemsOf({ queue: 'pings', message: Ping } as PingDefinition)).toHaveLength(1);
    expect(problemsOf({ queue: 'pings', message: Ping, handle: 'handlePing' } as unknown as PingDefinition)).toHaveLength(1);
  });

  it('refuses a message that is not a contract from defineMessage()', () => {
    expect(problemsOf({ queue: 'pings', handle } as unknown as PingDefinition)).toHaveLength(1);
    expect(problemsOf({ queue: 'pings', message: 'ping', handle } as unknown as PingDefinition)).toHaveLength(1);
  });

  it('refuses onError with ackMode none, where it could never apply', () => {
    expect(problemsOf({ queue: 'pings', message: Ping, ackMode: 'none', handle })).toEqual([]);
    expect(problemsOf({ queue: 'pings', message: Ping, ackMode: 'none', onError: 'requeue', handle })).toHaveLength(1);
    expect(problemsOf({ queue: 'pings', message: Ping, ackMode: 'none', onError: 'dead-letter', handle })).toHaveLength(1);
  });

  it('keeps a retry policy, with durations in ms; none by default', () => {
    expect(defineConsumer({ queue: 'pings', message: Ping, handle }).retry).toBeUndefined();
    expect(defineConsumer({ queue: 'pings', message: Ping, retry: { maxAttempts: 4, delays: ['1s', '10s', 60_000] }, handle }).retry).toEqual({
      maxAttempts: 4,
      delays: [1_000, 10_000, 60_000],
    });
    expect(
      defineConsumer({ queue: 'pings', message: Ping, retry: { maxAttempts: 6, backoff: { initialDelay: '1s', maxDelay: '5m' } }, handle }).retry,
    ).toEqual({ maxAttempts: 6, backoff: { initialDelay: 1_000, factor: 2, maxDelay: 300_000 } });
  });

  it.each<[string, NonNullable<PingDefinition['retry']>, Partial<PingDefinition>]>([
    ['maxAttempts above 1 without delays', { maxAttempts: 3 }, {}],
    ['both delays and backoff', { maxAttempts: 3, delays: ['1s'], backoff: { initialDelay: '1s' } }, {}],
    ['a bad delay (a JavaScript caller; it does not compile)', { maxAttempts: 3, delays: ['soon' as Duration] }, {}],
    ['maxAttempts 0', { maxAttempts: 0 }, {}],
    ['a retry policy with ackMode none', { maxAttempts: 3, delays: ['1s'] }, { ackMode: 'none' }],
    ["a retry policy with onError 'requeue'", { maxAttempts: 3, delays: ['1s'] }, { onError: 'requeue' }],
  ])('refuses %s', (_what, retry, change) => {
    expect(problemsOf({ queue: 'pings', message: Ping, handle, retry, ...change })).toHaveLength(1);
  });

  it.each<[string, Partial<PingDefinition>]>([
    ['an empty queue name', { queue: '' }],
    ['an empty name', { name: '' }],
    ['a fractional prefetch', { prefetch: 1.5 }],
    ['prefetch above 65535', { prefetch: 70_000, concurrency: 1 }],
    ['concurrency 0', { concurrency: 0 }],
    ['an unknown ackMode', { ackMode: 'sometimes' as 'auto' }],
    ['an unknown onError', { onError: 'retry' as 'requeue' }],
    ['a negative stopTimeoutMs', { stopTimeoutMs: -1 }],
  ])('refuses %s', (_what, change) => {
    expect(problemsOf({ queue: 'pings', message: Ping, handle, ...change })).toHaveLength(1);
  });

  it('refuses prefetch 0', () => {
    expect(problemsOf({ queue: 'pings', message: Ping, prefetch: 0, handle }).length).toBeGreaterThanOrEqual(1);
  });

  it('refuses an unknown option (a misspelt prefetch would otherwise silently default to 10)', () => {
    expect(problemsOf({ queue: 'pings', message: Ping, prefech: 20, handle } as PingDefinition)).toHaveLength(1);
  });

  it('lists every problem at once, including onError with ackMode none', () => {
    const found = problemsOf({ queue: '', message: Ping, prefetch: 2, concurrency: 5, ackMode: 'none', onError: 'requeue' } as PingDefinition);
    // An empty queue, concurrency above prefetch, onError with ackMode none, no handler.
    expect(found).toHaveLength(4);
  });
});
