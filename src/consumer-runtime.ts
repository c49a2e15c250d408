import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { toMs } from './duration.js';
import { backoffDelay, defaultBackoff } from './backoff.js';
import { closeWithin, CLOSE_WAIT_MS, type ConnectionManager } from './connection.js';
import type { Consumer, ConsumerContext, ManualContext } from './consumer.js';
import { assertQueueOf, assertWaitQueue, type DeclareTarget } from './declare.js';
import { amqpCode, ClosedError, ConfigError, ConsumeError, messageOf, ReplyCode, WarrenError } from './errors.js';
import type { Logger } from './logger.js';
import { decodeBody, validatePayload } from './message.js';
import { ACK, decideAction, type Outcome, type Rule } from './outcome.js';
import type { Publisher } from './producer.js';
import { attemptOf, retryDelay, retryTiers, waitQueueName, type RetryPolicy } from './retry.js';
import { Acker } from './acker.js';
import { Settler, type Delivery } from './settle.js';

/** Whether a consumer is attached to its queue, and since when. */
export interface ConsumerHealth {
  name: string;
  queue: string;
  attached: boolean;
  /** When `attached` last changed. */
  since: Date;
  consumerTag: string | undefined;
  /** Handlers running now. */
  inFlight: number;
  /** Why it is not attached, if it is not. */
  reason: string | undefined;
}

export type ConsumerEvent =
  | { type: 'attached'; consumer: string; queue: string; consumerTag: string }
  | { type: 'detached'; consumer: string; queue: string; reason: string }
  | { type: 'cancelled'; consumer: string; queue: string };

/** A running consumer, as returned by `warren.consume()`. */
export interface ConsumerHandle {
  readonly name: string;
  readonly queue: string;
  health(): ConsumerHealth;
  /** Cancels the subscription, handles what was already delivered and lets running handlers finish (up to stopTimeoutMs), then closes its channel. Idempotent. */
  stop(): Promise<void>;
}

interface RuntimeDeps {
  connection: ConnectionManager;
  publisher: Publisher;
  /** connect()'s retry policy, for consumers without their own. */
  defaultRetry: RetryPolicy | undefined;
  declare: DeclareTarget;
  logger: Logger;
  onEvent: (event: ConsumerEvent) => void;
  onStopped: (runtime: ConsumerRuntime) => void;
}

/**
 * Runs one consumer on its own channel of the consume connection, and re-attaches it after a
 * connection loss or a broker-side cancel (queue deleted, failover), re-declaring its queue.
 */
export class ConsumerRuntime implements ConsumerHandle {
  readonly #def: Consumer;
  readonly #deps: RuntimeDeps;
  readonly #log: Logger;
  readonly #hasDeadLetter: boolean;
  readonly #retry: RetryPolicy | undefined;
  readonly #settler: Settler;
  /** Retry wait queues declared on the current connection. */
  #waitQueues = new Set<number>();
  #channel: Channel | undefined;
  #consumerTag: string | undefined;
  #attached = false;
  #since = new Date();
  #reason: string | undefined = 'not started';
  #waiting: Delivery[] = [];
  /** Coalesces the acks of the current channel. */
  #acker: Acker | undefined;
  /** When the last delivery arrived (stop() waits for a quiet moment before closing). */
  #lastDeliveryAt = 0;
  #running = 0;
  #stopping = false;
  #stopPromise: Promise<void> | undefined;
  #attaching: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #idleWaiters: (() => void)[] = [];
  readonly #onOpen = (conn: ChannelModel): void => this.#attachInBackground(conn);

  constructor(def: Consumer, deps: RuntimeDeps) {
    this.#def = def;
    this.#deps = deps;
    this.#log = deps.logger.child({ component: 'consumer', consumer: def.name, queue: def.queue });
    const deadLetter = deps.declare.topology.queue(def.queue)?.deadLetter;
    this.#hasDeadLetter = deadLetter !== undefined;
    this.#retry = def.retry ?? deps.defaultRetry;
    this.#settler = new Settler({
      consumer: def.name,
      queue: def.queue,
      deadLetter,
      publisher: deps.publisher,
      log: this.#log,
      isCurrent: (ch) => ch === this.#channel,
      ensureWaitQueue: (delayMs) => this.#ensureWaitQueue(delayMs),
    });
    deps.connection.on('open', this.#onOpen);
  }

  get name(): string {
    return this.#def.name;
  }

  get queue(): string {
    return this.#def.queue;
  }

  health(): ConsumerHealth {
    return {
      name: this.#def.name,
      queue: this.#def.queue,
      attached: this.#attached,
      since: this.#since,
      consumerTag: this.#consumerTag,
      inFlight: this.#running,
      reason: this.#attached ? undefined : this.#reason,
    };
  }

  /** The first attach: waits for the connection, and fails if the queue cannot be consumed. */
  async start(): Promise<void> {
    if (!this.#hasDeadLetter && this.#def.ackMode !== 'none') {
      this.#log.warn(
        'queue has no dead-letter exchange in the topology: messages that fail validation (or throw, with onError dead-letter) will be discarded by the broker. Set deadLetter: true on the queue to keep them.',
      );
    }
    try {
      await this.#attach(await this.#deps.connection.whenOpen(), false);
    } catch (err) {
      // The caller is told it failed: nothing may go on trying (and consuming) behind its back.
      this.#stopping = true;
      this.#deps.connection.off('open', this.#onOpen);
      if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
      const ch = this.#channel;
      this.#channel = undefined;
      if (ch !== undefined) await closeWithin(ch, CLOSE_WAIT_MS);
      throw err;
    }
  }

  #attachInBackground(conn: ChannelModel): void {
    if (this.#stopping || this.#attaching !== undefined || this.#attached) return;
    this.#attach(conn, true).catch((err: unknown) => this.#onAttachFailed(conn, err));
  }

  #onAttachFailed(conn: ChannelModel, err: unknown): void {
    if (this.#stopping) return;
    this.#failures += 1;
    const delayMs = backoffDelay(this.#failures - 1, defaultBackoff);
    const level = this.#failures === 1 || this.#failures % 20 === 0 ? 'warn' : 'debug';
    this.#log[level]({ err: messageOf(err), attempt: this.#failures, delayMs }, 'could not re-attach consumer; retrying');
    this.#setDetached(messageOf(err));
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (conn === this.#deps.connection.connection) this.#attachInBackground(conn);
    }, delayMs);
  }

  /** Opens a channel (or reuses the open one), re-declares the queue if asked, and subscribes. */
  #attach(conn: ChannelModel, redeclare: boolean): Promise<void> {
    const run = async (): Promise<void> => {
      if (redeclare) await assertQueueOf(conn, this.#deps.declare, this.#def.queue);
      this.#waitQueues.clear();
      for (const delayMs of this.#retry !== undefined ? retryTiers(this.#retry) : []) await this.#ensureWaitQueue(delayMs, conn);
      const ch = this.#channel ?? (await this.#openChannel(conn));
      let reply;
      try {
        reply = await ch.consume(this.#def.queue, (msg) => this.#onMessage(ch, msg), { noAck: false });
      } catch (err) {
        throw this.#consumeError(err);
      }
      if (this.#stopping) {
        await ch.cancel(reply.consumerTag).catch(() => undefined);
        throw new ClosedError(`Consumer '${this.#def.name}' was stopped while attaching.`);
      }
      this.#consumerTag = reply.consumerTag;
      this.#attached = true;
      this.#failures = 0;
      this.#since = new Date();
      this.#log.info({ consumerTag: reply.consumerTag, prefetch: this.#def.prefetch, concurrency: this.#def.concurrency }, 'consumer attached');
      this.#deps.onEvent({ type: 'attached', consumer: this.#def.name, queue: this.#def.queue, consumerTag: reply.consumerTag });
    };
    const attaching = run().finally(() => {
      this.#attaching = undefined;
    });
    this.#attaching = attaching;
    return attaching;
  }

  async #ensureWaitQueue(delayMs: number, conn = this.#deps.connection.connection): Promise<void> {
    if (this.#waitQueues.has(delayMs)) return;
    if (conn === undefined) throw new ClosedError('the consume connection is down');
    await assertWaitQueue(conn, this.#def.queue, waitQueueName(this.#def.queue, delayMs), delayMs);
    this.#waitQueues.add(delayMs);
  }

  async #openChannel(conn: ChannelModel): Promise<Channel> {
    const ch = await conn.createChannel();
    ch.on('error', (err: Error) => {
      this.#log.warn({ err: err.message }, 'the broker closed the consumer channel');
    });
    // amqplib throws from its frame handler for a delivery to a consumer tag it no longer knows,
    // which tears the whole connection down; with this listener it reports it instead.
    ch.on('handler-error', (err: unknown) => {
      this.#log.warn({ err: messageOf(err) }, 'a delivery for a cancelled consumer; the broker redelivers it');
    });
    ch.on('close', () => this.#onChannelClose(conn, ch));
    await ch.prefetch(this.#def.prefetch);
    this.#channel = ch;
    this.#acker = new Acker(ch, this.#log);
    return ch;
  }

  #consumeError(err: unknown): WarrenError {
    const code = amqpCode(err);
    if (code === ReplyCode.NOT_FOUND) {
      return new ConsumeError(this.#def.queue, `Queue '${this.#def.queue}' does not exist. Declare it in the topology passed to connect().`, { cause: err });
    }
    if (code === ReplyCode.ACCESS_REFUSED || code === ReplyCode.RESOURCE_LOCKED) {
      return new ConsumeError(this.#def.queue, `The broker refused consumer '${this.#def.name}' on queue '${this.#def.queue}': ${messageOf(err)}`, { cause: err });
    }
    return new ConsumeError(this.#def.queue, `Could not consume from queue '${this.#def.queue}': ${messageOf(err)}`, { cause: err });
  }

  #onChannelClose(conn: ChannelModel, ch: Channel): void {
    if (this.#channel !== ch) return;
    this.#channel = undefined;
    this.#consumerTag = undefined;
    // Deliveries not yet handed to the handler are redelivered by the broker; forget them.
    this.#waiting = [];
    if (this.#stopping) return;
    this.#setDetached('channel closed');
    this.#checkIdle();
    // amqplib closes the channels before it reports the connection closed: look again once that
    // has happened. If the connection is gone, its 'open' event re-attaches; otherwise reopen here.
    setImmediate(() => {
      if (!this.#stopping && conn === this.#deps.connection.connection) this.#onAttachFailed(conn, new Error('consumer channel closed by the broker'));
    });
  }

  #setDetached(reason: string): void {
    this.#reason = reason;
    if (!this.#attached) return;
    this.#attached = false;
    this.#since = new Date();
    this.#deps.onEvent({ type: 'detached', consumer: this.#def.name, queue: this.#def.queue, reason });
  }

  #onMessage(ch: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // basic.cancel from the broker: the queue was deleted, or its leader moved.
      this.#consumerTag = undefined;
      this.#log.warn('the broker cancelled the consumer (queue deleted or moved); re-declaring and re-attaching');
      this.#setDetached('cancelled by the broker');
      this.#deps.onEvent({ type: 'cancelled', consumer: this.#def.name, queue: this.#def.queue });
      const conn = this.#deps.connection.connection;
      if (conn !== undefined && !this.#stopping) {
        this.#attach(conn, true).catch((err: unknown) => this.#onAttachFailed(conn, err));
      }
      return;
    }
    const acker = this.#acker;
    if (acker === undefined || this.#channel !== ch) {
      // A delivery on a channel already replaced or being closed: the broker redelivers it.
      this.#log.debug({ messageId: msg.properties.messageId as unknown, deliveryTag: msg.fields.deliveryTag }, 'delivery on a closed channel; not handled (the broker redelivers it)');
      return;
    }
    if (this.#stopping) this.#log.debug({ messageId: msg.properties.messageId as unknown, deliveryTag: msg.fields.deliveryTag }, 'delivery after stop() began; handled before the channel closes');
    const delivery: Delivery = { msg, channel: ch, acker, slot: acker.track(msg), settled: false };
    this.#lastDeliveryAt = Date.now();
    if (this.#running < this.#def.concurrency) void this.#handle(delivery);
    else this.#waiting.push(delivery);
  }

  /**
   * Runs one delivery: decode, validate, handler, then the broker action. Stays synchronous
   * until something returns a promise (a sync handler's message is acked in the same turn).
   */
  #handle(delivery: Delivery): void {
    this.#running += 1;
    try {
      // ackMode 'none' still consumes with acks, so prefetch bounds what is buffered here and
      // stop() can give unstarted messages back; each is acked as its handler starts.
      if (this.#def.ackMode === 'none') void this.#settler.settle(delivery, ACK);
      const outcome = this.#run(delivery);
      if (outcome instanceof Promise) {
        outcome.then(
          (o) => this.#finish(delivery, o),
          (err: unknown) => this.#internalError(delivery, err),
        );
        return;
      }
      this.#finish(delivery, outcome);
    } catch (err) {
      this.#internalError(delivery, err);
    }
  }

  /** Settles per the outcome; the delivery's concurrency slot frees once that is done. */
  #finish(delivery: Delivery, outcome: Outcome): void {
    try {
      const action = decideAction(outcome, this.#rule(delivery.msg), delivery.settled);
      if (action.type === 'requeue' && outcome.kind === 'failed') {
        this.#log.warn({ messageId: delivery.msg.properties.messageId as unknown, err: outcome.error }, 'handler failed; message requeued');
      }
      const settling = this.#settler.settle(delivery, action, outcome.kind === 'handled' ? undefined : outcome.error);
      if (settling !== undefined) {
        settling.then(
          () => this.#done(),
          (err: unknown) => this.#internalError(delivery, err),
        );
        return;
      }
    } catch (err) {
      this.#internalError(delivery, err);
      return;
    }
    this.#done();
  }

  /** A bug of ours must not become an unhandled rejection; the unsettled message is redelivered when the channel closes. */
  #internalError(delivery: Delivery, err: unknown): void {
    this.#log.error({ messageId: delivery.msg.properties.messageId as unknown, err: messageOf(err) }, 'internal error while settling a message');
    this.#done();
  }

  #done(): void {
    this.#running -= 1;
    this.#next();
  }

  #next(): void {
    // Also while stopping: messages already delivered are handled before the channel closes.
    while (this.#running < this.#def.concurrency) {
      const d = this.#waiting.shift();
      if (d === undefined) break;
      if (d.channel !== this.#channel) continue; // from a closed channel: the broker redelivers it
      void this.#handle(d);
    }
    this.#checkIdle();
  }

  #rule(msg: ConsumeMessage): Rule {
    return {
      ackMode: this.#def.ackMode,
      onError: this.#def.onError,
      retry: this.#retry,
      attempt: attemptOf(msg.properties.headers),
      delayFor: retryDelay,
    };
  }

  #run(delivery: Delivery): Outcome | Promise<Outcome> {
    const { msg } = delivery;
    let payload: unknown;
    try {
      payload = validatePayload(this.#def.message, decodeBody(this.#def.message, msg.content, msg.properties.contentType as string | undefined));
    } catch (error) {
      return { kind: 'invalid', error };
    }
    let result: unknown;
    try {
      result = this.#def.handle(payload, this.#context(delivery));
    } catch (error) {
      return { kind: 'failed', error };
    }
    if (!isThenable(result)) return HANDLED;
    return Promise.resolve(result).then(
      () => HANDLED,
      (error: unknown) => ({ kind: 'failed', error }),
    );
  }

  #context(delivery: Delivery): ConsumerContext | ManualContext {
    const { msg } = delivery;
    const base = new DeliveryContext(msg, this.#log);
    if (this.#def.ackMode !== 'manual') return base;
    const { messageId } = base;
    const once = (what: string): boolean => {
      if (!delivery.settled) return true;
      this.#log.warn({ messageId, call: what }, 'message already settled; ignoring the second call');
      return false;
    };
    const manual: Omit<ManualContext, keyof ConsumerContext> = {
      ack: () => {
        if (once('ack')) void this.#settler.settle(delivery, { type: 'ack' });
      },
      nack: (o) => {
        if (once('nack')) this.#settler.nack(delivery, o?.requeue ?? false);
      },
      reject: () => {
        if (once('reject')) this.#settler.nack(delivery, false);
      },
      retry: async (o) => {
        if (!once('retry')) return;
        const rule = this.#rule(msg);
        const policy = rule.retry;
        const delay = o?.delay !== undefined ? toMs(o.delay) : policy !== undefined ? retryDelay(policy, rule.attempt) : undefined;
        if (delay === undefined || delay < 1) {
          throw new ConfigError(`ctx.retry() in consumer '${this.#def.name}'`, ['delay: give a delay (e.g. { delay: \'10s\' }) or a retry policy on the consumer']);
        }
        const exhausted = policy !== undefined && rule.attempt >= policy.maxAttempts;
        const error = new Error('retry requested by the handler');
        await this.#settler.settle(delivery, exhausted ? { type: 'dead-letter', reason: 'retries-exhausted' } : { type: 'retry', delayMs: delay }, error);
      },
      deadLetter: async (reason) => {
        if (!once('deadLetter')) return;
        await this.#settler.settle(delivery, { type: 'dead-letter', reason: 'handler' }, new Error(reason ?? 'dead-lettered by the handler'));
      },
    };
    return Object.assign(base, manual);
  }

  /** Resolves true once no handler runs and nothing waits, or false at `deadline`. */
  #idle(deadline: number): Promise<boolean> {
    if (this.#running === 0 && this.#waiting.length === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  #checkIdle(): void {
    if (this.#running > 0 || this.#waiting.length > 0 || this.#idleWaiters.length === 0) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    this.#deps.connection.off('open', this.#onOpen);
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    await this.#attaching?.catch(() => undefined);
    const ch = this.#channel;
    const deadline = Date.now() + this.#def.stopTimeoutMs;
    let cancelledAt = Date.now();
    if (ch !== undefined && this.#consumerTag !== undefined) {
      // A quorum queue can still deliver a few messages after basic.cancel-ok (amqplib#641,
      // rabbitmq-server#3746): keep them flowing to the handler (see the quiet period below).
      keepConsumerAfterCancel(ch, this.#consumerTag);
      await ch.cancel(this.#consumerTag).catch((err: unknown) => this.#log.debug({ err: messageOf(err) }, 'cancel failed'));
      cancelledAt = Date.now();
    }
    // Messages the broker already delivered (at most prefetch) are handled too, not handed back:
    // a returned message comes again marked redelivered and, on a quorum queue, counts against
    // its delivery limit. Done when idle, acks sent, and nothing was delivered for
    // LATE_DELIVERY_QUIET_MS since the cancel, the last delivery and the last acks; only what is
    // left at the deadline goes back.
    this.#next();
    let finished = true;
    let acksSentAt = 0;
    for (;;) {
      if (!(await this.#idle(deadline))) {
        finished = false;
        break;
      }
      // Acks out now, not as the channel closes: a quorum queue may answer acks with more
      // deliveries to the cancelled consumer, and those must arrive while we still listen.
      if ((this.#acker?.flush() ?? 0) > 0) acksSentAt = Date.now();
      const quietFor = Date.now() - Math.max(cancelledAt, this.#lastDeliveryAt, acksSentAt);
      if (ch === undefined || quietFor >= LATE_DELIVERY_QUIET_MS || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(LATE_DELIVERY_QUIET_MS - quietFor, deadline - Date.now())));
    }
    if (!finished) {
      const unstarted = this.#waiting.splice(0);
      for (const d of unstarted) void this.#settler.settle(d, { type: 'requeue' }); // synchronous: a nack each
      this.#log.warn(
        { inFlight: this.#running, returned: unstarted.length, stopTimeoutMs: this.#def.stopTimeoutMs },
        'stop deadline reached: unstarted messages returned to the queue; those whose handlers still run will be redelivered',
      );
    }
    this.#channel = undefined;
    // Acks still waiting for the end of this turn go out before the channel closes.
    this.#acker?.flush();
    this.#acker = undefined;
    if (ch !== undefined) await closeWithin(ch, CLOSE_WAIT_MS);
    this.#setDetached('stopped');
    this.#consumerTag = undefined;
    this.#log.info('consumer stopped');
    this.#deps.onStopped(this);
  }
}

/** stop(): after the cancel, how long without deliveries before the channel may close. */
const LATE_DELIVERY_QUIET_MS = 100;

/** What a handler gets besides the payload. A class: one shape for every message, `log` made on first use. */
class DeliveryContext implements ConsumerContext {
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly redelivered: boolean;
  readonly deliveryCount: number | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly timestamp: Date | undefined;
  readonly attempt: number;
  readonly #consumerLog: Logger;
  #log: Logger | undefined;

  constructor(msg: ConsumeMessage, consumerLog: Logger) {
    const props = msg.properties;
    const headers = (props.headers ?? {}) as Record<string, unknown>;
    const count = headers['x-delivery-count'];
    const ts = props.timestamp as number | undefined;
    this.messageId = props.messageId as string | undefined;
    this.correlationId = props.correlationId as string | undefined;
    this.headers = headers;
    this.redelivered = msg.fields.redelivered;
    this.deliveryCount = typeof count === 'number' ? count : undefined;
    this.exchange = msg.fields.exchange;
    this.routingKey = msg.fields.routingKey;
    this.timestamp = typeof ts === 'number' ? new Date(ts * 1000) : undefined;
    this.attempt = attemptOf(headers);
    this.#consumerLog = consumerLog;
  }

  get log(): Logger {
    this.#log ??= this.#consumerLog.child({ messageId: this.messageId });
    return this.#log;
  }
}

const HANDLED: Outcome = Object.freeze({ kind: 'handled' });

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * Makes amqplib keep dispatching `tag`'s deliveries after its basic.cancel-ok (it forgets the
 * consumer at once, and throws on a later delivery). Only this channel instance is changed, and
 * only for this tag; a channel without the (internal) method is left alone.
 */
function keepConsumerAfterCancel(ch: Channel, tag: string): void {
  const internal = ch as unknown as { unregisterConsumer?: (t: string) => void };
  const original = internal.unregisterConsumer;
  if (typeof original !== 'function') return;
  internal.unregisterConsumer = (t: string) => {
    if (t !== tag) original.call(ch, t);
  };
}
