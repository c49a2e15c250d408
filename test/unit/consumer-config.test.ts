import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, defineConsumer, defineMessage } from '../../src/index.js';

const Ping = defineMessage({ name: 'ping', exchange: '', routingKey: 'pings', schema: z.object({ n: z.number() }) });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('defineConsumer', () => {
  it('applies the documented defaults', () => {
    const c = defineConsumer({ queue: 'pings', message: Ping, handle: () => undefined });
    expect(c).toMatchObject({ name: 'pings', queue: 'pings', prefetch: 10, concurrency: 1, ackMode: 'auto', onError: 'dead-letter', stopTimeoutMs: 30_000 });
  });

  it('refuses concurrency above prefetch', () => {
    const err = configError(() => defineConsumer({ queue: 'pings', message: Ping, prefetch: 2, concurrency: 5, handle: () => undefined }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.problems.some((p) => p.startsWith('concurrency'))).toBe(true);
  });

  it('reports every problem at once', () => {
    const err = configError(() =>
      defineConsumer({ queue: '', message: Ping, prefetch: 0, ackMode: 'sometimes' as 'auto', handle: undefined as unknown as () => void }),
    );
    expect(err.problems.length).toBeGreaterThanOrEqual(4);
  });

  it('refuses onError with ackMode none (it could never apply)', () => {
    expect(configError(() => defineConsumer({ queue: 'pings', message: Ping, ackMode: 'none', onError: 'requeue', handle: () => undefined })).code).toBe(
      'CONFIG_INVALID',
    );
  });
});
