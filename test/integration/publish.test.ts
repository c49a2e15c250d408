// publish() against the real broker: the confirm, the message's properties, and each documented
// failure as a typed error with its `code` (README: defineMessage(), publish(), Errors, What
// happens when things fail). Faults on the wire go through a TCP proxy owned by the test.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ClosedError,
  defineMessage,
  MessageTooLargeError,
  PublishBufferFullError,
  PublishError,
  PublishNackedError,
  PublishTimeoutError,
  UnroutableError,
  ValidationError,
  type PublishReceipt,
} from '../../src/index.js';
import { brokerUrls, cleanupTracked, drainQueue, queueCounts, track, uniqueName, waitFor } from '../helpers/broker.js';
import { closeProxies, releaseProxies, testProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { closeClients, openClient, Ping, pingSetup } from '../helpers/warren.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const KiB2 = 'x'.repeat(2048);

function proxy(): Promise<TcpProxy> {
  return testProxy(brokerUrls().amqpUrl);
}

afterEach(async () => {
  // Let traffic through first, so clients behind a paused or refusing proxy can close cleanly.
  releaseProxies();
  await closeClients();
  await closeProxies();
  await cleanupTracked();
});

/** The error `p` rejects with, checked to be an instance of `type` (fails the test if `p` resolves). */
async function rejection<E extends Error>(p: Promise<unknown>, type: abstract new (...args: never[]) => E): Promise<E> {
  const outcome = await p.then(
    (value: unknown) => ({ resolved: value }),
    (err: unknown) => ({ rejected: err }),
  );
  if (!('rejected' in outcome)) throw new Error(`expected a ${type.name}, but the publish resolved with ${JSON.stringify(outcome.resolved)}`);
  expect(outcome.rejected).toBeInstanceOf(type);
  return outcome.rejected as E;
}

/** The `id` of each message taken off `queue`, in queue order. */
async function drainIds(queue: string): Promise<string[]> {
  return (await drainQueue(queue)).map((m) => (JSON.parse(m.content.toString()) as { id: string }).id);
}

describe('publish()', () => {
  it('resolves with { messageId } once confirmed, the message in the bound queue with the documented properties', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = uniqueName('app');
    const warren = await openClient({ topology: s.topology, name });

    const receipt = await warren.publish(s.message, { id: 'a', n: 1 });
    expect(receipt).toEqual({ messageId: expect.stringMatching(UUID) });
    // Confirmed means stored: no waiting for the broker to catch up.
    expect((await queueCounts(s.queue)).messages).toBe(1);

    const stamp = new Date('2026-01-02T03:04:05Z');
    const given = await warren.publish(
      s.message,
      { id: 'b', n: 2 },
      { messageId: 'my-id', correlationId: 'corr-1', headers: { tenant: 'acme' }, timestamp: stamp },
    );
    expect(given).toEqual({ messageId: 'my-id' });

    const [first, second, ...rest] = await drainQueue(s.queue);
    expect(rest).toEqual([]);
    expect(JSON.parse(first!.content.toString())).toEqual({ id: 'a', n: 1 });
    expect(first!.properties).toMatchObject({
      contentType: 'application/json',
      deliveryMode: 2,
      messageId: receipt.messageId,
      type: s.message.name,
      appId: name,
    });
    // AMQP timestamps are whole seconds.
    expect(Math.abs(Number(first!.properties.timestamp) - Date.now() / 1000)).toBeLessThan(60);
    expect(JSON.parse(second!.content.toString())).toEqual({ id: 'b', n: 2 });
    expect(second!.properties).toMatchObject({
      contentType: 'application/json',
      deliveryMode: 2,
      messageId: 'my-id',
      correlationId: 'corr-1',
      headers: { tenant: 'acme' },
      timestamp: stamp.getTime() / 1000,
      type: s.message.name,
      appId: name,
    });
  });

  it('rejects an invalid payload with VALIDATION_FAILED (issues with a path) and sends nothing', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const err = await rejection(warren.publish(s.message, { id: 'a', n: -1 }), ValidationError);
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(err.issues.map((i) => i.path)).toEqual([['n']]);
    // Confirms come in order on the channel: once this one is confirmed, a refused message sent
    // before it would already be in the queue.
    await warren.publish(s.message, { id: 'ok', n: 1 });
    expect(await drainIds(s.queue)).toEqual(['ok']);
  });

  it('rejects a body over publisher.maxMessageBytes with MESSAGE_TOO_LARGE and sends nothing', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology, publisher: { maxMessageBytes: 100 } });
    const err = await rejection(warren.publish(s.message, { id: 'x'.repeat(200), n: 1 }), MessageTooLargeError);
    expect(err.code).toBe('MESSAGE_TOO_LARGE');
    await warren.publish(s.message, { id: 'small', n: 1 });
    expect(await drainIds(s.queue)).toEqual(['small']);
  });

  it('rejects a mandatory message no queue is bound for with UNROUTABLE; the next publish works; mandatory: false resolves', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const err = await rejection(warren.publish(s.message, { id: 'a', n: 1 }, { routingKey: 'nobody.listens' }), UnroutableError);
    expect(err.code).toBe('UNROUTABLE');
    expect(err.replyCode).toBe(312);
    await warren.publish(s.message, { id: 'b', n: 1 });
    // The same publish without mandatory: the broker drops it, as asked.
    await expect(warren.publish(s.message, { id: 'c', n: 1 }, { routingKey: 'nobody.listens', mandatory: false })).resolves.toEqual({
      messageId: expect.stringMatching(UUID),
    });
    expect(await drainIds(s.queue)).toEqual(['b']);
  });

  it('rejects what the broker nacks with PUBLISH_NACKED (queue at maxLength 1, overflow reject-publish)', async () => {
    expect.hasAssertions();
    const s = pingSetup({ maxLength: 1, overflow: 'reject-publish' });
    const warren = await openClient({ topology: s.topology });
    await warren.publish(s.message, { id: '1', n: 1 });
    expect((await rejection(warren.publish(s.message, { id: '2', n: 2 }), PublishNackedError)).code).toBe('PUBLISH_NACKED');
    expect((await rejection(warren.publish(s.message, { id: '3', n: 3 }), PublishNackedError)).code).toBe('PUBLISH_NACKED');
    expect(await drainIds(s.queue)).toEqual(['1']);
  });

  it('rejects a publish to an undeclared exchange with PUBLISH_FAILED; publishes in flight beside it all arrive; the next one works', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const Nowhere = defineMessage({ name: 'nowhere', exchange: track.exchange(uniqueName('missing')), routingKey: 'x', schema: Ping });
    // The bad one goes out between two batches on the same channel: the broker closes the channel
    // on it, so the second batch (and perhaps confirms of the first) are lost with the channel.
    const good = Array.from({ length: 200 }, (_, i) => warren.publish(s.message, { id: `g${i}`, n: i }));
    const bad = warren.publish(Nowhere, { id: 'bad', n: 0 });
    const more = Array.from({ length: 200 }, (_, i) => warren.publish(s.message, { id: `h${i}`, n: i }));

    const err = await rejection(bad, PublishError);
    expect(err.code).toBe('PUBLISH_FAILED');
    expect(err.replyCode).toBe(404);
    await Promise.all([...good, ...more]);
    await warren.publish(s.message, { id: 'after', n: 0 }); // on the reopened channel

    const ids = await drainIds(s.queue);
    const expected = [...Array.from({ length: 200 }, (_, i) => `g${i}`), ...Array.from({ length: 200 }, (_, i) => `h${i}`), 'after'];
    // Every confirmed message arrived. One whose confirm was lost with the channel is re-published
    // with the same id, so it may arrive twice (at-least-once): count distinct ids.
    expect([...new Set(ids)].sort()).toEqual(expected.sort());
  });

  it('rejects with PUBLISH_TIMEOUT (sent: true) when no confirm comes within timeoutMs', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    // Default heartbeat (10 s): nothing notices the stalled socket during this test.
    const warren = await openClient({ urls: [p.url], topology: s.topology });
    p.pause('both');
    const started = Date.now();
    const err = await rejection(warren.publish(s.message, { id: 'late', n: 1 }, { timeoutMs: 300 }), PublishTimeoutError);
    expect(err.code).toBe('PUBLISH_TIMEOUT');
    expect(err.sent).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(5_000); // its own timeoutMs, not publisher.timeout (30 s)

    // It went out, so it may still be delivered: once the network is back, it is.
    p.resume();
    await warren.publish(s.message, { id: 'next', n: 2 });
    expect(await drainIds(s.queue)).toEqual(['late', 'next']);
  });

  it('rejects at once with PUBLISH_BUFFER_FULL when the buffer is full; the buffered ones go out later', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology, publisher: { maxInFlight: 1, maxBufferedMessages: 2 } });
    p.pause('both');
    let settled = 0;
    // One in flight (the window), two waiting (the buffer), and no room for a fourth.
    const accepted = [0, 1, 2].map((n) => warren.publish(s.message, { id: `m${n}`, n }).finally(() => (settled += 1)));
    const err = await rejection(warren.publish(s.message, { id: 'm3', n: 3 }), PublishBufferFullError);
    expect(err.code).toBe('PUBLISH_BUFFER_FULL');
    expect(settled).toBe(0); // refused while the others still wait: it did not wait for a timeout
    p.resume();
    await expect(Promise.all(accepted)).resolves.toHaveLength(3);
    expect(await drainIds(s.queue)).toEqual(['m0', 'm1', 'm2']);
  });

  it("whenFull 'wait': a publish that finds the buffer full waits for room, then goes out; health() shows it waiting", async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology, publisher: { maxInFlight: 1, maxBufferedMessages: 2, whenFull: 'wait' } });
    p.pause('both');
    const all = [0, 1, 2, 3].map((n) => warren.publish(s.message, { id: `m${n}`, n }));
    await waitFor(() => warren.health().publisher.waitingForRoom === 1, 'the fourth waiting for room');
    expect(warren.health().publisher).toMatchObject({ inFlight: 1, buffered: 2, waitingForRoom: 1 });
    expect(warren.health().publisher.bufferedBytes).toBeGreaterThan(0);
    p.resume();
    await expect(Promise.all(all)).resolves.toHaveLength(4);
    expect(await drainIds(s.queue)).toEqual(['m0', 'm1', 'm2', 'm3']);
    expect(warren.health().publisher).toEqual({
      inFlight: 0,
      buffered: 0,
      bufferedBytes: 0,
      waitingForRoom: 0,
      published: 4,
      confirmed: 4,
      nacked: 0,
      returned: 0,
      timedOut: 0,
      failed: 0,
    });
  });

  it("whenFull 'wait': no room before the publish's deadline → PUBLISH_BUFFER_FULL; it was never sent", async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology, publisher: { maxInFlight: 1, maxBufferedMessages: 1, whenFull: 'wait' } });
    p.pause('both');
    const first = [0, 1].map((n) => warren.publish(s.message, { id: `m${n}`, n }, { timeoutMs: 10_000 }));
    const started = Date.now();
    const err = await rejection(warren.publish(s.message, { id: 'late', n: 2 }, { timeoutMs: 400 }), PublishBufferFullError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(err.code).toBe('PUBLISH_BUFFER_FULL');
    expect(err.message).toMatch(/400 ms deadline/);
    p.resume();
    await expect(Promise.all(first)).resolves.toHaveLength(2);
    expect(await drainIds(s.queue)).toEqual(['m0', 'm1']);
  });

  it('pipelines: all 50 publishes are on the wire before the first confirm comes back', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology });
    p.pause('down'); // broker → client held: no confirm can arrive
    const before = p.bytesUp;
    let settled = 0;
    const all = Array.from({ length: 50 }, (_, n) => warren.publish(s.message, { id: `${n}${KiB2}`, n }).finally(() => (settled += 1)));
    await waitFor(() => p.bytesUp - before >= 50 * 2048, 'all 50 bodies to cross the proxy');
    expect(settled).toBe(0);
    p.resume();
    await expect(Promise.all(all)).resolves.toHaveLength(50);
    expect((await queueCounts(s.queue)).messages).toBe(50);
  });

  it('writes a burst of publishes to the socket in a few writes, in order', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const brokerPort = Number(new URL(brokerUrls().amqpUrl).port || 5672);
    // Count the writes that reach the kernel on sockets to the broker (one call per write/writev).
    let writes = 0;
    type Write = (this: net.Socket, ...a: unknown[]) => unknown;
    const proto = net.Socket.prototype as unknown as { _write: Write; _writev: Write };
    const { _write: write, _writev: writev } = proto;
    proto._write = function (this: net.Socket, ...a: unknown[]) {
      if (this.remotePort === brokerPort) writes += 1;
      return write.apply(this, a);
    };
    proto._writev = function (this: net.Socket, ...a: unknown[]) {
      if (this.remotePort === brokerPort) writes += 1;
      return writev.apply(this, a);
    };
    const n = 500;
    try {
      await Promise.all(Array.from({ length: n }, (_, i) => warren.publish(s.message, { id: String(i), n: i })));
    } finally {
      proto._write = write;
      proto._writev = writev;
    }
    // Unbatched, amqplib writes each message (its method, header and body frames) on its own: 500 writes.
    expect(writes).toBeLessThan(n / 5);
    expect(await drainIds(s.queue)).toEqual(Array.from({ length: n }, (_, i) => String(i)));
  });

  it('keeps at most publisher.maxInFlight unconfirmed messages on the wire', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology, publisher: { maxInFlight: 5 } });
    p.pause('down'); // no confirm comes back, so the window never moves
    const before = p.bytesUp;
    // "bytesUp stops growing" cannot be observed without guessing a quiet period. Instead every
    // publish gets a deadline: once all 50 have rejected, none is waiting any more, so warren will
    // never send another byte (the next heartbeat is 10 s away) and bytesUp is final. Each
    // rejection also says whether that message went out (`sent`).
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, n) => warren.publish(s.message, { id: `${n}${KiB2}`, n }, { timeoutMs: 500 })),
    );
    const errors = results.map((r) => (r.status === 'rejected' ? (r.reason as unknown) : r.value));
    for (const e of errors) expect(e).toBeInstanceOf(PublishTimeoutError);
    const sent = errors.filter((e) => e instanceof PublishTimeoutError && e.sent).length;
    expect(sent).toBe(5);

    // What the proxy saw agrees: the 5 bodies crossed it (they may still be on their way), and
    // a 6th body would have pushed the total to 6 × 2048 bytes or more (each message's frames
    // carry ~200 bytes besides its body, so 5 messages stay well under that).
    await waitFor(() => p.bytesUp - before >= 5 * 2048, '5 bodies to cross the proxy');
    expect(p.bytesUp - before).toBeLessThan(6 * 2048);
    // The broker got (only) those five: 'up' was never paused.
    const queued = await waitFor(async () => {
      const { messages } = await queueCounts(s.queue);
      return messages >= 5 ? messages : false;
    }, 'the 5 sent messages to be queued');
    expect(queued).toBe(5);
  });

  it('close() waits for pending confirms; a publish after close() rejects with CLOSED', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    let confirmed = 0;
    const pending: Promise<PublishReceipt>[] = Array.from({ length: 200 }, (_, n) =>
      warren.publish(s.message, { id: `c${n}`, n }).then((r) => {
        confirmed += 1;
        return r;
      }),
    );
    await warren.close();
    expect(confirmed).toBe(200); // all confirmed before close() resolved
    const results = await Promise.allSettled(pending);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(200);
    expect((await queueCounts(s.queue)).messages).toBe(200);
    const err = await rejection(warren.publish(s.message, { id: 'late', n: 0 }), ClosedError);
    expect(err.code).toBe('CLOSED');
  });

  it("publishes to a queue by name through the default exchange ('')", async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const Direct = defineMessage({ name: 'direct', exchange: '', routingKey: s.queue, schema: Ping });
    const warren = await openClient({ topology: s.topology });
    await warren.publish(Direct, { id: 'd', n: 1 });
    expect(await drainIds(s.queue)).toEqual(['d']);
  });
});
