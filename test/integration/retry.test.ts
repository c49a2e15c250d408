import { afterEach, describe, expect, it } from 'vitest';
import { defineConsumer, NonRetryableError, WarrenHeader, type DeadLetter } from '../../src/index.js';
import { cleanupTracked, management, queueCounts, track, waitFor, withRawChannel } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

/** pingSetup with a dead-letter queue, plus the retry wait queues it will get, all tracked. */
function setup(delays: string[] = [], type: 'classic' | 'quorum' = 'classic', extra: Record<string, unknown> = {}) {
  const s = pingSetup({ deadLetter: true, type, ...extra });
  for (const d of delays) track.queue(`${s.queue}.retry.${d}`);
  return s;
}

describe('retry with delay, dead letters', () => {
  it('retries through the wait queues with the configured gaps, then dead-letters after exactly maxAttempts, while healthy messages flow', async () => {
    expect.hasAssertions();
    const s = setup(['300ms', '600ms']);
    const warren = await openClient({ topology: s.topology });
    const attempts = new Map<string, { at: number; attempt: number }[]>();
    const healthy: string[] = [];
    await warren.consume(
      defineConsumer({
        name: 'flaky',
        queue: s.queue,
        message: s.message,
        prefetch: 20,
        concurrency: 5,
        retry: { maxAttempts: 3, delays: ['300ms', '600ms'] },
        handle: (p, ctx) => {
          if (!p.id.startsWith('bad')) return void healthy.push(p.id);
          attempts.set(p.id, [...(attempts.get(p.id) ?? []), { at: Date.now(), attempt: ctx.attempt }]);
          throw new Error(`cannot handle ${p.id}`);
        },
      }),
    );
    const bad = ['bad-1', 'bad-2', 'bad-3', 'bad-4'];
    const good = Array.from({ length: 40 }, (_, i) => `good-${i}`);
    await Promise.all([...bad, ...good].map((id, n) => warren.publish(s.message, { id, n })));
    // Healthy messages are not held up by the failing ones waiting for their retries.
    await waitFor(() => healthy.length === good.length, 'every healthy message');
    expect([...attempts.values()].every((a) => a.length < 3)).toBe(true);

    await waitFor(async () => (await queueCounts(s.dlq)).messages === bad.length, 'every failing message in the DLQ', { timeoutMs: 15_000 });
    for (const id of bad) {
      const a = attempts.get(id) ?? [];
      expect(a.map((x) => x.attempt)).toEqual([1, 2, 3]);
      const gaps = [a[1]!.at - a[0]!.at, a[2]!.at - a[1]!.at];
      // Tolerance: a wait queue expires messages within about a second of their TTL.
      expect(gaps[0]).toBeGreaterThanOrEqual(290);
      expect(gaps[0]).toBeLessThan(300 + 1500);
      expect(gaps[1]).toBeGreaterThanOrEqual(590);
      expect(gaps[1]).toBeLessThan(600 + 1500);
    }
    const dead = await warren.peekDeadLetters(s.queue, 10);
    expect(dead.map((d) => (d.body as { id: string }).id).sort()).toEqual(bad);
    expect(dead[0]).toMatchObject<Partial<DeadLetter>>({
      reason: 'retries-exhausted',
      attempts: 3,
      errorCode: 'Error',
      originalExchange: s.exchange,
      originalRoutingKey: 'ping.one',
      consumer: 'flaky',
    });
    expect(dead[0]?.errorMessage).toMatch(/^cannot handle bad-/);
    expect(dead[0]!.lastFailureAt!.getTime()).toBeGreaterThan(dead[0]!.firstFailureAt!.getTime());
    // Zero lost: every message is either handled or in the DLQ, and nothing is left behind.
    expect(healthy.length + (await queueCounts(s.dlq)).messages).toBe(good.length + bad.length);
    expect((await queueCounts(s.queue)).messages).toBe(0);
    expect((await queueCounts(`${s.queue}.retry.300ms`)).messages).toBe(0);
    expect((await queueCounts(`${s.queue}.retry.600ms`)).messages).toBe(0);
  });

  it('declares one wait queue per delay tier, which dead-letters back to the queue', async () => {
    expect.hasAssertions();
    const s = setup(['200ms', '400ms']);
    const warren = await openClient({ topology: s.topology });
    await warren.consume(
      defineConsumer({ queue: s.queue, message: s.message, retry: { maxAttempts: 4, backoff: { initialDelay: '200ms', factor: 2, maxDelay: '400ms' } }, handle: () => undefined }),
    );
    expect(await management.queue(`${s.queue}.retry.200ms`)).toMatchObject({
      durable: true,
      arguments: { 'x-message-ttl': 200, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': s.queue },
    });
    expect(await management.queue(`${s.queue}.retry.400ms`)).toMatchObject({ arguments: { 'x-message-ttl': 400 } });
  });

  it('sends invalid input straight to the DLQ with the reason, without calling the handler or retrying', async () => {
    expect.hasAssertions();
    const s = setup(['200ms']);
    const warren = await openClient({ topology: s.topology });
    let calls = 0;
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, retry: { maxAttempts: 5, delays: ['200ms'] }, handle: () => void (calls += 1) }));
    await withRawChannel(async (ch) => {
      ch.sendToQueue(s.queue, Buffer.from('{oops'), { contentType: 'application/json', messageId: 'not-json' });
      ch.sendToQueue(s.queue, Buffer.from('<ping/>'), { contentType: 'application/xml', messageId: 'wrong-type' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"x","n":-1}'), { contentType: 'application/json', messageId: 'bad-schema' });
      await ch.checkQueue(s.queue);
    });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 3, 'three dead letters');
    const dead = new Map((await warren.peekDeadLetters(s.queue, 10)).map((d) => [d.messageId, d]));
    expect(calls).toBe(0);
    expect(dead.get('not-json')).toMatchObject({ reason: 'invalid', errorCode: 'DECODE_FAILED', attempts: 1 });
    expect(dead.get('wrong-type')).toMatchObject({ reason: 'invalid', errorCode: 'DECODE_FAILED' });
    expect(dead.get('bad-schema')).toMatchObject({ reason: 'invalid', errorCode: 'VALIDATION_FAILED' });
    const issues = JSON.parse(String(dead.get('bad-schema')?.headers[WarrenHeader.validationIssues])) as { path: string[] }[];
    expect(issues[0]?.path).toEqual(['n']);
    expect((await queueCounts(`${s.queue}.retry.200ms`)).messages).toBe(0);
  });

  it('sends a NonRetryableError straight to the DLQ', async () => {
    expect.hasAssertions();
    const s = setup(['1s']);
    const warren = await openClient({ topology: s.topology });
    let calls = 0;
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        retry: { maxAttempts: 5, delays: ['1s'] },
        handle: () => {
          calls += 1;
          throw new NonRetryableError('card declined');
        },
      }),
    );
    await warren.publish(s.message, { id: 'declined', n: 1 });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the dead letter');
    expect(calls).toBe(1);
    expect((await warren.peekDeadLetters(s.queue))[0]).toMatchObject({ reason: 'non-retryable', errorCode: 'NON_RETRYABLE', errorMessage: 'card declined', attempts: 1 });
  });

  it('manual mode: ctx.retry({ delay }) brings the message back with the next attempt; ctx.deadLetter(reason) dead-letters it', async () => {
    expect.hasAssertions();
    const s = setup(['250ms']);
    const warren = await openClient({ topology: s.topology });
    const seen: number[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        ackMode: 'manual',
        handle: async (_p, ctx) => {
          seen.push(ctx.attempt);
          if (ctx.attempt === 1) await ctx.retry({ delay: '250ms' });
          else await ctx.deadLetter('gave up after a look');
        },
      }),
    );
    await warren.publish(s.message, { id: 'm', n: 0 });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the dead letter');
    expect(seen).toEqual([1, 2]);
    expect((await warren.peekDeadLetters(s.queue))[0]).toMatchObject({ reason: 'gave up after a look', errorCode: 'DEAD_LETTERED_BY_HANDLER', errorMessage: 'gave up after a look', attempts: 2 });
  });

  it('peek lists without removing; replay moves dead letters back (filter, limit) and they are consumed', async () => {
    expect.hasAssertions();
    const s = setup();
    const warren = await openClient({ topology: s.topology });
    let failing = true;
    const handled: string[] = [];
    const consumer = await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: (p) => {
          if (failing) throw new Error('down');
          handled.push(p.id);
        },
      }),
    );
    await Promise.all(['a', 'b', 'c', 'd'].map((id, n) => warren.publish(s.message, { id, n })));
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 4, 'four dead letters');
    expect(await warren.peekDeadLetters(s.queue, 2)).toHaveLength(2);
    expect((await queueCounts(s.dlq)).messages).toBe(4);

    failing = false;
    // It stops once two are replayed: `skipped` counts only what the filter left on the way (d, if it came first).
    const first = await warren.replayDeadLetters(s.queue, { filter: (d) => (d.body as { id: string }).id !== 'd', limit: 2 });
    expect(first.replayed).toBe(2);
    expect(first.skipped).toBeLessThanOrEqual(1);
    expect((await warren.peekDeadLetters(s.queue, 10)).map((d) => (d.body as { id: string }).id)).toContain('d');
    await waitFor(() => handled.length === 2, 'two replayed messages handled');
    expect(await warren.replayDeadLetters(s.queue)).toEqual({ replayed: 2, skipped: 0 });
    await waitFor(() => handled.length === 4, 'all replayed messages handled');
    expect(handled.sort()).toEqual(['a', 'b', 'c', 'd']);
    expect((await queueCounts(s.dlq)).messages).toBe(0);
    await consumer.stop();
    expect((await queueCounts(s.queue)).messages).toBe(0);
  });

  it('quorum queue: the broker dead-letters after deliveryLimit, and peek shows why', async () => {
    expect.hasAssertions();
    const s = setup([], 'quorum', { deliveryLimit: 2 });
    const warren = await openClient({ topology: s.topology });
    const counts: (number | undefined)[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        onError: 'requeue',
        handle: (_p, ctx) => {
          counts.push(ctx.deliveryCount);
          throw new Error('always');
        },
      }),
    );
    await warren.publish(s.message, { id: 'q', n: 0 });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the broker to dead-letter it');
    expect(counts).toHaveLength(3);
    expect(counts.at(-1)).toBe(2);
    expect((await warren.peekDeadLetters(s.queue))[0]).toMatchObject({ reason: 'delivery_limit', originalExchange: s.exchange });
  });

  it('quorum queue: 50 peeks leave every dead letter in place and in order (a delivery limit never drops them)', async () => {
    expect.hasAssertions();
    const s = setup([], 'quorum');
    const warren = await openClient({ topology: s.topology });
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: () => {
          throw new NonRetryableError('no');
        },
      }),
    );
    for (const n of [1, 2, 3]) await warren.publish(s.message, { id: `d${n}`, n });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 3, 'three dead letters');
    for (let i = 0; i < 50; i += 1) await warren.peekDeadLetters(s.queue, 2);
    const all = await warren.peekDeadLetters(s.queue, 10);
    expect(all.map((d) => (d.body as { id: string }).id)).toEqual(['d1', 'd2', 'd3']);
    expect(all.every((d) => d.reason === 'non-retryable')).toBe(true);
    expect((await queueCounts(s.dlq)).messages).toBe(3);
  });

  it("quorum queue: its wait queues and its .dlq are quorum queues too; the wait queues dead-letter at-least-once", async () => {
    expect.hasAssertions();
    const s = setup(['1s'], 'quorum');
    const warren = await openClient({ topology: s.topology });
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, retry: { maxAttempts: 2, delays: ['1s'] }, handle: () => undefined }));
    const wait = await management.queue(`${s.queue}.retry.1s`);
    expect(wait).toMatchObject({ type: 'quorum', durable: true });
    expect(wait?.arguments).toMatchObject({ 'x-queue-type': 'quorum', 'x-message-ttl': 1000, 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' });
    expect(await management.queue(s.dlq)).toMatchObject({ type: 'quorum', durable: true });
  });
});
