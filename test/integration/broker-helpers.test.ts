// The test helpers themselves, against the run's broker: if these lie, every other
// integration test does too.
import amqp from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { brokerUrls, cleanupTracked, management, queueCounts, track, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';

afterEach(async () => {
  await cleanupTracked();
});

describe('broker test helpers', () => {
  it('uniqueName gives a different name on every call, marked as a test name', () => {
    const names = Array.from({ length: 100 }, () => uniqueName('q'));
    expect(new Set(names).size).toBe(100);
    for (const n of names) expect(n).toMatch(/^test\.q-[0-9a-f]{10}$/);
  });

  it('queueCounts reports the exact number of messages in a queue', async () => {
    expect.hasAssertions();
    const queue = track.queue(uniqueName('counts'));
    await withRawChannel(async (_ch, conn) => {
      const confirm = await conn.createConfirmChannel();
      await confirm.assertQueue(queue, { durable: true });
      for (let i = 0; i < 3; i++) confirm.sendToQueue(queue, Buffer.from(`m${i}`));
      await confirm.waitForConfirms();
    });
    expect(await queueCounts(queue)).toEqual({ messages: 3, consumers: 0 });
  });

  it('management.queue shows a queue with its arguments, and nothing for a missing one', async () => {
    expect.hasAssertions();
    const queue = track.queue(uniqueName('args'));
    await withRawChannel((ch) => ch.assertQueue(queue, { durable: true, arguments: { 'x-max-length': 7 } }));
    const shown = await management.queue(queue);
    expect(shown).toMatchObject({ name: queue, durable: true, arguments: { 'x-max-length': 7 } });
    expect(await management.queue(uniqueName('missing'))).toBeUndefined();
  });

  it('closeConnectionsNamed closes a connection by its client-provided name', async () => {
    expect.hasAssertions();
    const name = uniqueName('conn');
    const conn = await amqp.connect(brokerUrls().amqpUrl, { clientProperties: { connection_name: name } });
    const closed = new Promise<unknown>((resolve) => conn.once('close', resolve));
    conn.on('error', () => undefined);
    try {
      // The management API lists a connection a moment after it opens.
      await waitFor(async () => (await management.connectionsNamed(name)).length === 1, `connection ${name} to be listed`);
      expect(await management.closeConnectionsNamed(name)).toBe(1);
      const err = await closed;
      expect(err).toBeInstanceOf(Error);
      expect((err as { code?: unknown }).code).toBe(320); // CONNECTION_FORCED
    } finally {
      await conn.close().catch(() => undefined);
    }
  });

  it('cleanupTracked deletes tracked queues and exchanges, and ones already gone are fine', async () => {
    expect.hasAssertions();
    const queue = track.queue(uniqueName('clean'));
    const exchange = track.exchange(uniqueName('clean'));
    track.queue(uniqueName('never-declared'));
    await withRawChannel(async (ch) => {
      await ch.assertQueue(queue);
      await ch.assertExchange(exchange, 'fanout');
    });
    await cleanupTracked();
    expect(await management.queue(queue)).toBeUndefined();
    expect(await management.exchange(exchange)).toBeUndefined();
  });

  it('waitFor returns the first truthy value, and names what it waited for on timeout', async () => {
    expect.hasAssertions();
    let calls = 0;
    await expect(waitFor(() => (++calls >= 3 ? calls : false), 'a third call', { intervalMs: 1 })).resolves.toBe(3);
    await expect(waitFor(() => false, 'something that never happens', { timeoutMs: 50, intervalMs: 10 })).rejects.toThrow(
      'Timed out after 50 ms waiting for something that never happens',
    );
  });
});
