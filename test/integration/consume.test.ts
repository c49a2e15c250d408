import type { GetMessage } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  ConfigError,
  ConsumeError,
  defineConsumer,
  defineMessage,
  WarrenHeader,
  type ConsumerContext,
  type ConsumerEvent,
  type Warren,
} from '../../src/index.js';
import { cleanupTracked, drainQueue, queueCounts, track, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';
import { closeClients, gate, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

const ids = (msgs: GetMessage[]): string[] => msgs.map((m) => (JSON.parse(m.content.toString()) as { id: string }).id);
const reasons = (msgs: GetMessage[]): unknown[] => msgs.map((m) => (m.properties.headers as Record<string, unknown> | undefined)?.[WarrenHeader.reason]);

/** Every `consumer` event the client emits, in order. */
function consumerEvents(warren: Warren): ConsumerEvent[] {
  const events: ConsumerEvent[] = [];
  warren.on('consumer', (e) => events.push(e));
  return events;
}

describe('consume()', () => {
  it('auto mode: hands the typed payload and the context to the handler, acks when it resolves', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const events = consumerEvents(warren);
    const seen: { payload: { id: string; n: number }; ctx: ConsumerContext }[] = [];
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: (payload, ctx) => void seen.push({ payload, ctx }) }));
    const { messageId } = await warren.publish(s.message, { id: 'a', n: 1 }, { correlationId: 'c-1', headers: { h: 'v' } });
    await waitFor(() => seen.length === 1, 'the handler to run');
    const { payload, ctx } = seen[0]!;
    expect(payload).toEqual({ id: 'a', n: 1 });
    expect(ctx).toMatchObject({ messageId, correlationId: 'c-1', redelivered: false, exchange: s.exchange, routingKey: 'ping.one', attempt: 1, deliveryCount: undefined });
    expect(ctx.headers).toMatchObject({ h: 'v' });
    expect(ctx.timestamp).toBeInstanceOf(Date);
    expect(typeof ctx.log.info).toBe('function');
    const consumerTag = warren.health().consumers[0]?.consumerTag;
    expect(events).toEqual([{ type: 'attached', consumer: s.queue, queue: s.queue, consumerTag }]);
    await warren.close();
    // Had the message not been acked, closing the channel would have put it back.
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
  });

  it('dead-letters a message whose handler throws (default onError) once, and keeps consuming', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled: string[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: (p) => {
          handled.push(p.id);
          if (p.id === 'poison') throw new Error('cannot handle');
        },
      }),
    );
    for (const id of ['a', 'poison', 'b']) await warren.publish(s.message, { id, n: 0 });
    // concurrency 1: 'b' starts only after 'poison' was settled (its dead letter confirmed).
    await waitFor(() => handled.includes('b'), 'the message after the poison one');
    await warren.close();
    expect(handled).toEqual(['a', 'poison', 'b']);
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    const dead = await drainQueue(s.dlq);
    expect(ids(dead)).toEqual(['poison']);
    expect(reasons(dead)).toEqual(['handler-failed']);
  });

  it("onError 'requeue' redelivers; success on the second try ends acked", async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const deliveries: boolean[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        onError: 'requeue',
        handle: (_p, ctx) => {
          deliveries.push(ctx.redelivered);
          if (deliveries.length === 1) throw new Error('transient');
        },
      }),
    );
    await warren.publish(s.message, { id: 'a', n: 0 });
    await waitFor(() => deliveries.length === 2, 'the redelivery');
    await warren.close();
    expect(deliveries).toEqual([false, true]);
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });

  it('dead-letters undecodable, wrongly typed and schema-failing bodies at once, without calling the handler', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled: string[] = [];
    // onError 'requeue' on purpose: invalid input must not be requeued even then.
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, onError: 'requeue', handle: (p) => void handled.push(p.id) }));
    await withRawChannel(async (ch) => {
      ch.sendToQueue(s.queue, Buffer.from('{not json'), { contentType: 'application/json', messageId: 'not-json' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"t","n":1}'), { contentType: 'text/plain', messageId: 'wrong-type' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"s","n":-4}'), { contentType: 'application/json', messageId: 'bad-schema' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"good","n":1}'), { contentType: 'application/json', messageId: 'good' });
      await ch.checkQueue(s.queue); // a round trip: the sends above reached the broker
    });
    await waitFor(() => handled.length === 1, 'the valid message');
    // concurrency 1 and in order: the three invalid ones were settled before 'good' was handled.
    expect((await queueCounts(s.dlq)).messages).toBe(3);
    expect(handled).toEqual(['good']);
    expect(warren.health().consumers[0]).toMatchObject({ attached: true });
    const dead = await drainQueue(s.dlq);
    expect(dead.map((m) => m.properties.messageId as unknown).sort()).toEqual(['bad-schema', 'not-json', 'wrong-type']);
    expect(reasons(dead)).toEqual(['invalid', 'invalid', 'invalid']);
    await warren.close();
    expect((await queueCounts(s.queue)).messages).toBe(0);
  });

  it('manual mode: ack, nack with requeue, reject; a second ack is ignored and the channel survives', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const events = consumerEvents(warren);
    const calls: string[] = [];
    for (const id of ['twice', 'requeue', 'reject', 'last']) await warren.publish(s.message, { id, n: 0 });
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        ackMode: 'manual',
        handle: (p, ctx) => {
          calls.push(`${p.id}${ctx.redelivered ? '*' : ''}`);
          if (p.id === 'twice') {
            ctx.ack();
            ctx.ack();
          } else if (p.id === 'requeue' && !ctx.redelivered) ctx.nack({ requeue: true });
          else if (p.id === 'reject') ctx.reject();
          else ctx.ack();
        },
      }),
    );
    await waitFor(() => calls.includes('last') && calls.includes('requeue*'), 'every message handled');
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the rejected message in the DLQ');
    // A second ack reaching the broker would close the channel (406): the consumer would detach,
    // re-attach, and the broker would redeliver the messages prefetched on the old channel.
    expect(events.map((e) => e.type)).toEqual(['attached']);
    expect(warren.health().consumers[0]).toMatchObject({ attached: true, consumerTag: events[0]?.type === 'attached' ? events[0].consumerTag : 'none' });
    expect([...calls].sort()).toEqual(['last', 'reject', 'requeue', 'requeue*', 'twice']);
    expect(ids(await drainQueue(s.dlq))).toEqual(['reject']);
    await warren.close();
    expect((await queueCounts(s.queue)).messages).toBe(0);
  });

  it("ackMode 'none': the broker forgets each message once sent, even when the handler throws", async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    let calls = 0;
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        ackMode: 'none',
        handle: () => {
          calls += 1;
          throw new Error('ignored');
        },
      }),
    );
    for (const n of [1, 2, 3]) await warren.publish(s.message, { id: `m${n}`, n });
    await waitFor(() => calls === 3, 'three deliveries');
    await warren.close();
    expect(calls).toBe(3);
    expect((await queueCounts(s.queue)).messages).toBe(0);
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });

  /**
   * Queues 20 messages, consumes them with a handler held on a gate, and waits until the handlers
   * are running and the prefetch is taken; then opens the gate and waits for all 20.
   */
  async function holdAndRelease(prefetch: number, concurrency: number) {
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const release = gate();
    const stats = { running: 0, maxRunning: 0, done: 0 };
    await Promise.all(Array.from({ length: 20 }, (_, n) => warren.publish(s.message, { id: `m${n}`, n })));
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        prefetch,
        concurrency,
        handle: async () => {
          stats.running += 1;
          stats.maxRunning = Math.max(stats.maxRunning, stats.running);
          await release.promise;
          stats.running -= 1;
          stats.done += 1;
        },
      }),
    );
    await waitFor(() => stats.running === concurrency, `${concurrency} handlers running`);
    await waitFor(async () => (await queueCounts(s.queue)).messages === 20 - prefetch, `${prefetch} messages taken from the queue`);
    const whileHeld = { running: stats.running, inFlight: warren.health().consumers[0]?.inFlight };
    release.open();
    await waitFor(() => stats.done === 20, 'all 20 handled');
    await warren.close();
    return { whileHeld, maxRunning: stats.maxRunning, afterClose: await queueCounts(s.queue) };
  }

  it('prefetch 5: five handlers run, fifteen messages stay ready, all 20 are handled once released', async () => {
    expect.hasAssertions();
    const r = await holdAndRelease(5, 5);
    expect(r.whileHeld).toEqual({ running: 5, inFlight: 5 });
    expect(r.maxRunning).toBe(5);
    expect(r.afterClose).toEqual({ messages: 0, consumers: 0 });
  });

  it('concurrency 3 with prefetch 10: never more than three handlers at once', async () => {
    expect.hasAssertions();
    const r = await holdAndRelease(10, 3);
    expect(r.whileHeld).toEqual({ running: 3, inFlight: 3 });
    expect(r.maxRunning).toBe(3);
    expect(r.afterClose).toEqual({ messages: 0, consumers: 0 });
  });

  it('reports the delivery count on a quorum queue', async () => {
    expect.hasAssertions();
    const s = pingSetup({ type: 'quorum' });
    const warren = await openClient({ topology: s.topology });
    const counts: (number | undefined)[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        onError: 'requeue',
        handle: (_p, ctx) => {
          counts.push(ctx.deliveryCount);
          if (counts.length === 1) throw new Error('once');
        },
      }),
    );
    await warren.publish(s.message, { id: 'q', n: 0 });
    await waitFor(() => counts.length === 2, 'the redelivery');
    expect(counts).toEqual([0, 1]); // 0 on the first delivery, though the broker sends no header then
  });

  it('stop(): cancels at once, handles what was already delivered, acks it all, consumes nothing more', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const release = gate();
    const handled: { id: string; redelivered: boolean }[] = [];
    await Promise.all(Array.from({ length: 5 }, (_, n) => warren.publish(s.message, { id: `m${n}`, n })));
    const handle = await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        prefetch: 5,
        handle: async (p, ctx) => {
          await release.promise;
          handled.push({ id: p.id, redelivered: ctx.redelivered });
        },
      }),
    );
    await waitFor(async () => (await queueCounts(s.queue)).messages === 0, 'all five prefetched');
    let stopped = false;
    const stopping = handle.stop().then(() => (stopped = true));
    // Cancelled while the first handler still runs: no consumer, and nothing handed back.
    await waitFor(async () => (await queueCounts(s.queue)).consumers === 0, 'the consumer cancelled');
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    expect(stopped).toBe(false);
    release.open();
    await stopping;
    // The four prefetched behind it were handled too, each once, none redelivered, all acked.
    expect(handled).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'].map((id) => ({ id, redelivered: false })));
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    expect(warren.health().consumers).toEqual([]);
    await warren.publish(s.message, { id: 'after', n: 9 });
    expect(await queueCounts(s.queue)).toEqual({ messages: 1, consumers: 0 });
    expect(handled).toHaveLength(5);
  });

  it('a slow handler does not hold the prefetch slots of messages finished after it; everything ends acked', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const slow = gate();
    const handled: string[] = [];
    await Promise.all(Array.from({ length: 6 }, (_, n) => warren.publish(s.message, { id: `m${n}`, n })));
    const handle = await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        prefetch: 3,
        concurrency: 3,
        handle: async (p) => {
          if (p.id === 'm0') await slow.promise;
          handled.push(p.id);
        },
      }),
    );
    // m1 and m2 finish while m0 runs: acked on their own, they free two slots for m3..m5.
    await waitFor(() => handled.length === 5, 'the five messages behind the slow one handled');
    expect([...handled].sort()).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    slow.open();
    await waitFor(() => handled.length === 6, 'the slow one handled');
    await handle.stop();
    // Nothing unacked went back to the queue when the channel closed.
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
  });

  it('stop() deadline: unstarted messages go back to the queue, the running one is redelivered', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const never = gate();
    const started: string[] = [];
    await Promise.all(Array.from({ length: 3 }, (_, n) => warren.publish(s.message, { id: `m${n}`, n })));
    const handle = await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        prefetch: 3,
        stopTimeoutMs: 300,
        handle: async (p) => {
          started.push(p.id);
          await never.promise;
        },
      }),
    );
    await waitFor(() => started.length === 1 && queueCounts(s.queue).then((c) => c.messages === 0), 'all three prefetched, one started');
    await handle.stop();
    expect(started).toEqual(['m0']);
    // Two returned at the deadline, and m0 when the channel closed under its stuck handler.
    expect(await queueCounts(s.queue)).toEqual({ messages: 3, consumers: 0 });
    never.open();
  });

  it('rejects consume() of a missing queue with ConsumeError CONSUME_FAILED; the client goes on consuming', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const missing = track.queue(uniqueName('missing'));
    const Missing = defineMessage({ name: 'm', exchange: '', routingKey: missing, schema: z.object({}) });
    const err = await warren.consume(defineConsumer({ queue: missing, message: Missing, handle: () => undefined })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsumeError);
    expect(err).toMatchObject({ code: 'CONSUME_FAILED' });
    expect(warren.health().consumers).toEqual([]);
    const handled: string[] = [];
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: (p) => void handled.push(p.id) }));
    await warren.publish(s.message, { id: 'ok', n: 1 });
    await waitFor(() => handled.length === 1, 'a message on the existing queue');
    expect(handled).toEqual(['ok']);
  });

  it('a consume() that rejected leaves no consumer behind: a queue created later is not consumed', async () => {
    expect.hasAssertions();
    const warren = await openClient();
    const events = consumerEvents(warren);
    const missing = track.queue(uniqueName('missing'));
    const Missing = defineMessage({ name: 'm', exchange: '', routingKey: missing, schema: z.object({ id: z.string() }) });
    const handled: string[] = [];
    const err = await warren.consume(defineConsumer({ queue: missing, message: Missing, handle: (p) => void handled.push(p.id) })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONSUME_FAILED' });
    await withRawChannel(async (ch) => {
      await ch.assertQueue(missing);
      ch.sendToQueue(missing, Buffer.from('{"id":"late"}'), { contentType: 'application/json' });
      await ch.checkQueue(missing);
    });
    // A consumer still retrying in the background would attach within its first backoff
    // (at most 100 ms); watching ten times as long shows there is none.
    const appeared = await waitFor(async () => events.length > 0 || handled.length > 0 || (await queueCounts(missing)).consumers > 0, 'a consumer on the late queue', {
      timeoutMs: 1000,
    }).then(
      () => true,
      () => false,
    );
    expect({ appeared, events, handled }).toEqual({ appeared: false, events: [], handled: [] });
    expect(await queueCounts(missing)).toEqual({ messages: 1, consumers: 0 });
  });

  it('rejects a second consumer with a name already running with ConfigError CONFIG_INVALID', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    await warren.consume(defineConsumer({ name: 'billing', queue: s.queue, message: s.message, handle: () => undefined }));
    const err = await warren.consume(defineConsumer({ name: 'billing', queue: s.queue, message: s.message, handle: () => undefined })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(warren.health().consumers).toHaveLength(1);
    expect((await queueCounts(s.queue)).consumers).toBe(1);
  });

  it('rejects the duplicate name also when both consume() calls are made at once', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const define = () => defineConsumer({ name: 'billing', queue: s.queue, message: s.message, handle: () => undefined });
    const results = await Promise.allSettled([warren.consume(define()), warren.consume(define())]);
    const outcomes = results.map((r) => (r.status === 'fulfilled' ? 'attached' : (r.reason as { code?: unknown }).code));
    expect(outcomes.sort()).toEqual(['CONFIG_INVALID', 'attached']);
    expect(warren.health().consumers).toHaveLength(1);
    expect((await queueCounts(s.queue)).consumers).toBe(1);
  });
});
