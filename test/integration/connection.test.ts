import { afterEach, describe, expect, it } from 'vitest';
import { AccessRefusedError, connect, defineConsumer, type ConnectionState, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, management, uniqueName, waitFor } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup, trackClient } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

function withCredentials(user: string, password: string, vhost = ''): string {
  const u = new URL(brokerUrls().amqpUrl);
  u.username = user;
  u.password = password;
  u.pathname = vhost;
  return u.toString();
}

describe('connect()', () => {
  it('names its connections for the management UI and negotiates the configured heartbeat', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = uniqueName('svc');
    const warren = await openClient({ topology: s.topology, name, heartbeat: '5s' });
    const publish = await waitFor(async () => (await management.connectionsNamed(`${name}:publish`))[0], 'the publish connection in the management API');
    expect(publish.timeout).toBe(5);
    expect(await management.connectionsNamed(`${name}:consume`)).toEqual([]); // opened on the first consume()
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: () => undefined }));
    await waitFor(async () => (await management.connectionsNamed(`${name}:consume`)).length === 1, 'the consume connection');
  });

  it('heartbeats are on by default (10 s)', async () => {
    expect.hasAssertions();
    const name = uniqueName('svc');
    await openClient({ name });
    const c = await waitFor(async () => (await management.connectionsNamed(`${name}:publish`))[0], 'the connection');
    expect(c.timeout).toBe(10);
  });

  it('is open and healthy after connect; close() is idempotent and closes the connections', async () => {
    expect.hasAssertions();
    const name = uniqueName('svc');
    const warren = await openClient({ name });
    expect(warren.state).toBe('open');
    expect(warren.health()).toMatchObject({ ok: true, blocked: false, connections: { publish: { state: 'open' }, consume: undefined } });
    const first = warren.close();
    const second = warren.close();
    expect(second).toBe(first);
    await Promise.all([first, second, warren.close()]);
    expect(warren.state).toBe('closed');
    await waitFor(async () => (await management.connectionsNamed(`${name}:publish`)).length === 0, 'the connection to go away');
    const s = pingSetup();
    expect(await warren.publish(s.message, { id: 'x', n: 1 }).catch((e: unknown) => (e as WarrenError).code)).toBe('CLOSED');
  });

  it('tries the URLs in turn: a dead first URL, a live second one', async () => {
    expect.hasAssertions();
    const dead = 'amqp://guest:guest@127.0.0.1:1';
    const warren = trackClient(await connect({ urls: [dead, brokerUrls().amqpUrl], name: uniqueName('svc'), reconnect: { initialDelay: 10 } }));
    const shown = warren.health().connections.publish.url ?? '';
    expect(shown).toContain(`:${new URL(brokerUrls().amqpUrl).port || 5672}`);
    expect(shown).not.toContain(':1/');
    if (new URL(brokerUrls().amqpUrl).password !== '') expect(shown).toContain('***');
  });

  it('gives up on an unreachable broker with CONNECTION_FAILED after initialConnectTimeout', async () => {
    expect.hasAssertions();
    const started = Date.now();
    const err = (await connect({ urls: ['amqp://guest:guest@127.0.0.1:1'], initialConnectTimeout: 1500, name: uniqueName('svc') }).catch((e: unknown) => e)) as WarrenError;
    expect(err.code).toBe('CONNECTION_FAILED');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('rejects wrong credentials and an unknown vhost with ACCESS_REFUSED at once, without retrying', async () => {
    expect.hasAssertions();
    for (const url of [withCredentials('guest', 'not-the-password'), withCredentials('guest', 'guest', `/${uniqueName('novhost')}`)]) {
      const started = Date.now();
      const err = await connect({ urls: [url], initialConnectTimeout: 20_000, name: uniqueName('svc') }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessRefusedError);
      expect((err as WarrenError).code).toBe('ACCESS_REFUSED');
      expect(Date.now() - started).toBeLessThan(3000);
    }
  });

  it('comes back after the broker closes its connection, with events and state changes', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = uniqueName('svc');
    const warren = await openClient({ topology: s.topology, name });
    const seen: string[] = [];
    const states: ConnectionState[] = [];
    warren.on('disconnected', (e) => seen.push(`disconnected:${e.role}`));
    warren.on('connected', (e) => seen.push(`connected:${e.role}`));
    warren.on('state', (e) => states.push(e.state));
    await waitFor(async () => (await management.closeConnectionsNamed(`${name}:publish`)) === 1, 'the connection to close');
    await waitFor(() => seen.includes('connected:publish'), 'the reconnect');
    expect(seen).toEqual(['disconnected:publish', 'connected:publish']);
    expect(states).toEqual(['connecting', 'open']);
    await expect(warren.publish(s.message, { id: 'after', n: 1 })).resolves.toHaveProperty('messageId');
    expect(warren.health().ok).toBe(true);
  });
});
