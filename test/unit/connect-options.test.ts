import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { ConfigError, connect, type ConnectOptions } from '../../src/index.js';

// Any connection attempt would show up here: a ConfigError must come before any network I/O.
let connectSpy: MockInstance;
beforeEach(() => {
  connectSpy = vi.spyOn(net.Socket.prototype, 'connect');
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function configError(options: ConnectOptions): Promise<ConfigError> {
  const err: unknown = await connect(options).then(
    () => new Error('connected'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe('connect() options', () => {
  it('rejects with every problem listed, before any connection attempt', async () => {
    expect.hasAssertions();
    const err = await configError({
      urls: ['amqp://u:s3cr3t@localhost:5672', 'http://not-amqp'],
      heartbeat: 'soon',
      publisher: { maxInFlight: 0 },
      surprise: true,
    } as ConnectOptions);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.problems).toHaveLength(4);
    expect(connectSpy).not.toHaveBeenCalled();
  });

  it('needs at least one URL', async () => {
    expect.hasAssertions();
    expect((await configError({ urls: [] })).problems).toHaveLength(1);
  });

  it('never puts a password into the error', async () => {
    expect.hasAssertions();
    const err = await configError({ urls: ['amqp://u:s3cr3t@localhost:5672', 'amqp://u:s3cr3t@bad host'] });
    expect(err.message).not.toContain('s3cr3t');
    expect(JSON.stringify(err.problems)).not.toContain('s3cr3t');
  });
});
