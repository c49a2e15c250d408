// The in-memory broker's own rules where the behaviour suite cannot reach (its refusals, its
// fault switches, its clocks). What RabbitMQ decides is checked on both transports in test/behaviour.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { connect, defineApp, defineConsumer, defineMessage, defineTopology, type Warren } from '../../src/index.js';
import { headersMatch, topicMatches } from '../../src/memory/routing.js';
import { createTestWarren, manualClock, memory, MemoryBroker, NotModelledError, runHandler, raw } from '../../src/testing/index.js';

const open: Warren[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(open.splice(0).map((w) => w.close()));
});

const Job = z.object({ id: z.string() });
const topology = defineTopology({
  exchanges: { jobs: { type: 'topic' } },
  queues: { work: { deadLetter: true, bindings: [{ exchange: 'jobs', routingKey: 'job.#' }] } },
});
const JobCreated = defineMessage({ name: 'job.created', exchange: 'jobs', routingKey: 'job.created', schema: Job });

describe('topic and headers matching', () => {
  it.each([
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.c', false],
    ['a.#.c', 'a.c', true],
    ['a.#.c', 'a.b.b.c', true],
    ['#', '', true],
    ['#.#', 'a', true],
    ['*', '', true],
    ['*', 'a.b', false],
    ['a.#', 'a', true],
    ['a.#', 'ab', false],
  ])('%s against %s: %s', (pattern, key, expected) => {
    expect(topicMatches(pattern, key)).toBe(expected);
  });

  it('x- arguments count only with all-with-x / any-with-x', () => {
    expect(headersMatch({ 'x-match': 'all', 'x-tenant': 'a' }, {})).toBe(true);
    expect(headersMatch({ 'x-match': 'all-with-x', 'x-tenant': 'a' }, {})).toBe(false);
    expect(headersMatch({ 'x-match': 'any-with-x', 'x-tenant': 'a' }, { 'x-tenant': 'a' })).toBe(true);
    expect(headersMatch({ 'x-match': 'any' }, { a: 1 })).toBe(false);
  });
});

describe('what the in-memory broker refuses', () => {
  it.each([
    ['a stream queue', { queues: { s: { type: 'stream' as const } } }, /stream queues/],
    ['a priority queue', { queues: { p: { maxPriority: 5 } } }, /x-max-priority/],
    ['single active consumer', { queues: { p: { singleActiveConsumer: true } } }, /x-single-active-consumer/],
    ['queue expiry', { queues: { p: { expires: '1m' } } }, /x-expires/],
    ['a plugin exchange type', { exchanges: { d: { type: 'topic' as const, arguments: { 'x-delayed-type': 'direct' } } } }, /x-delayed-type/],
  ])('%s: NOT_MODELLED, naming it', async (_what, definition, text) => {
    const failure = connect({ transport: memory(), topology: defineTopology(definition) });
    await expect(failure).rejects.toBeInstanceOf(NotModelledError);
    await expect(failure).rejects.toMatchObject({ code: 'NOT_MODELLED', message: expect.stringMatching(text) });
  });
});

describe('faults a test can cause', () => {
  it('stop() refuses connections until start(); clients reconnect and publish again', async () => {
    const transport = memory();
    const w = await connect({ transport, topology, messages: [JobCreated], reconnect: { initialDelay: 10, maxDelay: 20 } });
    open.push(w);
    transport.broker.stop();
    await vi.waitFor(() => expect(w.state).toBe('connecting'));
    const later = w.publish(JobCreated, { id: 'after' });
    transport.broker.start();
    await later;
    expect(transport.broker.queue('work')?.messageCount).toBe(1);
  });

  it('block() holds publishes until unblock(): the client sees blocked, and the confirm comes after', async () => {
    const transport = memory();
    const w = await connect({ transport, topology, messages: [JobCreated] });
    open.push(w);
    transport.broker.block('low on memory');
    await vi.waitFor(() => expect(w.state).toBe('blocked'));
    let confirmed = false;
    const p = w.publish(JobCreated, { id: 'x' }).then(() => (confirmed = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(confirmed).toBe(false);
    transport.broker.unblock();
    await p;
    expect(transport.broker.queue('work')?.messageCount).toBe(1);
  });

  it('deleteQueue() cancels its consumers, and warren re-attaches them with the queue re-declared', async () => {
    const transport = memory();
    const seen: string[] = [];
    const w = await connect({ transport, topology, messages: [JobCreated] });
    open.push(w);
    await w.consume(defineConsumer({ name: 'c', queue: 'work', message: JobCreated, handle: (j) => void seen.push(j.id) }));
    transport.broker.deleteQueue('work');
    await vi.waitFor(() => expect(transport.broker.queue('work')?.consumerCount).toBe(1));
    await w.publish(JobCreated, { id: 'again' });
    await vi.waitFor(() => expect(seen).toEqual(['again']));
  });
});

describe('time', () => {
  const flaky = defineConsumer({
    name: 'flaky',
    queue: 'work',
    message: JobCreated,
    retry: { maxAttempts: 3, delays: ['10s', '1m'] },
    handle: () => {
      throw new Error('down');
    },
  });
  const app = defineApp({ name: 'timed', topology, messages: [JobCreated], consumers: [flaky] });

  it('a manual clock moves only on advance(), one expiry at a time', async () => {
    const t = await createTestWarren(app);
    await t.publish(JobCreated, { id: 'a' });
    expect(await t.advance('9s')).toEqual([]);
    expect((await t.advance('1s')).map((d) => [d.attempt, d.action, d.delayMs])).toEqual([[2, 'retry', 60_000]]);
    // One advance across both waits: the second retry's wait starts when the first ends.
    const t2 = await createTestWarren(app);
    await t2.publish(JobCreated, { id: 'b' });
    expect((await t2.advance('70s')).map((d) => [d.attempt, d.action])).toEqual([
      [2, 'retry'],
      [3, 'dead-letter'],
    ]);
    expect(t2.deadLetters(flaky).map((m) => [m.reason, m.attempts])).toEqual([['retries-exhausted', 3]]);
    await t.close();
    await t2.close();
  });

  it("vitest's fake timers drive the 'system' clock", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const t = await createTestWarren(app, { clock: 'system', advanceTimers: (ms) => vi.advanceTimersByTimeAsync(ms) });
    await t.publish(JobCreated, { id: 'a' });
    expect((await t.advance('10s')).map((d) => d.attempt)).toEqual([2]);
    await t.close();
  });

  it('advance() on the system clock without advanceTimers says what to pass', async () => {
    const t = await createTestWarren(app, { clock: 'system' });
    await expect(t.advance('1s')).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('advanceTimers') });
    await t.close();
  });

  it('a manual clock of your own, shared by two apps on one broker', async () => {
    const clock = manualClock();
    const broker = new MemoryBroker({ clock });
    const producer = await createTestWarren(defineApp({ name: 'producer', topology, messages: [JobCreated] }), { broker });
    const consumer = await createTestWarren(app, { broker });
    await producer.publish(JobCreated, { id: 'a' });
    await consumer.settle();
    expect(consumer.deliveriesOf(flaky).map((d) => d.action)).toEqual(['retry']);
    clock.advance(10_000);
    await consumer.settle();
    expect(consumer.deliveriesOf('flaky').map((d) => d.attempt)).toEqual([1, 2]);
    expect(producer.published('jobs')).toHaveLength(1);
    await producer.close();
    await consumer.close();
  });
});

describe('settle()', () => {
  it('fails NOT_SETTLED naming what is in flight when a manual handler never settles', async () => {
    const stuck = defineConsumer({ name: 'stuck', queue: 'work', message: JobCreated, ackMode: 'manual', handle: () => undefined });
    const t = await createTestWarren(defineApp({ name: 'stuck', topology, messages: [JobCreated], consumers: [stuck] }), { settleTimeout: '200ms' });
    await expect(t.publish(JobCreated, { id: 'a' })).rejects.toMatchObject({ code: 'NOT_SETTLED', message: expect.stringContaining("unacked on 'work'") });
    await t.close();
  });
});

describe('runHandler', () => {
  const billing = defineConsumer({
    name: 'billing',
    queue: 'work',
    message: JobCreated,
    retry: { maxAttempts: 2, delays: ['5s'] },
    handle: (job) => {
      if (job.id === 'fail') throw new Error('provider down');
    },
  });

  it('returns the action the rule takes, and the copy it published', async () => {
    expect(await runHandler(billing, { id: 'ok' })).toMatchObject({ action: 'ack', outcome: 'handled', attempt: 1 });
    expect(await runHandler(billing, { id: 'fail' })).toMatchObject({ action: 'retry', delayMs: 5000, copy: { queue: 'work.retry.5s' } });
    const last = await runHandler(billing, { id: 'fail' }, { attempt: 2 });
    expect(last).toMatchObject({ action: 'dead-letter', reason: 'retries-exhausted', copy: { queue: 'work.dlq', headers: { 'x-warren-error-message': 'provider down' } } });
    expect(await runHandler(billing, raw({ id: 7 }))).toMatchObject({ action: 'dead-letter', reason: 'invalid', outcome: 'invalid' });
    expect(await runHandler(billing, raw(Buffer.from([0xff, 0xfe]), {}, { contentType: 'application/json' }))).toMatchObject({ action: 'dead-letter', reason: 'invalid' });
  });
});

describe('what a new user tripped over', () => {
  const stuckLoop = defineConsumer({
    name: 'looper',
    queue: 'work',
    message: JobCreated,
    onError: 'requeue',
    handle: () => {
      throw new Error('always');
    },
  });

  it("plain vi.useFakeTimers() (setImmediate faked) is refused with what to fake instead, not a silent hang", async () => {
    vi.useFakeTimers();
    await expect(createTestWarren(defineApp({ name: 'faked', topology, messages: [JobCreated] }))).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining("toFake: ['setTimeout', 'clearTimeout', 'Date']"),
    });
  });

  it('a requeue loop: NOT_SETTLED names the queue and how often the message came', async () => {
    const t = await createTestWarren(defineApp({ name: 'loop', topology, messages: [JobCreated], consumers: [stuckLoop] }), { settleTimeout: '300ms' });
    const failure = await t.publish(JobCreated, { id: 'a' }).catch((err: unknown) => err);
    expect(failure).toMatchObject({ code: 'NOT_SETTLED' });
    expect((failure as Error).message).toMatch(/on 'work'/);
    expect((failure as Error).message).toMatch(/delivered to 'looper' \d+ times meanwhile \(last action: requeue\): a requeue loop\?/);
    await t.close();
  });

  it('deadLetters() reads the broker reason from x-death, as peekDeadLetters() does', async () => {
    const rejecter = defineConsumer({ name: 'rejecter', queue: 'work', message: JobCreated, ackMode: 'manual', handle: (_j, ctx) => ctx.reject() });
    const t = await createTestWarren(defineApp({ name: 'rejects', topology, messages: [JobCreated], consumers: [rejecter] }));
    await t.publish(JobCreated, { id: 'a' });
    expect(t.deadLetters(rejecter).map((d) => d.reason)).toEqual(['rejected']);
    expect((await t.warren.peekDeadLetters('work')).map((d) => d.reason)).toEqual(['rejected']);
    expect(t.published('jobs').map((m) => m.payload)).toEqual([{ id: 'a' }]);
    await t.close();
  });

  it('runHandler refuses an attempt the consumer cannot have', async () => {
    const c = defineConsumer({ name: 'c3', queue: 'work', message: JobCreated, retry: { maxAttempts: 3, delays: ['1s'] }, handle: () => undefined });
    await expect(runHandler(c, { id: 'a' }, { attempt: 7 })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('from 1 to 3') });
    await expect(runHandler(c, { id: 'a' }, { attempt: 3 })).resolves.toMatchObject({ action: 'ack', attempt: 3 });
  });
});

describe('a mismatch read from the broker text (no management API)', () => {
  it("names the broker's value without RabbitMQ's quotes", async () => {
    const broker = new MemoryBroker();
    const first = await connect({ transport: memory({ broker }), topology: defineTopology({ exchanges: { emails: { type: 'topic' } } }) });
    open.push(first);
    const failure = connect({ transport: memory({ broker }), topology: defineTopology({ exchanges: { emails: { type: 'direct' } } }) });
    await expect(failure).rejects.toMatchObject({ code: 'TOPOLOGY_MISMATCH', differences: [{ argument: 'type', declared: 'direct', actual: 'topic' }] });
    await expect(failure).rejects.toThrow(/broker has "topic"/);
  });
});

describe('from a review against RabbitMQ 3.10 and 4.0.5', () => {
  const ok = defineConsumer({ name: 'ok', queue: 'work', message: JobCreated, handle: () => undefined });
  const app = defineApp({ name: 'same', topology, messages: [JobCreated], consumers: [ok] });

  it('two live test clients of one app keep their own deliveries', async () => {
    const a = await createTestWarren(app);
    const b = await createTestWarren(app);
    await a.publish(JobCreated, { id: 'a' });
    expect(a.deliveries).toHaveLength(1);
    expect(b.deliveries).toHaveLength(0);
    expect(b.warren.name).toBe('same#2');
    await a.close();
    await b.close();
    const c = await createTestWarren(app);
    expect(c.warren.name).toBe('same');
    await c.close();
  });

  it('a publisher cannot forge the death history (as RabbitMQ 4): x-death and x-first-death-* are dropped', async () => {
    const broker = new MemoryBroker();
    const w = await connect({ transport: memory({ broker }), topology, messages: [JobCreated] });
    open.push(w);
    broker.send('jobs', 'job.created', '{"id":"x"}', { headers: { 'x-death': [{ count: 5, reason: 'expired', queue: 'elsewhere' }], 'x-first-death-reason': 'expired', keep: 'yes' } });
    expect(broker.queue('work')?.messages[0]?.headers).toEqual({ keep: 'yes' });
  });

  it('a headers binding matches a byte-array header with the same bytes as its string', () => {
    expect(headersMatch({ 'x-match': 'all', tier: 'gold' }, { tier: Buffer.from('gold') })).toBe(true);
    expect(headersMatch({ 'x-match': 'all', tier: 'gold' }, { tier: Buffer.from('silver') })).toBe(false);
  });

  it('ack(0, multiple) settles every outstanding delivery of the channel', async () => {
    const transport = memory();
    const setup = await connect({ transport, topology, messages: [JobCreated] });
    open.push(setup);
    await setup.publish(JobCreated, { id: 'a' });
    await setup.publish(JobCreated, { id: 'b' });
    const link = await transport.connect('amqp://x', {} as never);
    const ch = await link.createChannel();
    expect(await ch.get('work')).toBeDefined();
    expect(await ch.get('work')).toBeDefined();
    ch.ack(0, true);
    await ch.close();
    expect(transport.broker.queue('work')).toMatchObject({ messageCount: 0, unackedCount: 0 });
    await link.close();
  });
});
