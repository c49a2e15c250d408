// The consumer pipeline (src/consume/: subscription → dispatch → pipeline → settler, by the rule
// of outcome.ts) over a scripted transport, with no broker: one test per row of decide()'s table
// that a consumer can reach. Each asserts what the broker would see — acks and nacks with their
// tags and flags, retry and dead-letter copies with their routing keys and headers — and the
// counts in health(). What RabbitMQ then does with them is checked in test/integration.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  connect,
  defineConsumer,
  defineMessage,
  defineTopology,
  NonRetryableError,
  WarrenHeader,
  type AckMode,
  type Consumer,
  type ConsumerCounts,
  type ManualContext,
  type Warren,
} from '../../src/index.js';
import { ScriptedTransport, type SentMessage } from '../helpers/scripted-transport.js';

const Order = defineMessage({ name: 'order.placed', exchange: 'orders', routingKey: 'order.placed', schema: z.object({ orderId: z.string() }) });
const binding = { exchange: 'orders', routingKey: 'order.*' };
const topology = defineTopology({
  exchanges: { orders: { type: 'topic' }, graveyard: { type: 'direct' } },
  queues: {
    billing: { bindings: [binding], deadLetter: true }, // warren copies dead letters to billing.dlq
    audit: { bindings: [binding] }, // no dead-letter queue: the rule rejects instead
    shipping: { bindings: [binding], deadLetter: { exchange: 'graveyard', routingKey: 'shipping.dead' } },
  },
});
const policy = { maxAttempts: 3, delays: ['1s', '5s'] as const };
const order = (orderId = 'o-1') => ({ body: { orderId } });

const clients: { warren: Warren; transport: ScriptedTransport }[] = [];

afterEach(async () => {
  // A test that failed before confirming a copy must not hold close() for its handler's 30 s stop timeout.
  for (const { transport } of clients) transport.confirmAll();
  await Promise.all(clients.splice(0).map(({ warren }) => warren.close()));
});

async function start<A extends AckMode>(consumer: Consumer<typeof Order, A>, transport = new ScriptedTransport()) {
  const warren = await connect({ urls: ['amqp://fake'], transport, topology, closeTimeout: 100 });
  clients.push({ warren, transport });
  const handle = await warren.consume(consumer);
  return { warren, transport, handle };
}

/** The acks and nacks warren sent on its consumer channels, as the broker saw them. */
function settlements(t: ScriptedTransport): string[] {
  return t.frames.flatMap((f) => {
    if (f.op === 'ack') return [`ack ${f.deliveryTag}${f.multiple ? ' multiple' : ''}`];
    if (f.op === 'nack') return [`nack ${f.deliveryTag}${f.multiple ? ' multiple' : ''}${f.requeue ? ' requeue' : ''}`];
    return [];
  });
}

const settled = (t: ScriptedTransport, n = 1) => t.waitFor(() => settlements(t).length >= n, `${n} ack(s) or nack(s)`);

/** The n-th message warren published (here: its retry and dead-letter copies), once it has. */
async function copy(t: ScriptedTransport, n = 1): Promise<SentMessage> {
  await t.waitFor(() => t.published.length >= n, `copy #${n}`);
  return t.published[n - 1] as SentMessage;
}

/**
 * Acks requested in the turn a handler ends go out at the end of that turn (src/consume/acker.ts);
 * an immediate queued from inside an immediate runs after it. Used only to show that nothing came.
 */
const acksFlushed = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** What health().consumers[0] counted. */
function countsOf(warren: Warren): ConsumerCounts {
  const c = warren.health().consumers[0];
  if (c === undefined) throw new Error('no consumer is running');
  return { delivered: c.delivered, acked: c.acked, retried: c.retried, requeued: c.requeued, rejected: c.rejected, deadLettered: c.deadLettered };
}

type Tally = Partial<Omit<ConsumerCounts, 'deadLettered'>> & { deadLettered?: Partial<ConsumerCounts['deadLettered']> };

/** Asserts health().consumers[0]'s counts: those given, and every other one (each dead-letter reason too) at 0. */
function expectCounts(warren: Warren, c: Tally): void {
  const actual = countsOf(warren);
  const deadLettered = { ...Object.fromEntries(Object.keys(actual.deadLettered).map((reason) => [reason, 0])), ...c.deadLettered };
  expect(actual).toEqual({ delivered: 0, acked: 0, retried: 0, requeued: 0, rejected: 0, ...c, deadLettered });
}

const failing = () => {
  throw new Error('database unavailable');
};

describe('consumer pipeline over a scripted transport: the rule of src/consume/outcome.ts, row by row', () => {
  it("handler starts, ackMode 'none': acked before the handler finishes; nothing more after it, even when it throws", async () => {
    expect.hasAssertions();
    const release = deferred();
    const finished = deferred();
    const consumer = defineConsumer({
      queue: 'billing',
      message: Order,
      ackMode: 'none',
      async handle() {
        try {
          await release.promise;
          throw new Error('fails after the ack');
        } finally {
          finished.resolve();
        }
      },
    });
    const { warren, transport } = await start(consumer);
    transport.deliver('billing', order());
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);

    release.resolve();
    await finished.promise;
    await acksFlushed();
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expect(transport.published).toEqual([]);
    expectCounts(warren, { delivered: 1, acked: 1 });
  });

  it.each([
    ['is not JSON', 'not json {', 'DECODE_FAILED'],
    ['fails the schema', { orderId: 42 }, 'VALIDATION_FAILED'],
  ])('invalid: a body that %s is copied to <queue>.dlq (reason invalid); the original is acked once the copy is confirmed', async (_what, body, code) => {
    expect.hasAssertions();
    let handled = 0;
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: () => void (handled += 1) }));
    const original = transport.deliver('billing', { body, messageId: 'm-1' });
    const dead = await copy(transport);
    expect([dead.exchange, dead.routingKey, dead.messageId]).toEqual(['', 'billing.dlq', 'm-1']);
    expect(dead.body).toEqual(original.body);
    expect(dead.headers).toMatchObject({ [WarrenHeader.reason]: 'invalid', [WarrenHeader.errorCode]: code, [WarrenHeader.originQueue]: 'billing' });
    expect(dead.properties).toMatchObject({ persistent: true, mandatory: true });

    await acksFlushed();
    expect(settlements(transport)).toEqual([]); // not before the copy is safe
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expect(handled).toBe(0);
    expectCounts(warren, { delivered: 1, deadLettered: { invalid: 1 } });
  });

  it('auto, resolved: acked; handlers that finish in one turn share one multiple ack', async () => {
    expect.hasAssertions();
    const seen: string[] = [];
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, handle: (o) => void seen.push(o.orderId) }));
    for (const id of ['o-1', 'o-2', 'o-3']) transport.deliver('billing', order(id));
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 3 multiple']);
    expect(seen).toEqual(['o-1', 'o-2', 'o-3']);
    expectCounts(warren, { delivered: 3, acked: 3 });
  });

  it('manual, resolved without a call: the message stays unacked (a later ack does not cover it)', async () => {
    expect.hasAssertions();
    const consumer = defineConsumer({
      queue: 'billing',
      message: Order,
      ackMode: 'manual',
      handle: (o, ctx) => {
        if (o.orderId === 'o-2') ctx.ack();
      },
    });
    const { warren, transport } = await start(consumer);
    transport.deliver('billing', order('o-1'));
    transport.deliver('billing', order('o-2'));
    await settled(transport);
    await acksFlushed();
    expect(settlements(transport)).toEqual(['ack 2']); // not "multiple": that would have acked 1 too
    expectCounts(warren, { delivered: 2, acked: 1 });
  });

  it('threw NonRetryableError: dead-lettered (non-retryable) at once, retry policy or not', async () => {
    expect.hasAssertions();
    const consumer = defineConsumer({
      queue: 'billing',
      message: Order,
      retry: policy,
      handle: () => {
        throw new NonRetryableError('card declined');
      },
    });
    const { warren, transport } = await start(consumer);
    transport.deliver('billing', order());
    const dead = await copy(transport);
    expect(dead.routingKey).toBe('billing.dlq');
    expect(dead.headers).toMatchObject({
      [WarrenHeader.reason]: 'non-retryable',
      [WarrenHeader.errorCode]: 'NON_RETRYABLE',
      [WarrenHeader.errorMessage]: 'card declined',
      [WarrenHeader.attempts]: 1,
    });
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, deadLettered: { 'non-retryable': 1 } });
  });

  it('threw, attempts left: a copy goes to the wait queue of the next delay with x-warren-attempt + 1; the original is acked after its confirm', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: failing }));
    // The wait queues were declared as the consumer attached: each holds a copy `delay`, then hands it back to billing.
    const waitQueues = transport.of('assertQueue').filter((f) => f.name.startsWith('billing.retry.'));
    expect(waitQueues.map((f) => [f.name, f.arguments])).toEqual([
      ['billing.retry.1s', { 'x-queue-type': 'classic', 'x-message-ttl': 1000, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing' }],
      ['billing.retry.5s', { 'x-queue-type': 'classic', 'x-message-ttl': 5000, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing' }],
    ]);

    transport.deliver('billing', { ...order(), messageId: 'm-1' });
    const first = await copy(transport);
    expect([first.exchange, first.routingKey, first.messageId]).toEqual(['', 'billing.retry.1s', 'm-1']);
    expect(first.headers).toMatchObject({ [WarrenHeader.attempt]: 2, [WarrenHeader.errorMessage]: 'database unavailable', [WarrenHeader.originalRoutingKey]: 'billing' });
    await acksFlushed();
    expect(settlements(transport)).toEqual([]);
    first.ack();
    await settled(transport);

    transport.deliver('billing', { ...order(), headers: { [WarrenHeader.attempt]: 2 } });
    const second = await copy(transport, 2);
    expect(second.routingKey).toBe('billing.retry.5s');
    expect(second.headers).toMatchObject({ [WarrenHeader.attempt]: 3 });
    second.ack();
    await settled(transport, 2);
    expect(settlements(transport)).toEqual(['ack 1 multiple', 'ack 2 multiple']);
    expectCounts(warren, { delivered: 2, retried: 2 });
  });

  it('threw on the last attempt: dead-lettered (retries-exhausted)', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: failing }));
    transport.deliver('billing', { ...order(), headers: { [WarrenHeader.attempt]: 3 } });
    const dead = await copy(transport);
    expect(dead.routingKey).toBe('billing.dlq');
    expect(dead.headers).toMatchObject({ [WarrenHeader.reason]: 'retries-exhausted', [WarrenHeader.attempts]: 3 });
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, deadLettered: { 'retries-exhausted': 1 } });
  });

  it("threw, no retry policy, onError 'requeue': nacked with requeue", async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, onError: 'requeue', handle: failing }));
    transport.deliver('billing', order());
    await settled(transport);
    expect(settlements(transport)).toEqual(['nack 1 requeue']);
    expect(transport.published).toEqual([]);
    expectCounts(warren, { delivered: 1, requeued: 1 });
  });

  it("threw, no retry policy, onError 'dead-letter' (the default): dead-lettered (handler-failed)", async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, handle: failing }));
    transport.deliver('billing', order());
    const dead = await copy(transport);
    expect(dead.headers).toMatchObject({ [WarrenHeader.reason]: 'handler-failed', [WarrenHeader.errorCode]: 'Error' });
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, deadLettered: { 'handler-failed': 1 } });
  });

  const manualCalls: [string, string, (ctx: ManualContext) => void, Tally][] = [
    ['ctx.ack()', 'ack 1 multiple', (ctx) => ctx.ack(), { acked: 1 }],
    ['ctx.nack({ requeue: true })', 'nack 1 requeue', (ctx) => ctx.nack({ requeue: true }), { requeued: 1 }],
    ['ctx.nack()', 'nack 1', (ctx) => ctx.nack(), { rejected: 1 }],
    ['ctx.reject()', 'nack 1', (ctx) => ctx.reject(), { rejected: 1 }],
  ];

  it.each(manualCalls)("manual call %s: '%s' on the wire, nothing else", async (_name, frame, call, counts) => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, ackMode: 'manual', handle: (_o, ctx) => call(ctx) }));
    transport.deliver('billing', order());
    await settled(transport);
    await acksFlushed();
    expect(settlements(transport)).toEqual([frame]);
    expect(transport.published).toEqual([]);
    expectCounts(warren, { delivered: 1, ...counts });
  });

  it("manual call ctx.retry(): a copy to the policy's wait queue; with { delay } to the smallest declared wait at least that long", async () => {
    expect.hasAssertions();
    const consumer = defineConsumer({
      queue: 'billing',
      message: Order,
      ackMode: 'manual',
      retry: policy,
      handle: (o, ctx) => (o.orderId === 'o-1' ? ctx.retry() : ctx.retry({ delay: '2s' })),
    });
    const { warren, transport } = await start(consumer);
    transport.deliver('billing', order('o-1'));
    const first = await copy(transport);
    expect(first.routingKey).toBe('billing.retry.1s');
    expect(first.headers).toMatchObject({ [WarrenHeader.attempt]: 2, [WarrenHeader.errorMessage]: 'retry requested by the handler' });
    first.ack();
    await settled(transport);

    transport.deliver('billing', order('o-2'));
    const second = await copy(transport, 2);
    // '2s' is not a delay of the policy: rounded up to its 5s (a delay is a minimum; no queue per distinct delay).
    expect(second.routingKey).toBe('billing.retry.5s');
    expect(transport.of('assertQueue').some((f) => f.name === 'billing.retry.2s')).toBe(false);
    second.ack();
    await settled(transport, 2);
    expect(settlements(transport)).toEqual(['ack 1 multiple', 'ack 2 multiple']);
    expectCounts(warren, { delivered: 2, retried: 2 });
  });

  it('manual call ctx.retry() on the last attempt: dead-lettered (retries-exhausted)', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, ackMode: 'manual', retry: policy, handle: (_o, ctx) => ctx.retry() }));
    transport.deliver('billing', { ...order(), headers: { [WarrenHeader.attempt]: 3 } });
    const dead = await copy(transport);
    expect([dead.routingKey, dead.headers[WarrenHeader.reason]]).toEqual(['billing.dlq', 'retries-exhausted']);
    dead.ack();
    await settled(transport);
    expectCounts(warren, { delivered: 1, deadLettered: { 'retries-exhausted': 1 } });
  });

  it("manual call ctx.deadLetter(reason): dead-lettered (counted as 'handler'), the handler's reason as x-warren-reason", async () => {
    expect.hasAssertions();
    const consumer = defineConsumer({ queue: 'billing', message: Order, ackMode: 'manual', handle: (_o, ctx) => ctx.deadLetter('fraud suspected') });
    const { warren, transport } = await start(consumer);
    transport.deliver('billing', order());
    const dead = await copy(transport);
    expect(dead.routingKey).toBe('billing.dlq');
    expect(dead.headers).toMatchObject({ [WarrenHeader.reason]: 'fraud suspected', [WarrenHeader.errorCode]: 'DEAD_LETTERED_BY_HANDLER' });
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, deadLettered: { handler: 1 } });
  });

  it('manual: a delivery is settled once; later calls, and the handler throwing afterwards, change nothing', async () => {
    expect.hasAssertions();
    const consumer = defineConsumer({
      queue: 'billing',
      message: Order,
      ackMode: 'manual',
      retry: policy,
      async handle(_o, ctx) {
        ctx.ack();
        ctx.nack({ requeue: true });
        ctx.reject();
        await ctx.retry();
        await ctx.deadLetter('too late');
        throw new Error('after the ack');
      },
    });
    const { warren, transport } = await start(consumer);
    transport.deliver('billing', order());
    await settled(transport);
    await acksFlushed();
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expect(transport.published).toEqual([]);
    expect(transport.consumerChannel('billing').closed).toBe(false); // no double ack (406)
    expectCounts(warren, { delivered: 1, acked: 1 });
  });

  it('any dead-letter, on a queue with no dead-letter queue in the topology: a plain nack without requeue, no copy', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'audit', message: Order, handle: failing }));
    transport.deliver('audit', { body: 'not json {' }); // invalid
    transport.deliver('audit', order()); // handler-failed
    await settled(transport, 2);
    expect(settlements(transport)).toEqual(['nack 1', 'nack 2']);
    expect(transport.published).toEqual([]);
    expectCounts(warren, { delivered: 2, rejected: 2 });
  });

  const retryCopyFailures: [string, (copy: SentMessage) => void][] = [
    ['is nacked', (m) => m.nack()],
  ];

  it.each(retryCopyFailures)('copy failed: a retry copy that %s; the original is requeued instead', async (_what, fail) => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: failing }));
    transport.deliver('billing', order());
    fail(await copy(transport));
    await settled(transport);
    expect(settlements(transport)).toEqual(['nack 1 requeue']);
    expectCounts(warren, { delivered: 1, requeued: 1 });
  });

  it('copy failed: a retry copy that comes back unroutable (its wait queue was deleted) declares the wait queue again and is sent once more; twice, and the original is requeued', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: failing }));
    const declared = (): number => transport.of('assertQueue').filter((f) => f.name === 'billing.retry.1s').length;
    const before = declared();
    transport.deliver('billing', order('o-1'));
    (await copy(transport)).returnUnroutable();
    const again = await copy(transport, 2);
    expect(again.routingKey).toBe('billing.retry.1s');
    expect(declared()).toBe(before + 1);
    again.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, retried: 1 });

    transport.deliver('billing', order('o-2'));
    (await copy(transport, 3)).returnUnroutable();
    (await copy(transport, 4)).returnUnroutable();
    await settled(transport, 2);
    expect(settlements(transport)).toEqual(['ack 1 multiple', 'nack 2 requeue']);
    expectCounts(warren, { delivered: 2, retried: 1, requeued: 1 });
  });

  const deadLetterCopyFailures: [string, string, (copy: SentMessage) => void][] = [
    ['is nacked', 'billing', (m) => m.nack()],
    ["is refused: the broker closes the channel for its exchange (404)", 'shipping', (m) => m.channel.closeByBroker(404, "NOT_FOUND - no exchange 'graveyard' in vhost '/'")],
  ];

  it.each(deadLetterCopyFailures)('copy failed: a dead-letter copy that %s; the original is nacked without requeue', async (_what, queue, fail) => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue, message: Order, handle: failing }));
    transport.deliver(queue, order());
    const dead = await copy(transport);
    expect([dead.exchange, dead.routingKey]).toEqual(queue === 'billing' ? ['', 'billing.dlq'] : ['graveyard', 'shipping.dead']);
    fail(dead);
    await settled(transport);
    expect(settlements(transport)).toEqual(['nack 1']);
    expectCounts(warren, { delivered: 1, rejected: 1 });
  });

  it('stop deadline: a delivery still waiting for a handler when stop() runs out of time is requeued', async () => {
    expect.hasAssertions();
    const release = deferred();
    const { transport, handle } = await start(defineConsumer({ queue: 'billing', message: Order, prefetch: 2, stopTimeoutMs: 50, handle: () => release.promise }));
    transport.deliver('billing', order('o-1')); // its handler runs (and hangs)
    transport.deliver('billing', order('o-2')); // waits: concurrency 1
    await handle.stop();
    expect(transport.of('cancel')).toHaveLength(1);
    expect(settlements(transport)).toEqual(['nack 2 requeue']);
    expect(transport.of('close').at(-1)).toMatchObject({ by: 'client' }); // 1 goes back as the channel closes
    const { delivered, requeued, acked } = handle.health();
    expect({ delivered, requeued, acked }).toEqual({ delivered: 2, requeued: 1, acked: 0 });
    release.resolve();
  });

  it('a broker cancel (queue deleted): the consumer re-declares its queue, subscribes again and handles what comes next', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, handle: () => undefined }));
    const cancelled = new Promise((resolve) => warren.on('consumer', (e) => e.type === 'cancelled' && resolve(e)));
    const declared = () => transport.of('assertQueue').filter((f) => f.name === 'billing').length;
    const before = declared();
    transport.cancelConsumer('billing');
    await transport.waitFor(() => transport.of('consume').length === 2, 'a second basic.consume');
    expect(await cancelled).toMatchObject({ queue: 'billing' });
    expect(declared()).toBe(before + 1); // re-declared, in case it was deleted
    transport.deliver('billing', order());
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expect(warren.health().consumers[0]?.attached).toBe(true);
  });

  // The broker delivered a message whose own headers (another client's) are over the 64 KiB warren
  // will send: no copy of it with them can ever be published, and a requeue would loop for ever.
  const oversized = { 'x-baggage': 'b'.repeat(70_000), 'x-tenant': 'acme' };

  it('copy failed for good: a retry copy that can never be published becomes a dead letter (retry-failed) without the own headers', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: failing }));
    transport.deliver('billing', { ...order(), headers: oversized });
    const dead = await copy(transport); // the retry copy was refused before it was sent
    expect(transport.published).toHaveLength(1);
    expect(dead.routingKey).toBe('billing.dlq');
    expect(dead.headers).toMatchObject({
      [WarrenHeader.reason]: 'retry-failed',
      [WarrenHeader.errorMessage]: 'database unavailable',
      [WarrenHeader.trimmedHeaders]: 'x-baggage, x-tenant', // what was left out, by name
    });
    expect(Object.keys(dead.headers)).not.toContain('x-baggage');
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, deadLettered: { 'retry-failed': 1 } });
  });

  it('copy failed for good: a dead-letter copy that can never be published is dead-lettered again without the own headers', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, handle: failing }));
    transport.deliver('billing', { ...order(), headers: oversized });
    const dead = await copy(transport);
    expect(transport.published).toHaveLength(1);
    expect(dead.headers).toMatchObject({ [WarrenHeader.reason]: 'handler-failed' });
    expect(Object.keys(dead.headers)).not.toContain('x-baggage');
    dead.ack();
    await settled(transport);
    expect(settlements(transport)).toEqual(['ack 1 multiple']);
    expectCounts(warren, { delivered: 1, deadLettered: { 'handler-failed': 1 } });
  });

  it('a consumer started while its connection is being re-established subscribes once (no second channel holding messages)', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, handle: () => undefined }));
    const release = transport.hold('connect');
    transport.link('consume').drop();
    const starting = warren.consume(defineConsumer({ queue: 'audit', message: Order, handle: () => undefined }));
    release();
    const handle = await starting;
    // attached is set just after the consume frame, so poll rather than wait for the next frame.
    await vi.waitFor(() => expect(warren.health().consumers.map((c) => c.attached)).toEqual([true, true]));
    await acksFlushed();
    const subscriptions = transport.frames.filter((f) => f.op === 'consume' && f.name === 'audit');
    expect(subscriptions).toHaveLength(1);
    await handle.stop();
    // Its one channel is closed: nothing is left subscribed behind the consumer's back.
    const auditChannel = subscriptions[0]?.op === 'consume' ? subscriptions[0].channel : -1;
    expect(transport.frames).toContainEqual(expect.objectContaining({ op: 'close', channel: auditChannel, by: 'client' }));
  });

  it('a message whose retry copy keeps failing for now is held before each requeue, longer each time: never a tight loop', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start(defineConsumer({ queue: 'billing', message: Order, retry: policy, handle: failing }));
    transport.deliver('billing', order('o-1'));
    const started = Date.now();
    (await copy(transport)).nack();
    await settled(transport);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900); // held about 1 s before the requeue
    expect(settlements(transport)).toEqual(['nack 1 requeue']);
    expectCounts(warren, { delivered: 1, requeued: 1 });
  });
});
