// Queue limits, TTL and dead-letter exchanges as RabbitMQ applies them, on both transports.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineConsumer, defineMessage, defineTopology, type QueueDefinition } from '../../src/index.js';
import { harness, side, type Harness } from './harness.js';

let h: Harness;
beforeEach(() => {
  h = harness();
});
afterEach(async () => {
  await h.close();
});

const Note = z.object({ n: z.number() });

function queueWith(definition: QueueDefinition) {
  const exchange = h.name('ex');
  const queue = h.name('q');
  const topology = defineTopology({
    exchanges: { [exchange]: { type: 'direct' } },
    queues: { [queue]: { bindings: [{ exchange, routingKey: 'k' }], ...definition } },
  });
  const message = defineMessage({ name: 'note', exchange, routingKey: 'k', schema: Note });
  return { queue, dlq: `${queue}.dlq`, topology, message };
}

describe(`queues (${side})`, () => {
  it('max-length with drop-head drops the oldest to the dead-letter queue, reason maxlen', async () => {
    const { queue, dlq, topology, message } = queueWith({ maxLength: 2, deadLetter: true });
    const w = await h.start({ topology, messages: [message] });
    for (const n of [1, 2, 3]) await w.publish(message, { n });
    expect((await h.messages(queue)).map((m) => m.body)).toEqual([{ n: 2 }, { n: 3 }]);
    await h.until(async () => (await h.count(dlq)) === 1, 'the dropped message is dead-lettered');
    const [dead] = await h.messages(dlq);
    expect(dead?.body).toEqual({ n: 1 });
    expect(dead?.headers['x-first-death-reason']).toBe('maxlen');
    expect(dead?.headers['x-first-death-queue']).toBe(queue);
  });

  it("overflow reject-publish refuses the message that does not fit: the publish fails PUBLISH_NACKED", async () => {
    const { queue, topology, message } = queueWith({ maxLength: 1, overflow: 'reject-publish' });
    const w = await h.start({ topology, messages: [message] });
    await w.publish(message, { n: 1 });
    await expect(w.publish(message, { n: 2 })).rejects.toMatchObject({ code: 'PUBLISH_NACKED' });
    expect((await h.messages(queue)).map((m) => m.body)).toEqual([{ n: 1 }]);
  });

  it('a queue TTL dead-letters expired messages with x-death reason expired; a per-message TTL too', async () => {
    const { queue, dlq, topology, message } = queueWith({ messageTtl: 300, deadLetter: true });
    const w = await h.start({ topology, messages: [message] });
    await w.publish(message, { n: 1 });
    await w.publish(message, { n: 2 }, { expirationMs: 100 });
    expect(await h.count(queue)).toBe(2);
    await h.elapse(400);
    await h.until(async () => (await h.count(dlq)) === 2, 'both messages are dead-lettered');
    expect(await h.count(queue)).toBe(0);
    const dead = await h.messages(dlq);
    expect(dead.map((m) => m.body)).toEqual([{ n: 1 }, { n: 2 }]);
    const deaths = dead.map((m) => (m.headers['x-death'] as { reason: string; queue: string; count: number }[])[0]);
    expect(deaths.map((d) => [d?.reason, d?.queue, d?.count])).toEqual([
      ['expired', queue, 1],
      ['expired', queue, 1],
    ]);
    // The per-message TTL is kept in x-death, not on the dead-lettered copy.
    expect(dead.map((m) => (m.headers['x-death'] as Record<string, unknown>[])[0]?.['original-expiration'])).toEqual([undefined, '100']);
  });

  it('a message sent with a body that is not JSON reaches the queue as it was sent', async () => {
    const { queue, topology, message } = queueWith({});
    await h.start({ topology, messages: [message] });
    await h.sendRaw(message.exchange, 'k', 'plain text', { headers: { 'x-custom': 'yes', nested: { a: 1, list: [1, 'two'] } } });
    await h.until(async () => (await h.count(queue)) === 1, 'the raw message is queued');
    const [m] = await h.messages(queue);
    expect(m?.body).toBe('plain text');
    expect(m?.headers).toMatchObject({ 'x-custom': 'yes', nested: { a: 1, list: [1, 'two'] } });
  });

  it('overflow reject-publish-dlx refuses the message and dead-letters it', async () => {
    const { queue, dlq, topology, message } = queueWith({ maxLength: 1, overflow: 'reject-publish-dlx', deadLetter: true });
    const w = await h.start({ topology, messages: [message] });
    await w.publish(message, { n: 1 });
    await expect(w.publish(message, { n: 2 })).rejects.toMatchObject({ code: 'PUBLISH_NACKED' });
    expect((await h.messages(queue)).map((m) => m.body)).toEqual([{ n: 1 }]);
    await h.until(async () => (await h.count(dlq)) === 1, 'the refused message is dead-lettered');
    const [dead] = await h.messages(dlq);
    expect(dead?.body).toEqual({ n: 2 });
    expect(dead?.headers['x-first-death-reason']).toBe('maxlen');
  });

  it('a message that expired behind the head is dead-lettered, not delivered, when a consumer comes', async () => {
    const { queue, dlq, topology, message } = queueWith({ deadLetter: true });
    const w = await h.start({ topology, messages: [message] });
    await w.publish(message, { n: 1 });
    await w.publish(message, { n: 2 }, { expirationMs: 50 });
    await w.publish(message, { n: 3 });
    await h.elapse(200);
    const seen: number[] = [];
    const c = defineConsumer({ name: 'late', queue, message, handle: (m) => void seen.push(m.n) });
    await h.start({ topology, messages: [message], consumers: [c] });
    await h.until(() => seen.length === 2, 'the two live messages are delivered');
    await h.until(async () => (await h.count(dlq)) === 1, 'the expired one is dead-lettered');
    expect(seen).toEqual([1, 3]);
    expect((await h.messages(dlq)).map((m) => m.body)).toEqual([{ n: 2 }]);
  });

  it('a burst into a length-limited queue with a consumer waiting is delivered, not refused', async () => {
    const { queue, topology, message } = queueWith({ maxLength: 1, overflow: 'reject-publish' });
    const seen: number[] = [];
    const c = defineConsumer({ name: 'eager', queue, message, prefetch: 10, concurrency: 10, handle: (m) => void seen.push(m.n) });
    const w = await h.start({ topology, messages: [message], consumers: [c] });
    await Promise.all([1, 2, 3, 4].map((n) => w.publish(message, { n })));
    await h.until(() => seen.length === 4, 'all four are delivered');
    expect([...seen].sort()).toEqual([1, 2, 3, 4]);
  });
});

