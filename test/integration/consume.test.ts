import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineConsumer, defineMessage, type ConsumerContext, type ConsumerEvent, type WarrenError } from '../../src/index.js';
import { cleanupTracked, drainQueue, queueCounts, track, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';
import { closeClients, gate, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

const ids = (msgs: { content: Buffer }[]): string[] => msgs.map((m) => (JSON.parse(m.content.toString()) as { id: string }).id);

describe('consume()', () => {
  it('auto mode: hands the typed payload and context to the handler, acks on resolve', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const seen: { id: string; ctx: ConsumerContext }[] = [];
    const events: ConsumerEvent[] = [];
    warren.on('consumer', (e) => events.push(e));
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: (p, ctx) => void seen.push({ id: p.id, ctx }) }));
    const { messageId } = await warren.publish(s.message, { id: 'a', n: 1 }, { correlationId: 'c-1', headers: { h: 'v' } });
    await waitFor(() => seen.length === 1, 'the handler to run');
    const ctx = seen[0]!.ctx;
    expect(ctx).toMatchObject({ messageId, correlationId: 'c-1', redelivered: false, exchange: s.exchange, routingKey: 'ping.one', deliveryCount: undefined });
    expect(ctx.headers).toMatchObject({ h: 'v' });
    expect(ctx.timestamp).toBeInstanceOf(Date);
    expect(typeof ctx.log.info).toBe('function');
    expect(events).toContainEqual(expect.objectContaining({ type: 'attached', queue: s.queue }));
    await warren.close();
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
  });

  it('dead-letters a message whose handler throws (default onError) and keeps consuming', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled: string[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: (p) => {
          if (p.id === 'poison') throw new Error('cannot handle');
          handled.push(p.id);
        },
      }),
    );
    for (const id of ['a', 'poison', 'b']) await warren.publish(s.message, { id, n: 0 });
    await waitFor(() => handled.length === 2, 'the healthy messages');
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the poison message in the DLQ');
    expect(handled).toEqual(['a', 'b']);
    expect(ids(await drainQueue(s.dlq))).toEqual(['poison']);
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
    expect((await queueCounts(s.queue)).messages).toBe(0);
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });

  it('dead-letters undecodable, wrongly typed and schema-failing bodies at once, without calling the handler', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled: string[] = [];
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, onError: 'requeue', handle: (p) => void handled.push(p.id) }));
    await withRawChannel(async (ch) => {
      ch.sendToQueue(s.queue, Buffer.from('{not json'), { contentType: 'application/json', messageId: 'not-json' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"t","n":1}'), { contentType: 'text/plain', messageId: 'wrong-type' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"s","n":-4}'), { contentType: 'application/json', messageId: 'bad-schema' });
      ch.sendToQueue(s.queue, Buffer.from('{"id":"good","n":1}'), { contentType: 'application/json', messageId: 'good' });
      await ch.checkQueue(s.queue); // a round trip: the sends above reached the broker
    });
    await waitFor(() => handled.length === 1, 'the valid message');
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 3, 'three invalid messages in the DLQ');
    expect(handled).toEqual(['good']);
    expect((await drainQueue(s.dlq)).map((m) => m.properties.messageId).sort()).toEqual(['bad-schema', 'not-json', 'wrong-type']);
    expect(warren.health().consumers[0]).toMatchObject({ attached: true });
  });

  it('manual mode: ack, nack with requeue, reject; a second ack is ignored and the channel survives', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const calls: string[] = [];
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
    for (const id of ['twice', 'requeue', 'reject', 'last']) await warren.publish(s.message, { id, n: 0 });
    await waitFor(() => calls.includes('last') && calls.includes('requeue*'), 'every message handled');
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the rejected message in the DLQ');
    expect(ids(await drainQueue(s.dlq))).toEqual(['reject']);
    expect(warren.health().consumers[0]?.attached).toBe(true);
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
    expect((await queueCounts(s.queue)).messages).toBe(0);
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });

  it('prefetch bounds the messages taken; concurrency bounds the handlers running', async () => {
    expect.hasAssertions();
    for (const [prefetch, concurrency] of [
      [5, 5],
      [10, 3],
    ] as const) {
      const s = pingSetup();
      const warren = await openClient({ topology: s.topology });
      const release = gate();
      let running = 0;
      let maxRunning = 0;
      let done = 0;
      await Promise.all(Array.from({ length: 20 }, (_, n) => warren.publish(s.message, { id: `m${n}`, n })));
      await warren.consume(
        defineConsumer({
          queue: s.queue,
          message: s.message,
          prefetch,
          concurrency,
          handle: async () => {
            running += 1;
            maxRunning = Math.max(maxRunning, running);
            await release.promise;
            running -= 1;
            done += 1;
          },
        }),
      );
      await waitFor(() => running === concurrency, `${concurrency} handlers running`);
      await waitFor(async () => (await queueCounts(s.queue)).messages === 20 - prefetch, `${prefetch} messages prefetched`);
      release.open();
      await waitFor(() => done === 20, 'all 20 handled');
      expect(maxRunning).toBe(concurrency);
    }
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
    expect(counts[0] ?? 0).toBe(0);
    expect(counts[1]).toBe(1);
  });

  it('stop(): the running handler finishes and acks, unstarted prefetched messages go back, nothing more is consumed', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const release = gate();
    const finished: string[] = [];
    await Promise.all(Array.from({ length: 5 }, (_, n) => warren.publish(s.message, { id: `m${n}`, n })));
    const handle = await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        prefetch: 5,
        handle: async (p) => {
          await release.promise;
          finished.push(p.id);
        },
      }),
    );
    await waitFor(async () => (await queueCounts(s.queue)).messages === 0, 'all five prefetched');
    let stopped = false;
    const stopping = handle.stop().then(() => (stopped = true));
    await waitFor(async () => (await queueCounts(s.queue)).consumers === 0, 'the consumer cancelled');
    expect(stopped).toBe(false); // still waiting for the running handler
    release.open();
    await stopping;
    expect(finished).toEqual(['m0']);
    expect(await queueCounts(s.queue)).toEqual({ messages: 4, consumers: 0 });
    expect(warren.health().consumers).toEqual([]);
    await warren.publish(s.message, { id: 'after', n: 9 });
    expect((await queueCounts(s.queue)).messages).toBe(5);
  });

  it('rejects consume() of a missing queue with CONSUME_FAILED, and a duplicate consumer name with CONFIG_INVALID', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const missing = uniqueName('missing');
    const Missing = defineMessage({ name: 'm', exchange: '', routingKey: missing, schema: z.object({}) });
    const err = await warren.consume(defineConsumer({ queue: missing, message: Missing, handle: () => undefined })).catch((e: unknown) => e as WarrenError);
    expect(err).toMatchObject({ code: 'CONSUME_FAILED' });
    const c = defineConsumer({ queue: s.queue, message: s.message, handle: () => undefined });
    await warren.consume(c);
    expect(await warren.consume(c).catch((e: unknown) => (e as WarrenError).code)).toBe('CONFIG_INVALID');
    expect(warren.health().consumers).toHaveLength(1);
    track.queue(missing);
  });
});
