import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { defineConsumer, type ConsumerEvent, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, management, queueCounts, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';
import { closeClients, gate, openClient, pingSetup } from '../helpers/warren.js';

const servers: net.Server[] = [];
afterEach(async () => {
  await closeClients();
  for (const s of servers.splice(0)) s.close();
  await cleanupTracked();
});

/** The management API's names of a client's publish and consume connections, once both are listed. */
async function visible(name: string): Promise<string[] | undefined> {
  const all = await management.connections();
  const mine = all.filter((c) => c.client_properties.connection_name === `${name}:publish` || c.client_properties.connection_name === `${name}:consume`);
  return mine.length === 2 ? mine.map((c) => c.name) : undefined;
}

/**
 * A proxy that can refuse connections: while `accepting` is false every new socket is destroyed
 * at once, so warren stays disconnected until the test lets it back in.
 */
async function gatedProxy(): Promise<{ url: string; accepting: boolean; cut: () => void }> {
  const target = new URL(brokerUrls().amqpUrl);
  const sockets = new Set<net.Socket>();
  const state = { accepting: true };
  const server = net.createServer((client) => {
    if (!state.accepting) {
      client.destroy();
      return;
    }
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
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(brokerUrls().amqpUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return Object.assign(state, {
    url: url.toString(),
    cut: () => {
      for (const s of sockets) s.destroy();
    },
  });
}

describe('reconnect', () => {
  it.each(['classic', 'quorum'] as const)('loses no confirmed message when the broker closes every connection mid-stream (%s queue)', async (type) => {
    expect.hasAssertions();
    const s = pingSetup({ type });
    const name = uniqueName('svc');
    const warren = await openClient({ topology: s.topology, name, reconnect: { initialDelay: 20, maxDelay: 500 } });
    const consumed = new Map<string, number>();
    const events: ConsumerEvent['type'][] = [];
    warren.on('consumer', (e) => events.push(e.type));
    await warren.consume(
      defineConsumer({ queue: s.queue, message: s.message, prefetch: 50, concurrency: 5, handle: (p) => void consumed.set(p.id, (consumed.get(p.id) ?? 0) + 1) }),
    );
    // The management API lists connections only after its next stats round (~5 s).
    let connections = await waitFor(async () => visible(name), 'both connections in the management API', { timeoutMs: 15_000 });

    const published = new Set<string>();
    const confirmed = new Set<string>();
    const failed: string[] = [];
    let streaming = true;
    let next = 0;
    // A steady stream (~500 msg/s) that goes on until both cuts are done.
    const worker = async (): Promise<void> => {
      while (streaming) {
        const id = `m${next++}`;
        published.add(id);
        try {
          await warren.publish(s.message, { id, n: 0 }, { timeoutMs: 20_000 });
          confirmed.add(id);
        } catch (err) {
          failed.push(`${id}: ${(err as WarrenError).code}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const stream = Promise.all(Array.from({ length: 10 }, worker));
    for (const cut of [1, 2]) {
      const before = confirmed.size;
      await waitFor(() => confirmed.size >= before + 300, `300 confirms before cut ${cut}`, { timeoutMs: 20_000 });
      for (const c of connections) await management.request('DELETE', `/api/connections/${encodeURIComponent(c)}`);
      const old = new Set(connections);
      connections = await waitFor(async () => {
        const now = await visible(name);
        return now && now.every((c) => !old.has(c)) ? now : undefined;
      }, `the reconnected connections after cut ${cut}`, { timeoutMs: 20_000 });
    }
    const atEnd = confirmed.size;
    await waitFor(() => confirmed.size >= atEnd + 300, '300 confirms after the last cut', { timeoutMs: 20_000 });
    streaming = false;
    await stream;

    expect(failed).toEqual([]);
    expect(confirmed.size).toBe(published.size);
    await waitFor(() => [...confirmed].every((id) => consumed.has(id)), 'every confirmed message to be consumed', { timeoutMs: 30_000 });
    const lost = [...confirmed].filter((id) => !consumed.has(id));
    const unexpected = [...consumed.keys()].filter((id) => !published.has(id));
    const duplicates = [...consumed.values()].reduce((a, b) => a + b, 0) - consumed.size;
    console.log(`${type}: published ${published.size}, confirmed ${confirmed.size}, consumed ${consumed.size} unique, ${duplicates} duplicates`);
    expect(lost).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(duplicates).toBeLessThan(published.size / 10);
    expect(events.filter((e) => e === 'detached')).toHaveLength(2);
    expect(events.at(-1)).toBe('attached');
    await waitFor(() => warren.health().ok, 'health ok');
    await warren.close();
    expect((await queueCounts(s.queue)).messages).toBe(0);
  }, 90_000);

  it('holds publishes while disconnected and sends them when the broker is back; times out those that wait too long', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const proxy = await gatedProxy();
    const warren = await openClient({ urls: [proxy.url], topology: s.topology, reconnect: { initialDelay: 20, maxDelay: 100 } });
    const down = new Promise<void>((resolve) => warren.on('disconnected', () => resolve()));
    proxy.accepting = false;
    proxy.cut();
    await down;
    let settled = 0;
    const waiting = Array.from({ length: 20 }, (_, n) => warren.publish(s.message, { id: `w${n}`, n }).finally(() => (settled += 1)));
    const doomed = warren.publish(s.message, { id: 'late', n: 0 }, { timeoutMs: 300 }).catch((e: unknown) => e as WarrenError);
    const timedOut = await doomed;
    expect(timedOut).toMatchObject({ code: 'PUBLISH_TIMEOUT', sent: false });
    expect(settled).toBe(0); // still waiting, not rejected
    expect(warren.state).toBe('connecting');
    proxy.accepting = true;
    await Promise.all(waiting);
    const ids: string[] = [];
    await withRawChannel(async (ch) => {
      for (let m = await ch.get(s.queue, { noAck: true }); m !== false; m = await ch.get(s.queue, { noAck: true })) {
        ids.push((JSON.parse(m.content.toString()) as { id: string }).id);
      }
    });
    expect(ids.sort()).toEqual(Array.from({ length: 20 }, (_, n) => `w${n}`).sort());
  });

  it('never acks a delivery from a closed channel on the new one; the broker redelivers it', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = uniqueName('svc');
    const warren = await openClient({ topology: s.topology, name, reconnect: { initialDelay: 20, maxDelay: 200 } });
    const release = gate();
    const deliveries: boolean[] = [];
    const events: ConsumerEvent['type'][] = [];
    warren.on('consumer', (e) => events.push(e.type));
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: async (_p, ctx) => {
          deliveries.push(ctx.redelivered);
          if (deliveries.length === 1) await release.promise;
        },
      }),
    );
    await warren.publish(s.message, { id: 'slow', n: 0 });
    await waitFor(() => deliveries.length === 1, 'the handler to start');
    await waitFor(async () => (await management.closeConnectionsNamed(`${name}:consume`)) === 1, 'the consume connection to close', { timeoutMs: 15_000 });
    await waitFor(() => events.length === 3, 're-attachment');
    // The first handler now finishes. Its ack must not go to the new channel, where the same tag
    // now names the redelivered copy (concurrency 1: that copy waits for this handler).
    release.open();
    await waitFor(() => deliveries.length === 2, 'the redelivery on the new channel');
    await waitFor(async () => (await queueCounts(s.queue)).messages === 0 && warren.health().consumers[0]?.inFlight === 0, 'the redelivery acked');
    expect(deliveries).toEqual([false, true]);
    // A stray ack of the old tag would close the new channel (406): the consumer would detach again.
    await warren.publish(s.message, { id: 'after', n: 1 });
    await waitFor(() => deliveries.length === 3, 'the next message');
    expect(events).toEqual(['attached', 'detached', 'attached']);
  });

  it('re-declares a deleted queue and re-attaches its consumer', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const handled: string[] = [];
    const events: ConsumerEvent['type'][] = [];
    warren.on('consumer', (e) => events.push(e.type));
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: (p) => void handled.push(p.id) }));
    await management.request('DELETE', `/api/queues/%2F/${encodeURIComponent(s.queue)}`);
    await waitFor(() => events.filter((e) => e === 'attached').length === 2, 're-attachment');
    expect(events).toEqual(['attached', 'detached', 'cancelled', 'attached']);
    expect(warren.health().consumers[0]).toMatchObject({ attached: true });
    await warren.publish(s.message, { id: 'after-delete', n: 0 }); // through the exchange: the binding is back
    await waitFor(() => handled.includes('after-delete'), 'the message after the re-declare');
  });
});
