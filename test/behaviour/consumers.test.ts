// What a consumer's outcome rule does with deliveries, checked on both transports: acks,
// retries through wait queues, dead-letters, requeues, prefetch, quorum delivery counts,
// reconnects and dead-letter replay.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineConsumer, defineMessage, defineTopology, NonRetryableError, type ConsumerDefinition, type MessageContract, type QueueDefinition } from '../../src/index.js';
import { harness, side, type Harness } from './harness.js';

let h: Harness;
beforeEach(() => {
  h = harness();
});
afterEach(async () => {
  await h.close();
});

const Job = z.object({ id: z.string() });

function setup(queueDefinition: QueueDefinition = { deadLetter: true }) {
  const exchange = h.name('ex');
  const queue = h.name('q');
  const topology = defineTopology({
    exchanges: { [exchange]: { type: 'topic' } },
    queues: { [queue]: { bindings: [{ exchange, routingKey: 'job.#' }], ...queueDefinition } },
  });
  const message = defineMessage({ name: 'job', exchange, routingKey: 'job.run', schema: Job });
  return { queue, dlq: `${queue}.dlq`, topology, message };
}

function consumer<M extends MessageContract>(queue: string, message: M, definition: Omit<ConsumerDefinition<M>, 'queue' | 'message'>) {
  return defineConsumer({ queue, message, ...definition });
}

describe(`consumers (${side})`, () => {
  it('a handler that resolves acks: the queue is left empty', async () => {
    const { queue, topology, message } = setup();
    const seen: string[] = [];
    const c = consumer(queue, message, { name: 'ok', handle: (job) => void seen.push(job.id) });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await w.publish(message, { id: 'b' });
    await h.until(() => h.deliveries.length === 2, 'two deliveries are settled');
    expect(seen).toEqual(['a', 'b']);
    expect(h.deliveries.map((d) => [d.attempt, d.action])).toEqual([
      [1, 'ack'],
      [1, 'ack'],
    ]);
    expect(await h.count(queue)).toBe(0);
  });

  it('a failure is retried after the policy delay, as attempt 2, through a wait queue', async () => {
    const { queue, topology, message } = setup();
    const attempts: number[] = [];
    const c = consumer(queue, message, {
      name: 'flaky',
      retry: { maxAttempts: 3, delays: ['200ms'] },
      handle: (_job, ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt === 1) throw new Error('provider timeout');
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await h.until(() => h.deliveries.length === 1, 'the first attempt is settled');
    expect(h.deliveries[0]).toMatchObject({ action: 'retry', delayMs: 200, attempt: 1, outcome: 'failed' });
    expect(await h.count(`${queue}.retry.200ms`)).toBe(1);
    await h.elapse(250);
    await h.until(() => h.deliveries.length === 2, 'the retry is settled');
    expect(h.deliveries[1]).toMatchObject({ action: 'ack', attempt: 2 });
    expect(attempts).toEqual([1, 2]);
    expect(await h.count(`${queue}.retry.200ms`)).toBe(0);
  });

  it('the last attempt dead-letters with reason retries-exhausted and the error in headers', async () => {
    const { queue, topology, message } = setup();
    const c = consumer(queue, message, {
      name: 'broken',
      retry: { maxAttempts: 2, delays: ['100ms'] },
      handle: () => {
        throw Object.assign(new Error('still down'), { code: 'E_DOWN' });
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await h.until(() => h.deliveries.length === 1, 'attempt 1 is settled');
    await h.elapse(150);
    await h.until(() => h.deliveries.length === 2, 'attempt 2 is settled');
    expect(h.deliveries.map((d) => d.action)).toEqual(['retry', 'dead-letter']);
    expect(h.deliveries[1]?.reason).toBe('retries-exhausted');
    const [dead] = await w.peekDeadLetters(queue);
    expect(dead).toMatchObject({ body: { id: 'a' }, reason: 'retries-exhausted', errorCode: 'E_DOWN', errorMessage: 'still down', attempts: 2 });
  });

  it('an invalid body and a NonRetryableError go straight to the dead-letter queue, each with its reason', async () => {
    const { queue, topology, message } = setup();
    const c = consumer(queue, message, {
      name: 'strict',
      retry: { maxAttempts: 5, delays: ['1s'] },
      handle: (job) => {
        if (job.id === 'declined') throw new NonRetryableError('card declined');
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await h.sendRaw(message.exchange, 'job.run', '{"id": 42}', { messageId: 'bad-1', contentType: 'application/json' });
    await w.publish(message, { id: 'declined' });
    await h.until(() => h.deliveries.length === 2, 'both are settled');
    const dead = await w.peekDeadLetters(queue);
    expect(dead.map((d) => [d.reason, d.attempts])).toEqual([
      ['invalid', 1],
      ['non-retryable', 1],
    ]);
    expect(dead[0]?.headers['x-warren-validation-issues']).toContain('id');
  });

  it("onError 'requeue' gives the message back: it comes again marked redelivered", async () => {
    const { queue, topology, message } = setup({});
    const seen: boolean[] = [];
    const c = consumer(queue, message, {
      name: 'requeuer',
      onError: 'requeue',
      handle: (_job, ctx) => {
        seen.push(ctx.redelivered);
        if (seen.length === 1) throw new Error('not yet');
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await h.until(() => h.deliveries.length === 2, 'the requeued message is handled again');
    expect(h.deliveries.map((d) => d.action)).toEqual(['requeue', 'ack']);
    expect(seen).toEqual([false, true]);
  });

  it("a manual ctx.reject() leaves dead-lettering to the broker: x-death says rejected", async () => {
    const { queue, dlq, topology, message } = setup();
    const c = defineConsumer({ name: 'manual', queue, message, ackMode: 'manual', handle: (_job, ctx) => ctx.reject() });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await h.until(async () => (await h.count(dlq)) === 1, 'the rejected message reaches the DLQ');
    const [dead] = await h.messages(dlq);
    expect(dead?.body).toEqual({ id: 'a' });
    expect((dead?.headers['x-death'] as { reason: string; queue: string }[])[0]).toMatchObject({ reason: 'rejected', queue });
  });

  it('prefetch bounds what is in flight: with 2 and handlers held, 2 run and the rest wait in the queue', async () => {
    const { queue, topology, message } = setup({});
    let running = 0;
    let most = 0;
    const releases: (() => void)[] = [];
    const c = consumer(queue, message, {
      name: 'slow',
      prefetch: 2,
      concurrency: 2,
      handle: async () => {
        running++;
        most = Math.max(most, running);
        await new Promise<void>((resolve) => releases.push(resolve));
        running--;
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    for (const id of ['a', 'b', 'c', 'd', 'e']) await w.publish(message, { id });
    await h.until(() => releases.length === 2, 'two handlers are running');
    expect(await h.count(queue)).toBe(3);
    while (h.deliveries.length < 5) {
      releases.shift()?.();
      await h.until(() => releases.length > 0 || h.deliveries.length === 5, 'the next handler starts');
    }
    expect(most).toBe(2);
    expect(await h.count(queue)).toBe(0);
  });

  it('a quorum queue counts deliveries: each requeue raises ctx.deliveryCount', async () => {
    const { queue, topology, message } = setup({ type: 'quorum' });
    const counts: (number | undefined)[] = [];
    const c = consumer(queue, message, {
      name: 'counter',
      onError: 'requeue',
      handle: (_job, ctx) => {
        counts.push(ctx.deliveryCount);
        if (counts.length < 3) throw new Error('again');
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await h.until(() => h.deliveries.length === 3, 'three deliveries');
    expect(counts).toEqual([0, 1, 2]);
  });

  it('a consumer comes back after its connection is closed by the broker; the unacked message is redelivered', async () => {
    const { queue, topology, message } = setup({});
    let release: (() => void) | undefined;
    const seen: boolean[] = [];
    const c = consumer(queue, message, {
      name: 'survivor',
      // Room for the redelivery while the first handler still holds its slot.
      concurrency: 2,
      handle: async (_job, ctx) => {
        seen.push(ctx.redelivered);
        if (seen.length === 1) await new Promise<void>((resolve) => (release = resolve));
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c], connect: { reconnect: { initialDelay: 50, maxDelay: 200 } } });
    await w.publish(message, { id: 'a' });
    await h.until(() => release !== undefined, 'the handler holds the first delivery');
    await h.dropConnections();
    await h.until(() => seen.length === 2, 'the message is delivered again after the reconnect');
    release?.();
    expect(seen).toEqual([false, true]);
    await h.until(() => h.deliveries.some((d) => d.redelivered && d.action === 'ack'), 'the redelivery is acked');
    await h.until(async () => (await h.count(queue)) === 0, 'the queue is empty');
  });

  it('dead letters can be peeked and replayed: the replayed one is handled again', async () => {
    const { queue, topology, message } = setup();
    let fail = true;
    const c = consumer(queue, message, {
      name: 'replayable',
      handle: (job) => {
        if (fail) throw new NonRetryableError(`cannot do ${job.id}`);
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await w.publish(message, { id: 'b' });
    await h.until(() => h.deliveries.length === 2, 'both are dead-lettered');
    expect((await w.peekDeadLetters(queue)).map((d) => d.body)).toEqual([{ id: 'a' }, { id: 'b' }]);
    fail = false;
    const replayed = await w.replayDeadLetters(queue, { filter: (d) => (d.body as { id: string }).id === 'b' });
    expect(replayed.replayed).toBe(1);
    await h.until(() => h.deliveries.length === 3, 'the replayed message is handled');
    expect(h.deliveries[2]).toMatchObject({ action: 'ack' });
    expect((await w.peekDeadLetters(queue)).map((d) => d.body)).toEqual([{ id: 'a' }]);
  });

  it('declaring a queue that exists with other arguments fails TOPOLOGY_MISMATCH', async () => {
    const { queue, topology, message } = setup({ messageTtl: 1000 });
    await h.start({ topology, messages: [message] });
    const changed = defineTopology({
      exchanges: { [message.exchange]: { type: 'topic' } },
      queues: { [queue]: { bindings: [{ exchange: message.exchange, routingKey: 'job.#' }], messageTtl: 2000 } },
    });
    await expect(h.start({ topology: changed, messages: [message] })).rejects.toMatchObject({ code: 'TOPOLOGY_MISMATCH' });
  });

  it('a quorum queue with a delivery limit dead-letters a message requeued past it, reason delivery_limit', async () => {
    const { dlq, topology, message } = setup({ type: 'quorum', deliveryLimit: 2, deadLetter: true });
    const c = consumer(topology.queues.find((q) => q.deadLetterOf === undefined)?.name ?? '', message, {
      name: 'limited',
      onError: 'requeue',
      handle: () => {
        throw new Error('never works');
      },
    });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await w.publish(message, { id: 'a' });
    await h.until(async () => (await h.count(dlq)) === 1 && h.deliveries.length === 3, 'the message is dead-lettered after its limit');
    // The first delivery and two redeliveries, then the broker gives up on it.
    expect(h.deliveries.map((d) => d.action)).toEqual(['requeue', 'requeue', 'requeue']);
    const [dead] = await h.messages(dlq);
    expect(dead?.headers['x-first-death-reason']).toBe('delivery_limit');
  });
});
