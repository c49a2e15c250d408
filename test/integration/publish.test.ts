import { afterEach, describe, expect, it } from 'vitest';
import { defineMessage, type PublishReceipt, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, drainQueue, queueCounts, track, uniqueName, waitFor } from '../helpers/broker.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { closeClients, openClient, Ping, pingSetup } from '../helpers/warren.js';

const proxies: TcpProxy[] = [];
async function proxy(): Promise<TcpProxy> {
  const p = await startTcpProxy(brokerUrls().amqpUrl);
  proxies.push(p);
  return p;
}

afterEach(async () => {
  for (const p of proxies.splice(0)) p.resume();
  await closeClients();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  await cleanupTracked();
});

async function rejection(p: Promise<unknown>): Promise<WarrenError> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e as WarrenError,
  );
}

describe('publish()', () => {
  it('resolves after the confirm, with the documented message properties', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = uniqueName('app');
    const warren = await openClient({ topology: s.topology, name });
    const receipt = await warren.publish(s.message, { id: 'a', n: 1 });
    const given = await warren.publish(
      s.message,
      { id: 'b', n: 2 },
      { messageId: 'my-id', correlationId: 'corr-1', headers: { tenant: 'acme' }, timestamp: new Date('2026-01-02T03:04:05Z') },
    );
    expect(receipt.messageId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(given).toEqual({ messageId: 'my-id' });

    const [first, second] = await drainQueue(s.queue);
    expect(JSON.parse(first!.content.toString())).toEqual({ id: 'a', n: 1 });
    expect(first!.properties).toMatchObject({ contentType: 'application/json', deliveryMode: 2, messageId: receipt.messageId, type: 'ping', appId: name });
    expect(Math.abs(Number(first!.properties.timestamp) - Date.now() / 1000)).toBeLessThan(60);
    expect(second!.properties).toMatchObject({ messageId: 'my-id', correlationId: 'corr-1', headers: { tenant: 'acme' }, timestamp: 1767323045 });
  });

  it('rejects an invalid payload with VALIDATION_FAILED and sends nothing', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const err = await rejection(warren.publish(s.message, { id: 'a', n: -1 }));
    expect(err.code).toBe('VALIDATION_FAILED');
    expect((err as unknown as { issues: { path: string[] }[] }).issues[0]?.path).toEqual(['n']);
    await warren.publish(s.message, { id: 'ok', n: 1 }); // a confirm after the refusal: the refused one would be ahead of it
    expect((await queueCounts(s.queue)).messages).toBe(1);
  });

  it('rejects a body over maxMessageBytes with MESSAGE_TOO_LARGE and sends nothing', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology, publisher: { maxMessageBytes: 100 } });
    const err = await rejection(warren.publish(s.message, { id: 'x'.repeat(200), n: 1 }));
    expect(err.code).toBe('MESSAGE_TOO_LARGE');
    await warren.publish(s.message, { id: 'small', n: 1 });
    expect((await queueCounts(s.queue)).messages).toBe(1);
  });

  it('rejects a mandatory message no queue is bound for with UNROUTABLE; mandatory: false is dropped by choice', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const err = await rejection(warren.publish(s.message, { id: 'a', n: 1 }, { routingKey: 'nobody.listens' }));
    expect(err.code).toBe('UNROUTABLE');
    expect((err as unknown as { replyCode: number }).replyCode).toBe(312);
    await expect(warren.publish(s.message, { id: 'b', n: 1 }, { routingKey: 'nobody.listens', mandatory: false })).resolves.toHaveProperty('messageId');
    await warren.publish(s.message, { id: 'c', n: 1 });
    expect((await drainQueue(s.queue)).map((m) => JSON.parse(m.content.toString()).id)).toEqual(['c']);
  });

  it('rejects what the broker nacks with PUBLISH_NACKED (queue full, overflow reject-publish)', async () => {
    expect.hasAssertions();
    const s = pingSetup({ maxLength: 1, overflow: 'reject-publish' });
    const warren = await openClient({ topology: s.topology });
    await warren.publish(s.message, { id: '1', n: 1 });
    expect((await rejection(warren.publish(s.message, { id: '2', n: 2 }))).code).toBe('PUBLISH_NACKED');
    expect((await rejection(warren.publish(s.message, { id: '3', n: 3 }))).code).toBe('PUBLISH_NACKED');
    expect((await queueCounts(s.queue)).messages).toBe(1);
  });

  it('rejects a publish to a missing exchange with PUBLISH_FAILED; the others in flight still arrive', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const Nowhere = defineMessage({ name: 'nowhere', exchange: uniqueName('missing'), routingKey: 'x', schema: Ping });
    const good = Array.from({ length: 200 }, (_, i) => warren.publish(s.message, { id: `g${i}`, n: i }));
    const bad = warren.publish(Nowhere, { id: 'bad', n: 0 });
    const more = Array.from({ length: 200 }, (_, i) => warren.publish(s.message, { id: `h${i}`, n: i }));
    expect((await rejection(bad)).code).toBe('PUBLISH_FAILED');
    await Promise.all([...good, ...more]);
    await warren.publish(s.message, { id: 'after', n: 0 });
    const ids = new Set((await drainQueue(s.queue)).map((m) => JSON.parse(m.content.toString()).id));
    // Every confirmed message arrived (a re-published one may arrive twice, hence the set).
    expect(ids.size).toBe(401);
  });

  it('rejects with PUBLISH_TIMEOUT (sent: true) when no confirm comes in time', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology });
    p.pause('down');
    const err = await rejection(warren.publish(s.message, { id: 'a', n: 1 }, { timeoutMs: 300 }));
    expect(err.code).toBe('PUBLISH_TIMEOUT');
    expect((err as unknown as { sent: boolean }).sent).toBe(true);
  });

  it('rejects with PUBLISH_BUFFER_FULL once the buffer is full, and sends the buffered ones later', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology, publisher: { maxInFlight: 1, maxBufferedMessages: 2 } });
    p.pause('down');
    const accepted = [0, 1, 2].map((n) => warren.publish(s.message, { id: `m${n}`, n }));
    expect((await rejection(warren.publish(s.message, { id: 'm3', n: 3 }))).code).toBe('PUBLISH_BUFFER_FULL');
    p.resume();
    await Promise.all(accepted);
    expect((await queueCounts(s.queue)).messages).toBe(3);
  });

  it('pipelines: many publishes go out before the first confirm, bounded by maxInFlight', async () => {
    expect.hasAssertions();
    const body = 'x'.repeat(2048);
    for (const [maxInFlight, expectSent] of [
      [1000, 50],
      [5, 5],
    ] as const) {
      const s = pingSetup();
      const p = await proxy();
      const warren = await openClient({ urls: [p.url], topology: s.topology, publisher: { maxInFlight } });
      p.pause('down'); // confirms cannot come back
      const before = p.bytesUp;
      let settled = 0;
      const all = Array.from({ length: 50 }, (_, n) => warren.publish(s.message, { id: `${n}${body}`, n }).finally(() => (settled += 1)));
      // All the bytes warren will send before a confirm arrives, as whole bodies.
      await waitFor(() => p.bytesUp - before >= expectSent * 2048, `${expectSent} bodies to cross the proxy`);
      // Now let confirms flow: if warren had sent more than the window, the broker would have them.
      expect(settled).toBe(0);
      const sentBeforeAnyConfirm = Math.floor((p.bytesUp - before) / 2048);
      p.resume();
      await Promise.all(all);
      expect(sentBeforeAnyConfirm).toBeGreaterThanOrEqual(expectSent);
      if (maxInFlight === 5) expect(sentBeforeAnyConfirm).toBeLessThan(6 * 1.1);
      expect((await queueCounts(s.queue)).messages).toBe(50);
    }
  });

  it('close() waits for pending confirms; publish after close rejects with CLOSED', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const pending: Promise<PublishReceipt>[] = Array.from({ length: 200 }, (_, n) => warren.publish(s.message, { id: `c${n}`, n }));
    await warren.close();
    const results = await Promise.allSettled(pending);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(200);
    expect((await queueCounts(s.queue)).messages).toBe(200);
    expect((await rejection(warren.publish(s.message, { id: 'late', n: 0 }))).code).toBe('CLOSED');
  });

  it('publishes to a queue by name through the default exchange', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const Direct = defineMessage({ name: 'direct', exchange: '', routingKey: s.queue, schema: Ping });
    const warren = await openClient({ topology: s.topology });
    await warren.publish(Direct, { id: 'd', n: 1 });
    expect((await queueCounts(track.queue(s.queue))).messages).toBe(1);
  });
});
