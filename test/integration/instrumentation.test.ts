// The instrumentation seam: node:diagnostics_channel channels that metrics and tracing subscribe
// to, checked end to end against RabbitMQ (what the broker decides: confirms, returns, delivery).
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  defineConsumer,
  NonRetryableError,
  WarrenChannel,
  type ConnectionStateChange,
  type ConsumerStateChange,
  type ConsumeTrace,
  type DeadLetterDecision,
  type PublishTrace,
  type RetryDecision,
} from '../../src/index.js';
import { cleanupTracked, queueCounts, sendRaw, waitFor } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup } from '../helpers/warren.js';

const publishChannel = diagnostics.tracingChannel<unknown, PublishTrace>(WarrenChannel.publish);
const consumeChannel = diagnostics.tracingChannel<unknown, ConsumeTrace>(WarrenChannel.consume);

const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const undo of cleanups.splice(0)) undo();
  await closeClients();
  await cleanupTracked();
});

type Seen<T> = { event: 'start' | 'end' | 'error'; snapshot: T }[];

/** Subscribes to a tracing channel for this test, recording a copy of the context as each event saw it, for one client. */
function record<T extends { client: string }>(channel: diagnostics.TracingChannel<unknown, T>, client: string): Seen<T> {
  const seen: Seen<T> = [];
  const on = (event: 'start' | 'end' | 'error') => (ctx: T) => {
    if (ctx.client === client) seen.push({ event, snapshot: { ...ctx } });
  };
  const handlers = { start: on('start'), end: on('end'), asyncStart: () => undefined, asyncEnd: () => undefined, error: on('error') };
  channel.subscribe(handlers);
  cleanups.push(() => channel.unsubscribe(handlers));
  return seen;
}

/** Subscribes to a plain channel for this test. */
function listen<T extends { client: string }>(name: string, client: string): T[] {
  const seen: T[] = [];
  const fn = (m: unknown): void => {
    if ((m as T).client === client) seen.push(m as T);
  };
  diagnostics.subscribe(name, fn);
  cleanups.push(() => diagnostics.unsubscribe(name, fn));
  return seen;
}

describe('warren:publish', () => {
  it('sees exactly one start and one end per publish(), the end carrying the outcome the caller got', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology, name: 'instrumented-publisher' });
    const seen = record(publishChannel, 'instrumented-publisher');

    const ok = await Promise.all([1, 2, 3].map((n) => warren.publish(s.message, { id: `m${n}`, n })));
    const invalid = await warren.publish(s.message, { id: 'bad', n: -1 }).catch((e: unknown) => e);
    const unroutable = await warren.publish(s.message, { id: 'lost', n: 4 }, { routingKey: 'nobody.listens' }).catch((e: unknown) => e);

    const starts = seen.filter((e) => e.event === 'start').map((e) => e.snapshot);
    const ends = seen.filter((e) => e.event === 'end').map((e) => e.snapshot);
    expect(starts).toHaveLength(5);
    expect(ends).toHaveLength(5);
    // On start the outcome is not known yet; the id is, and it is the one the caller gets.
    expect(starts.map((t) => t.outcome)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(starts.slice(0, 3).map((t) => t.messageId)).toEqual(ok.map((r) => r.messageId));
    expect(starts[0]).toMatchObject({ contract: 'ping', exchange: s.exchange, routingKey: 'ping.one' });
    expect(starts[4]).toMatchObject({ routingKey: 'nobody.listens' });

    const byId = new Map(ends.map((t) => [t.messageId, t]));
    for (const r of ok) {
      expect(byId.get(r.messageId)?.outcome).toBe('confirmed');
      expect(byId.get(r.messageId)?.error).toBeUndefined();
    }
    expect(ends.find((t) => t.outcome === 'failed')?.error).toBe(invalid);
    expect(ends.find((t) => t.outcome === 'returned')?.error).toBe(unroutable);
    expect((unroutable as { code: string }).code).toBe('UNROUTABLE');
    for (const t of ends) expect(t.durationMs).toBeGreaterThanOrEqual(0);
    // error comes once per failure, just before its end.
    const errors = seen.filter((e) => e.event === 'error').map((e) => e.snapshot.error);
    expect(errors).toEqual([invalid, unroutable]);

    expect(warren.health().publisher).toMatchObject({ published: 4, confirmed: 3, returned: 1, nacked: 0, timedOut: 0, failed: 0 });
  });

  it('sends the headers a subscriber adds on start, and they reach the consumer', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology, name: 'injecting-publisher' });
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const inject = (message: unknown): void => {
      const ctx = message as PublishTrace;
      if (ctx.client === 'injecting-publisher') ctx.headers['traceparent'] = traceparent;
    };
    publishChannel.start.subscribe(inject);
    cleanups.push(() => publishChannel.start.unsubscribe(inject));
    const consumeStarts = record(consumeChannel, 'injecting-publisher');

    const received: unknown[] = [];
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: (_p, ctx) => void received.push(ctx.headers['traceparent']) }));
    await warren.publish(s.message, { id: 'a', n: 1 }, { headers: { tenant: 'acme' } });
    await waitFor(() => received.length === 1, 'the handler to run');

    expect(received).toEqual([traceparent]);
    // The consume side sees it where a tracer extracts it, beside the caller's own headers.
    expect(consumeStarts[0]?.snapshot.headers).toMatchObject({ traceparent, tenant: 'acme' });
  });
});

describe('warren:consume', () => {
  it('sees one start and one end per delivery, the end carrying the outcome and the broker action', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology, name: 'instrumented-consumer' });
    const seen = record(consumeChannel, 'instrumented-consumer');
    const retries = listen<RetryDecision>(WarrenChannel.retry, 'instrumented-consumer');
    const deadLetters = listen<DeadLetterDecision>(WarrenChannel.deadLetter, 'instrumented-consumer');
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        retry: { maxAttempts: 2, delays: [50] },
        handle: (p) => {
          if (p.id === 'flaky') throw new Error('try again');
          if (p.id === 'declined') throw new NonRetryableError('card declined');
        },
      }),
    );
    const fine = await warren.publish(s.message, { id: 'fine', n: 1 });
    const declined = await warren.publish(s.message, { id: 'declined', n: 2 });
    const flaky = await warren.publish(s.message, { id: 'flaky', n: 3 });
    // A body that is not JSON, from a client that is not warren.
    await sendRaw(s.queue, { body: 'not json', messageId: 'raw-1' });

    // fine, declined, flaky (attempt 1), raw, flaky (attempt 2): five deliveries.
    await waitFor(() => seen.filter((e) => e.event === 'end').length === 5, 'five deliveries to be settled');
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 3, 'three dead letters');
    const starts = seen.filter((e) => e.event === 'start');
    const ends = seen.filter((e) => e.event === 'end').map((e) => e.snapshot);
    expect(starts).toHaveLength(5);
    expect(starts.every((e) => e.snapshot.outcome === undefined && e.snapshot.action === undefined)).toBe(true);

    const summary = ends.map((t) => ({ id: t.messageId, attempt: t.attempt, outcome: t.outcome, action: t.action, reason: t.reason }));
    expect(summary).toHaveLength(5);
    expect(summary).toEqual(
      expect.arrayContaining([
        { id: fine.messageId, attempt: 1, outcome: 'handled', action: 'ack', reason: undefined },
        { id: declined.messageId, attempt: 1, outcome: 'failed', action: 'dead-letter', reason: 'non-retryable' },
        { id: flaky.messageId, attempt: 1, outcome: 'failed', action: 'retry', reason: undefined },
        { id: flaky.messageId, attempt: 2, outcome: 'failed', action: 'dead-letter', reason: 'retries-exhausted' },
        { id: 'raw-1', attempt: 1, outcome: 'invalid', action: 'dead-letter', reason: 'invalid' },
      ]),
    );
    expect(ends.find((t) => t.action === 'retry')?.delayMs).toBe(50);
    for (const t of ends) {
      expect(t).toMatchObject({ consumer: s.queue, queue: s.queue, contract: 'ping' });
      expect(t.durationMs).toBeGreaterThanOrEqual(0);
    }
    expect(seen.filter((e) => e.event === 'error')).toHaveLength(4);

    expect(retries).toEqual([expect.objectContaining({ consumer: s.queue, queue: s.queue, attempt: 1, delayMs: 50, waitQueue: `${s.queue}.retry.50ms` })]);
    expect(deadLetters.map((d) => d.reason).sort()).toEqual(['invalid', 'non-retryable', 'retries-exhausted']);
    expect(deadLetters.every((d) => d.copiedTo?.routingKey === s.dlq)).toBe(true);

    expect(warren.health().consumers[0]).toMatchObject({
      delivered: 5,
      acked: 1,
      retried: 1,
      requeued: 0,
      rejected: 0,
      deadLettered: { invalid: 1, 'non-retryable': 1, 'retries-exhausted': 1, 'handler-failed': 0, handler: 0 },
    });
  });

  it('runs the handler inside the stores bound to its start channel (bindStore), across awaits', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology, name: 'store-consumer' });
    const store = new AsyncLocalStorage<{ messageId: string | undefined }>();
    consumeChannel.start.bindStore(store, (ctx) => ({ messageId: ctx.messageId }));
    cleanups.push(() => consumeChannel.start.unbindStore(store));

    const seen: { messageId: string | undefined; before: unknown; after: unknown }[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        concurrency: 2,
        prefetch: 2,
        handle: async (_p, ctx) => {
          const before = store.getStore()?.messageId;
          await sleep(5);
          seen.push({ messageId: ctx.messageId, before, after: store.getStore()?.messageId });
        },
      }),
    );
    const a = await warren.publish(s.message, { id: 'a', n: 1 });
    const b = await warren.publish(s.message, { id: 'b', n: 2 });
    await waitFor(() => seen.length === 2, 'both handlers to finish');
    expect(seen).toEqual(
      expect.arrayContaining([
        { messageId: a.messageId, before: a.messageId, after: a.messageId },
        { messageId: b.messageId, before: b.messageId, after: b.messageId },
      ]),
    );
    // Outside a handler, nothing is bound.
    expect(store.getStore()).toBeUndefined();
  });
});

describe('plain channels', () => {
  it('reports connection states and consumer attach / detach', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const connections = listen<ConnectionStateChange>(WarrenChannel.connection, 'lifecycle-client');
    const consumers = listen<ConsumerStateChange>(WarrenChannel.consumer, 'lifecycle-client');
    const warren = await openClient({ topology: s.topology, name: 'lifecycle-client' });
    const handle = await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: () => undefined }));
    await handle.stop();
    await warren.close();

    expect(connections.map((c) => `${c.role}:${c.previous}->${c.state}`)).toEqual([
      'publish:connecting->open',
      'consume:connecting->open',
      'publish:open->closing',
      'consume:open->closing',
      'publish:closing->closed',
      'consume:closing->closed',
    ]);
    expect(connections[0]?.url).toMatch(/^amqp:\/\/guest:\*\*\*@/);
    expect(consumers.map((c) => c.type)).toEqual(['attached', 'detached']);
    expect(consumers[0]).toMatchObject({ consumer: s.queue, queue: s.queue, consumerTag: expect.any(String) });
    expect(consumers[1]).toMatchObject({ reason: 'stopped' });
  });
});
