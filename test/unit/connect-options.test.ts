import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ConnectionError, connect, defineMessage, defineTopology, type ConnectOptions, type Duration } from '../../src/index.js';
import { configError, socketConnects } from '../helpers/config-error.js';

afterEach(() => {
  vi.restoreAllMocks();
});

const url = 'amqp://guest:guest@127.0.0.1:5672';

describe('connect() options', () => {
  it.each<[string, ConnectOptions]>([
    ['no URL', { urls: [] }],
    ['a non-amqp URL', { urls: ['http://localhost:5672'] }],
    ['a malformed amqp URL', { urls: ['amqp://bad host:5672'] }],
    ['an unknown option', { urls: [url], hearbeat: '10s' } as ConnectOptions],
    ['an unknown reconnect option', { urls: [url], reconnect: { maxDelay: '30s', jitter: true } } as ConnectOptions],
    ['an unknown publisher option', { urls: [url], publisher: { maxInflight: 10 } } as ConnectOptions],
    // Malformed durations no longer compile; a JavaScript caller can still pass one.
    ['a bad duration', { urls: [url], heartbeat: 'soon' as Duration }],
    ['a duration in an unknown unit', { urls: [url], initialConnectTimeout: '1d' as Duration }],
    ['a negative duration', { urls: [url], connectTimeout: -1 }],
    ['a bad nested duration', { urls: [url], publisher: { timeout: '10 parsecs' as Duration } }],
    ['a reconnect factor below 1', { urls: [url], reconnect: { factor: 0.5 } }],
    ['a publish window of 0', { urls: [url], publisher: { maxInFlight: 0 } }],
    ['an empty name', { urls: [url], name: '' }],
    ['a non-http managementUrl', { urls: [url], managementUrl: 'amqp://localhost:15672' }],
    ['a retry policy without delays', { urls: [url], retry: { maxAttempts: 3 } }],
    ['a topology definition not passed through defineTopology()', { urls: [url], topology: { queues: { jobs: {} } } } as unknown as ConnectOptions],
  ])('rejects %s with ConfigError before any connection attempt', async (_what, options) => {
    expect.hasAssertions();
    expect((await configError(options)).problems).toHaveLength(1);
  });

  it('lists every problem at once', async () => {
    expect.hasAssertions();
    const err = await configError({
      urls: ['amqp://u:s3cr3t@localhost:5672', 'http://not-amqp'],
      heartbeat: 'soon' as Duration,
      reconnect: { factor: 0 },
      publisher: { maxInFlight: 0 },
      surprise: true,
    } as ConnectOptions);
    expect(err.problems).toHaveLength(5);
  });

  it('refuses a frameMax below 8192 in a URL (RabbitMQ 4.1 refuses such connections), and takes 0 or 8192', async () => {
    expect.hasAssertions();
    const err = await configError({ urls: ['amqp://u:s3cr3t@localhost:5672/?frameMax=4096'] });
    expect(err.problems).toEqual([expect.stringMatching(/urls\.0: frameMax must be at least 8192/)]);
    expect(err.message).not.toContain('s3cr3t');
    for (const ok of ['amqp://localhost/?frameMax=8192', 'amqp://localhost/?frameMax=0']) {
      const e = await configError({ urls: [ok], heartbeat: 'soon' as Duration });
      expect(e.problems).toEqual([expect.stringMatching(/^heartbeat/)]);
    }
  });

  it("refuses a URL whose password or vhost holds a '%' that is not an escape, saying how to write it (not a URIError)", async () => {
    expect.hasAssertions();
    for (const bad of ['amqp://u:50%off@localhost:5672/', 'amqp://u:p@localhost:5672/50%off']) {
      const err = await configError({ urls: [bad] });
      expect(err.problems).toEqual([expect.stringMatching(/urls\.0: has a '%' that is not an escape .* write a % itself as %25/)]);
      expect(err.message).not.toContain('50%off');
    }
  });

  it('never puts a password given in a URL into the error', async () => {
    expect.hasAssertions();
    for (const urls of [
      ['amqp://u:s3cr3t@host:5672', 'http://x'],
      ['http://u:s3cr3t@host:5672'],
      ['amqp://u:s3cr3t@bad host:5672'],
      ['amqp://u:s3cr3t@host:5672', 'amqps://u:s3cr3t@host:notaport'],
    ]) {
      const err = await configError({ urls });
      expect(err.message).not.toContain('s3cr3t');
      expect(JSON.stringify(err.problems)).not.toContain('s3cr3t');
      expect(String(err.stack)).not.toContain('s3cr3t');
    }
    const err = await configError({ urls: [url], managementUrl: 'ftp://admin:m4n4g3r@host:15672' });
    expect(err.message).not.toContain('m4n4g3r');
  });

  it('valid options get past validation to a connection attempt (the control for the tests above)', async () => {
    expect.hasAssertions();
    // A listener that hangs up on every connection: no broker, and no waiting for a timeout.
    const server = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const err: unknown = await connect({
        urls: [`amqp://u:s3cr3t@127.0.0.1:${port}`],
        name: 'connect-options-control',
        heartbeat: 5,
        connectTimeout: '200ms',
        initialConnectTimeout: '300ms',
        reconnect: { initialDelay: 10, maxDelay: '50ms', factor: 2 },
        publisher: { timeout: '1s' },
      }).then(
        async (warren) => {
          await warren.close();
          return new Error('connect() resolved');
        },
        (e: unknown) => e,
      );
      expect(socketConnects()).toHaveBeenCalled();
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as ConnectionError).code).toBe('CONNECTION_FAILED');
      expect((err as ConnectionError).message).not.toContain('s3cr3t');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('names each published contract whose exchange the topology does not declare, before connecting', async () => {
    expect.hasAssertions();
    const topology = defineTopology({ exchanges: { orders: { type: 'topic' } } });
    const Placed = defineMessage({ name: 'order.placed', exchange: 'orders', routingKey: 'order.placed', schema: z.object({}) });
    const Shipped = defineMessage({ name: 'order.shipped', exchange: 'shipments', routingKey: 'order.shipped', schema: z.object({}) });
    const Direct = defineMessage({ name: 'job', exchange: '', routingKey: 'jobs', schema: z.object({}) });
    const Fanout = defineMessage({ name: 'audit', exchange: 'amq.fanout', routingKey: '', schema: z.object({}) });
    const err = await configError({ urls: [url], topology, messages: [Placed, Shipped, Direct, Fanout] });
    expect(err.problems).toEqual([expect.stringMatching(/^messages\.1: contract 'order\.shipped' publishes to exchange 'shipments', which the topology does not declare/)]);
  });
});
