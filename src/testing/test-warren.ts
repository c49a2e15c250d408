import { setImmediate as nextTurn } from 'node:timers';
import type { App, AppConnectOptions } from '../client/app.js';
import { connect, type Warren } from '../client/warren.js';
import type { Consumer } from '../define/consumer.js';
import { toMs, type Duration } from '../define/duration.js';
import type { MessageContract, PayloadInput } from '../define/message.js';
import { toDeadLetter } from '../dead-letter/dead-letters.js';
import { Header } from '../dead-letter/headers.js';
import { consumeChannel, publishChannel, type ConsumeAction, type ConsumeOutcome, type ConsumeTrace, type PublishTrace } from '../instrument/channels.js';
import { MemoryBroker, type PublishedMessage, type QueueView } from '../memory/broker.js';
import { ManualClock, systemClock, type Clock } from '../memory/clock.js';
import { memory, type MemoryTransport } from '../memory/transport.js';
import type { PublishOptions } from '../publish/options.js';
import { ConfigError, NotSettledError } from '../support/errors.js';

/** One delivery a consumer handled, and what warren told the broker about it. */
export interface DeliveryRecord {
  readonly consumer: string;
  readonly queue: string;
  readonly contract: string;
  readonly messageId: string | undefined;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly redelivered: boolean;
  readonly headers: Readonly<Record<string, unknown>>;
  /** What the pipeline made of it: handled, failed (the handler threw) or invalid (undecodable, or failed the schema). */
  readonly outcome: ConsumeOutcome;
  /** The broker action: ack, retry, dead-letter, requeue, reject or none. */
  readonly action: ConsumeAction;
  /** With action 'dead-letter' (and 'reject' where warren had a reason): why. */
  readonly reason: string | undefined;
  /** With action 'retry': the wait before the next attempt, in ms. */
  readonly delayMs: number | undefined;
  /** The handler's error, or the decode / validation error. */
  readonly error: unknown;
}

/** A message in a dead-letter queue, with warren's reason headers read out. */
export interface DeadLetterRecord {
  /** The dead-letter queue it is in. */
  readonly queue: string;
  readonly messageId: string | undefined;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly payload: unknown;
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, unknown>>;
  /** `x-warren-reason`: invalid, non-retryable, retries-exhausted, handler-failed, retry-failed, or the handler's own words from ctx.deadLetter(text); or, when the broker dead-lettered it (ctx.reject(), TTL, length, delivery limit), its `x-death` reason: rejected, expired, maxlen, delivery_limit. As peekDeadLetters() reads it. */
  readonly reason: string | undefined;
  readonly errorCode: string | undefined;
  readonly errorMessage: string | undefined;
  /** Attempts made before it was dead-lettered. */
  readonly attempts: number | undefined;
  /** The queue it came from. */
  readonly originQueue: string | undefined;
}

export interface TestWarrenOptions {
  /**
   * Time for TTLs (retry delays). `'manual'` (default): stands still until `advance()`.
   * `'system'`: the global timers, so vitest's fake timers drive it; give `advanceTimers`
   * (`(ms) => vi.advanceTimersByTimeAsync(ms)`) for `advance()` to work. Or a Clock of your own.
   */
  clock?: 'manual' | 'system' | Clock;
  /** How `advance(ms)` moves time when `clock` is not `'manual'`, e.g. `(ms) => vi.advanceTimersByTimeAsync(ms)`. */
  advanceTimers?: (ms: number) => unknown;
  /** Another test client's broker, to share its queues (e.g. a producer app and a consumer app). Default: a new one. */
  broker?: MemoryBroker;
  /** Which of the app's consumers to start: all (true, default), none (false), or these names. */
  consumers?: boolean | readonly string[];
  /** connect() options over the app's own (logger, retry, publisher…). */
  connect?: AppConnectOptions;
  /** How long (real time) `settle()` waits for deliveries in flight before it fails with NOT_SETTLED. Default '5s'. */
  settleTimeout?: Duration;
}

/** Matches a ConsumeTrace / PublishTrace to the client that made it. */
interface Tracked {
  client: string;
}

/**
 * An app running on an in-memory broker: the real Publisher, consumer pipeline, outcome rule,
 * retry wait queues and dead-lettering, with what each delivery came to recorded.
 */
export class TestWarren {
  readonly app: App;
  readonly warren: Warren;
  readonly broker: MemoryBroker;
  readonly clock: Clock;
  readonly #advanceTimers: ((ms: number) => unknown) | undefined;
  readonly #settleTimeoutMs: number;
  readonly #records: DeliveryRecord[] = [];
  readonly #published: PublishedMessage[] = [];
  #inFlight = 0;
  #closed = false;
  readonly #unsubscribe: () => void;

  /** @internal use createTestWarren() */
  constructor(app: App, warren: Warren, transport: MemoryTransport, clock: Clock, advanceTimers: ((ms: number) => unknown) | undefined, settleTimeoutMs: number) {
    this.app = app;
    this.warren = warren;
    this.broker = transport.broker;
    this.clock = clock;
    this.#advanceTimers = advanceTimers;
    this.#settleTimeoutMs = settleTimeoutMs;
    const name = warren.name;
    const mine = (t: Tracked): boolean => t.client === name;
    const consume = {
      start: (t: ConsumeTrace) => {
        if (mine(t)) this.#inFlight++;
      },
      end: (t: ConsumeTrace) => {
        if (!mine(t)) return;
        this.#inFlight--;
        this.#records.push(deliveryRecord(t));
      },
    };
    const publish = {
      start: (t: PublishTrace) => {
        if (mine(t)) this.#inFlight++;
      },
      end: (t: PublishTrace) => {
        if (mine(t)) this.#inFlight--;
      },
    };
    const onPublished = (m: PublishedMessage): void => {
      this.#published.push(m);
    };
    consumeChannel.subscribe(consume as never);
    publishChannel.subscribe(publish as never);
    this.broker.on('published', onPublished);
    this.#unsubscribe = () => {
      consumeChannel.unsubscribe(consume as never);
      publishChannel.unsubscribe(publish as never);
      this.broker.off('published', onPublished);
    };
  }

  /** Every delivery handled so far, in the order their broker actions were taken. */
  get deliveries(): readonly DeliveryRecord[] {
    return this.#records;
  }

  /** The deliveries one consumer handled (by name, or the consumer itself). */
  deliveriesOf(consumer: string | Consumer): DeliveryRecord[] {
    const name = typeof consumer === 'string' ? consumer : consumer.name;
    return this.#records.filter((r) => r.consumer === name);
  }

  /**
   * Publishes as `warren.publish()` does (validated, confirmed), then waits until everything it
   * set off has settled. Resolves with the deliveries handled meanwhile. A message waiting in a
   * retry wait queue is settled: `advance()` moves it on.
   */
  async publish<M extends MessageContract>(contract: M, payload: PayloadInput<M>, options?: PublishOptions): Promise<DeliveryRecord[]> {
    refuseFakeImmediate();
    const from = this.#records.length;
    await this.warren.publish(contract, payload, options);
    await this.settle();
    return this.#records.slice(from);
  }

  /**
   * Sends a raw message as another service could (any body and headers, no validation), then
   * waits until it has settled. Resolves with the deliveries handled meanwhile.
   */
  async send(exchange: string, routingKey: string, body: Buffer | string, properties: Parameters<MemoryBroker['send']>[3] = {}): Promise<DeliveryRecord[]> {
    const from = this.#records.length;
    this.broker.send(exchange, routingKey, body, properties);
    await this.settle();
    return this.#records.slice(from);
  }

  /**
   * Waits until nothing is in flight: no delivery unacked or on its way, no publish unconfirmed,
   * no handler running. Resolves with the deliveries handled meanwhile. Fails with NOT_SETTLED
   * (and what is still in flight) after `settleTimeout` of real time — a manual-ack handler that
   * never settles, a handler waiting on a faked timer, or a requeue loop.
   */
  async settle(): Promise<DeliveryRecord[]> {
    refuseFakeImmediate();
    const from = this.#records.length;
    const deadline = realNow() + this.#settleTimeoutMs;
    let quiet = 0;
    while (quiet < 3) {
      await new Promise<void>((resolve) => nextTurn(resolve));
      const busy = this.#busy();
      quiet = busy === undefined ? quiet + 1 : 0;
      if (busy !== undefined && realNow() > deadline) {
        throw new NotSettledError(`Not settled after ${this.#settleTimeoutMs} ms: ${busy}.${loopOf(this.#records.slice(from))} ${NOT_SETTLED_CAUSES}`);
      }
    }
    return this.#records.slice(from);
  }

  #busy(): string | undefined {
    const broker = this.broker.busy();
    if (this.#inFlight > 0) return `${this.#inFlight} handler(s) or publish(es) running${broker !== undefined ? `; ${broker}` : ''}`;
    return broker;
  }

  /**
   * Moves time on by `duration`, one expiry at a time: each message whose TTL falls due (a
   * retry's wait) moves on and settles before the next, as it would in real time. Resolves
   * with the deliveries handled meanwhile.
   */
  async advance(duration: Duration): Promise<DeliveryRecord[]> {
    const ms = toMs(duration);
    if (ms === undefined || ms < 0) throw new ConfigError('advance()', [`duration: expected a non-negative duration such as 200 or '10s', got ${String(duration)}`]);
    const move = this.#advanceTimers;
    if (move === undefined) {
      throw new ConfigError('advance()', ["this test client runs on the system clock: pass advanceTimers: (ms) => vi.advanceTimersByTimeAsync(ms) to createTestWarren(), or use clock: 'manual'"]);
    }
    const from = this.#records.length;
    const until = this.clock.now() + ms;
    await this.settle();
    for (;;) {
      const next = this.broker.nextExpiry();
      if (next === undefined || next > until) break;
      await move(Math.max(0, next - this.clock.now()));
      await this.settle();
    }
    const rest = until - this.clock.now();
    if (rest > 0) await move(rest);
    await this.settle();
    return this.#records.slice(from);
  }

  /**
   * The messages in a dead-letter queue now: give the DLQ's name, the queue it belongs to, or
   * a consumer (its queue's `.dlq`).
   */
  deadLetters(queueOrConsumer: string | Consumer): DeadLetterRecord[] {
    const base = typeof queueOrConsumer === 'string' ? queueOrConsumer : queueOrConsumer.queue;
    const dlq = this.app.topology.queues.find((q) => q.deadLetterOf === base)?.name ?? base;
    const view = this.broker.queue(dlq);
    if (view === undefined) throw new ConfigError('deadLetters()', [`queue '${dlq}' does not exist on this test broker; queues: ${this.broker.queueNames().join(', ')}`]);
    return view.messages.map((m) => {
      // Read as peekDeadLetters() reads a dead letter: warren's headers, else the broker's x-death.
      const dead = toDeadLetter({ body: m.body, headers: m.headers, messageId: m.properties.messageId });
      return {
        queue: dlq,
        messageId: dead.messageId,
        payload: parseJson(m.body),
        body: m.body,
        headers: m.headers,
        reason: dead.reason,
        errorCode: dead.errorCode,
        errorMessage: dead.errorMessage,
        attempts: dead.attempts,
        originQueue: str(m.headers[Header.originQueue]),
      };
    });
  }

  /** Messages published to the broker (by any client of it, and by send()) since this client started, with `payload` (the body parsed as JSON, else undefined); to one exchange when given ('' for the default exchange). */
  published(exchange?: string): (PublishedMessage & { readonly payload: unknown })[] {
    const all = exchange === undefined ? this.#published : this.#published.filter((m) => m.exchange === exchange);
    return all.map((m) => ({ ...m, payload: parseJson(m.body) }));
  }

  /** A queue's state on the test broker. */
  queue(name: string): QueueView | undefined {
    return this.broker.queue(name);
  }

  /** Stops the consumers and closes the client. The broker stays for other clients of it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.warren.close();
    } finally {
      this.#unsubscribe();
      liveNames.delete(this.warren.name);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Runs an app on an in-memory broker: its topology declared, its consumers started (all, or
 * those named in `consumers`), ready to publish to.
 *
 * @example
 * const t = await createTestWarren(app);
 * const [delivery] = await t.publish(OrderPlaced, order);
 * expect(delivery.action).toBe('ack');
 */
export async function createTestWarren(app: App, options: TestWarrenOptions = {}): Promise<TestWarren> {
  refuseFakeImmediate();
  const settleTimeoutMs = toMs(options.settleTimeout ?? '5s');
  if (settleTimeoutMs === undefined) throw new ConfigError('createTestWarren() options', [`settleTimeout: expected a duration such as '5s', got ${String(options.settleTimeout)}`]);
  let clock: Clock;
  let advanceTimers = options.advanceTimers;
  const choice = options.clock ?? 'manual';
  if (choice === 'manual') {
    const manual = new ManualClock();
    clock = manual;
    advanceTimers ??= (ms) => manual.advance(ms);
  } else if (choice === 'system') {
    clock = systemClock;
  } else {
    clock = choice;
    if (advanceTimers === undefined && choice instanceof ManualClock) advanceTimers = (ms) => choice.advance(ms);
  }
  const transport = memory(options.broker !== undefined ? { broker: options.broker } : { clock });
  if (options.broker !== undefined) {
    // A shared broker keeps its own clock.
    const shared = options.broker.clock;
    clock = shared;
    advanceTimers = options.advanceTimers ?? (shared instanceof ManualClock ? (ms) => shared.advance(ms) : undefined);
  }
  // Deliveries are told apart by client name: a second live test client of the same app gets a suffix.
  const name = claimName(app.name);
  let warren: Warren;
  try {
    warren = await connect({ ...app.connect, ...options.connect, transport, name, topology: app.topology, messages: app.messages });
  } catch (err) {
    liveNames.delete(name);
    throw err;
  }
  const t = new TestWarren(app, warren, transport, clock, advanceTimers, settleTimeoutMs);
  try {
    const which = options.consumers ?? true;
    const chosen = which === true ? app.consumers : which === false ? [] : app.consumers.filter((c) => which.includes(c.name));
    if (Array.isArray(which)) {
      const unknown = which.filter((n) => !app.consumers.some((c) => c.name === n));
      if (unknown.length > 0) throw new ConfigError('createTestWarren() options', [`consumers: the app has no consumer named ${unknown.map((n) => `'${n}'`).join(', ')}; it has ${app.consumers.map((c) => `'${c.name}'`).join(', ')}`]);
    }
    for (const c of chosen) await warren.consume(c);
    await t.settle();
  } catch (err) {
    await t.close();
    throw err;
  }
  return t;
}

/** A delivery's record, from its `warren:consume` end. */
export function deliveryRecord(t: ConsumeTrace): DeliveryRecord {
  return {
    consumer: t.consumer,
    queue: t.queue,
    contract: t.contract,
    messageId: t.messageId,
    attempt: t.attempt,
    redelivered: t.redelivered,
    headers: t.headers,
    outcome: t.outcome ?? 'failed',
    action: t.action ?? 'none',
    reason: t.reason,
    delayMs: t.delayMs,
    error: t.error,
  };
}

const NOT_SETTLED_CAUSES =
  'Usual causes: a manual-ack handler that never settles; a handler awaiting a faked timer (move it with vi.advanceTimersByTimeAsync(), then settle()); a requeue loop (onError requeue on a handler that always throws).';

/** When one message was handled many times while settling: say so (a requeue loop). */
function loopOf(records: readonly DeliveryRecord[]): string {
  const seen = new Map<string, { n: number; r: DeliveryRecord }>();
  for (const r of records) {
    if (r.messageId === undefined) continue;
    const e = seen.get(r.messageId) ?? { n: 0, r };
    e.n++;
    seen.set(r.messageId, e);
  }
  const worst = [...seen.values()].sort((a, b) => b.n - a.n)[0];
  if (worst === undefined || worst.n < 10) return '';
  return ` Message ${worst.r.messageId} was delivered to '${worst.r.consumer}' ${worst.n} times meanwhile (last action: ${worst.r.action}): a requeue loop?`;
}

/**
 * vitest's plain `vi.useFakeTimers()` (and sinon's) fakes the global setImmediate, which warren's
 * publisher and acks wait on: everything would stop without a word. Say so instead.
 */
function refuseFakeImmediate(): void {
  const current = globalThis.setImmediate as unknown as { clock?: unknown };
  // @sinonjs/fake-timers (under vitest's and jest's fake timers) marks what it installs with its clock.
  if ((current as unknown) === nextTurn || current.clock === undefined) return;
  throw new ConfigError('warren/testing', [
    "setImmediate is faked (vi.useFakeTimers() fakes it by default), and warren's publisher and acks wait on it: fake only the timers the kit can drive, vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }), or call vi.useRealTimers() first",
  ]);
}

/** Client names of the test clients open in this process. */
const liveNames = new Set<string>();

function claimName(base: string): string {
  let name = base;
  for (let n = 2; liveNames.has(name); n++) name = `${base}#${n}`;
  liveNames.add(name);
  return name;
}

function realNow(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
