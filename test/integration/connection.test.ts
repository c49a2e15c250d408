import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessRefusedError, ConnectionError, connect, defineConsumer, type ConnectionState, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, management, memoryLogger, uniqueName, waitFor } from '../helpers/broker.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { closeClients, openClient, pingSetup, trackClient } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

const DEAD_URL = 'amqp://guest:guest@127.0.0.1:1';

/** The broker's URL with other credentials and/or vhost. */
function withCredentials(user: string, password: string, vhost = ''): string {
  const u = new URL(brokerUrls().amqpUrl);
  u.username = user;
  u.password = password;
  u.pathname = vhost;
  return u.toString();
}

/** A URL as warren shows it: the password replaced by `***`. */
function shown(url: string): string {
  const u = new URL(url);
  if (u.password !== '') u.password = '***';
  return u.toString();
}

/**
 * A loopback TCP relay to the broker that counts the connections it accepts: how many times a
 * client tried to connect, which the management API (its figures lag by seconds) cannot tell.
 */
async function countingRelay(): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  const target = new URL(brokerUrls().amqpUrl);
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(Number(target.port || 5672), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    accepted: () => accepted,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('connect()', () => {
  it('names its connections <name>:publish and <name>:consume, negotiates the heartbeat, and drops them on close()', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const consuming = uniqueName('svc');
    const publishing = uniqueName('svc');
    // One client consumes at once (heartbeat 5 s); the other only publishes (default heartbeat).
    const a = await openClient({ topology: s.topology, name: consuming, heartbeat: '5s' });
    await a.consume(defineConsumer({ queue: s.queue, message: s.message, handle: () => undefined }));
    const b = await openClient({ name: publishing });
    const names = [`${consuming}:publish`, `${consuming}:consume`, `${publishing}:publish`, `${publishing}:consume`];
    const listed = (all: { timeout: number; client_properties: { connection_name?: string } }[]) =>
      names.map((n) => all.filter((c) => c.client_properties.connection_name === n).map((c) => c.timeout));
    const [aPublish, aConsume, bPublish, bConsume] = await waitFor(
      async () => {
        const found = listed(await management.connections());
        return found[0]?.length === 1 && found[1]?.length === 1 && found[2]?.length === 1 ? found : undefined;
      },
      'both clients’ connections in the management API',
      { intervalMs: 200 },
    );
    expect(aPublish).toEqual([5]);
    expect(aConsume).toEqual([5]);
    expect(bPublish).toEqual([10]);
    // A client that never consumed holds only its publish connection.
    expect(bConsume).toEqual([]);
    expect(b.health().connections.consume).toBeUndefined();

    await Promise.all([a.close(), b.close()]);
    await waitFor(async () => listed(await management.connections()).every((c) => c.length === 0), 'the connections to go away', {
      intervalMs: 200,
    });
  });

  it('is open and healthy after connect; close() is idempotent; a publish after close() fails with CLOSED', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    expect(warren.state).toBe('open');
    expect(warren.health()).toMatchObject({ ok: true, blocked: false, connections: { publish: { state: 'open' }, consume: undefined }, consumers: [] });
    const first = warren.close();
    const second = warren.close();
    expect(second).toBe(first);
    await expect(Promise.all([first, second])).resolves.toEqual([undefined, undefined]);
    expect(warren.state).toBe('closed');
    expect(warren.health()).toMatchObject({ ok: false, connections: { publish: { state: 'closed' } } });
    const err = await warren.publish(s.message, { id: 'x', n: 1 }).catch((e: unknown) => e);
    expect((err as WarrenError).code).toBe('CLOSED');
  });

  it('tries the URLs in turn: a dead first URL is logged as a failed attempt, the live second one is used', async () => {
    expect.hasAssertions();
    const { logger, records } = memoryLogger('debug');
    const live = brokerUrls().amqpUrl;
    const warren = trackClient(await connect({ urls: [DEAD_URL, live], name: uniqueName('svc'), logger, reconnect: { initialDelay: 10 } }));
    expect(warren.state).toBe('open');
    expect(warren.health().connections.publish.url).toBe(shown(live));
    expect(new URL(warren.health().connections.publish.url ?? '').password).toBe(new URL(live).password === '' ? '' : '***');
    // connect() returns only after the first URL failed, so its 'reconnecting' event cannot be
    // listened to; the warning logged for that attempt is what a user sees.
    const failed = records().filter((r) => r['component'] === 'connection' && r['url'] === shown(DEAD_URL));
    expect(failed).toEqual([expect.objectContaining({ level: 40, role: 'publish', attempt: 1 })]);
  });

  it('gives up on an unreachable broker with CONNECTION_FAILED, after initialConnectTimeout', async () => {
    expect.hasAssertions();
    const started = Date.now();
    const err = await connect({ urls: [DEAD_URL], initialConnectTimeout: 1500, name: uniqueName('svc') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as WarrenError).code).toBe('CONNECTION_FAILED');
    // Advice for whoever reads it in a production log, not a contributor's docker hint.
    expect((err as Error).message).toMatch(/Check that the broker is running/);
    expect((err as Error).message).not.toMatch(/docker/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it.each([
    ['a wrong password', () => withCredentials('guest', 'not-the-password')],
    ['a vhost that does not exist', () => withCredentials('guest', new URL(brokerUrls().amqpUrl).password || 'guest', `/${uniqueName('novhost')}`)],
  ])('rejects %s with ACCESS_REFUSED at once, after a single attempt', async (what, url) => {
    expect.hasAssertions();
    const relay = await countingRelay();
    try {
      const target = new URL(url());
      target.hostname = '127.0.0.1';
      target.port = String(relay.port);
      const started = Date.now();
      const err = await connect({ urls: [target.toString()], initialConnectTimeout: 20_000, name: uniqueName('svc') }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessRefusedError);
      expect((err as WarrenError).code).toBe('ACCESS_REFUSED');
      expect(Date.now() - started).toBeLessThan(3000);
      expect(relay.accepted()).toBe(1);
      // The refused user is named (a user name is not a secret); the password never is.
      if (what === 'a wrong password') expect((err as Error).message).toMatch(/refused the login of user 'guest'/);
      expect((err as Error).message).not.toContain('not-the-password');
    } finally {
      await relay.close();
    }
  });

  it('close() finishes even when the connection drops at that moment', async () => {
    expect.hasAssertions();
    const proxy = await startTcpProxy(brokerUrls().amqpUrl);
    try {
      // Not tracked for afterEach: if this close() never settles, closing it again would hang there too.
      const warren = await connect({ urls: [proxy.url], name: uniqueName('svc'), reconnect: { initialDelay: 10 } });
      proxy.cut();
      const closing = warren.close(); // before warren has seen the drop
      const outcome = await Promise.race([
        closing.then(() => 'closed'),
        new Promise((resolve) => setTimeout(() => resolve('still closing after 5 s'), 5000)),
      ]);
      expect(outcome).toBe('closed');
      expect(warren.state).toBe('closed');
    } finally {
      await proxy.close();
    }
  });

  it('comes back after the broker closes its connection: disconnected then connected, connecting then open', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = uniqueName('svc');
    const warren = await openClient({ topology: s.topology, name });
    const seen: string[] = [];
    const states: ConnectionState[] = [];
    warren.on('disconnected', (e) => seen.push(`disconnected:${e.role}`));
    warren.on('connected', (e) => seen.push(`connected:${e.role}`));
    warren.on('state', (e) => states.push(e.state));
    await waitFor(async () => (await management.closeConnectionsNamed(`${name}:publish`)) === 1, 'the connection to be closed by the broker', {
      intervalMs: 200,
    });
    await waitFor(() => seen.includes('connected:publish'), 'the reconnect');
    expect(seen).toEqual(['disconnected:publish', 'connected:publish']);
    expect(states).toEqual(['connecting', 'open']);
    expect(warren.state).toBe('open');
    await expect(warren.publish(s.message, { id: 'after', n: 1 })).resolves.toHaveProperty('messageId');
    expect(warren.health().ok).toBe(true);
  });
});
