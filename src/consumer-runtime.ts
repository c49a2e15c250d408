import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { backoffDelay, defaultBackoff } from './backoff.js';
import type { ConnectionManager } from './connection.js';
import type { Consumer, ConsumerContext, ManualContext } from './consumer.js';
import { assertQueueOf, type DeclareTarget } from './declare.js';
import { amqpCode, ClosedError, ConsumeError, messageOf, ReplyCode, WarrenError } from './errors.js';
import type { Logger } from './logger.js';
import { decodeBody, validatePayload } from './message.js';
import { decideAction, type BrokerAction, type Outcome } from './outcome.js';

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

/** A delivery and the channel it came on: acks go to that channel or nowhere. */
interface Delivery {
  readonly msg: ConsumeMessage;
  readonly channel: Channel;
  settled: boolean;
}

/** A running consumer, as returned by `warren.consume()`. */
export interface ConsumerHandle {
  readonly name: string;
  readonly queue: string;
  health(): ConsumerHealth;
  /** Cancels the subscription, lets running handlers finish (up to stopTimeoutMs), then closes its channel. Idempotent. */
  stop(): Promise<void>;
}

interface RuntimeDeps {
  connection: ConnectionManager;
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
  #channel: Channel | undefined;
  #consumerTag: string | undefined;
  #attached = false;
  #since = new Date();
  #reason: string | undefined = 'not started';
  #waiting: Delivery[] = [];
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
    this.#hasDeadLetter = deps.declare.topology.queue(def.queue)?.deadLetter !== undefined;
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
    const conn = await this.#deps.connection.whenOpen();
    try {
      await this.#attach(conn, false);
    } catch (err) {
      this.#deps.connection.off('open', this.#onOpen);
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
      const ch = this.#channel ?? (await this.#openChannel(conn));
      let reply;
      try {
        reply = await ch.consume(this.#def.queue, (msg) => this.#onMessage(ch, msg), { noAck: this.#def.ackMode === 'none' });
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

  async #openChannel(conn: ChannelModel): Promise<Channel> {
    const ch = await conn.createChannel();
    ch.on('error', (err: Error) => {
      this.#log.warn({ err: err.message }, 'the broker closed the consumer channel');
    });
    ch.on('close', () => this.#onChannelClose(conn, ch));
    await ch.prefetch(this.#def.prefetch);
    this.#channel = ch;
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
    const delivery: Delivery = { msg, channel: ch, settled: false };
    if (this.#running < this.#def.concurrency) void this.#handle(delivery);
    else this.#waiting.push(delivery);
  }

  async #handle(delivery: Delivery): Promise<void> {
    this.#running += 1;
    try {
      const outcome = await this.#run(delivery);
      this.#apply(delivery, decideAction(outcome, this.#def.ackMode, this.#def.onError, delivery.settled), outcome);
    } finally {
      this.#running -= 1;
      this.#next();
    }
  }

  #next(): void {
    while (this.#running < this.#def.concurrency && !this.#stopping) {
      const d = this.#waiting.shift();
      if (d === undefined) break;
      if (d.channel !== this.#channel) continue; // from a closed channel: the broker redelivers it
      void this.#handle(d);
    }
    this.#checkIdle();
  }

  async #run(delivery: Delivery): Promise<Outcome> {
    const { msg } = delivery;
    let payload: unknown;
    try {
      payload = validatePayload(this.#def.message, decodeBody(this.#def.message, msg.content, msg.properties.contentType as string | undefined));
    } catch (error) {
      return { kind: 'invalid', error };
    }
    try {
      await this.#def.handle(payload, this.#context(delivery));
      return { kind: 'handled' };
    } catch (error) {
      return { kind: 'failed', error };
    }
  }

  #context(delivery: Delivery): ConsumerContext | ManualContext {
    const { msg } = delivery;
    const props = msg.properties;
    const headers = (props.headers ?? {}) as Record<string, unknown>;
    const count = headers['x-delivery-count'];
    const messageId = props.messageId as string | undefined;
    const ts = props.timestamp as number | undefined;
    let log: Logger | undefined;
    const consumerLog = this.#log;
    const base: ConsumerContext = {
      messageId,
      correlationId: props.correlationId as string | undefined,
      headers,
      redelivered: msg.fields.redelivered,
      deliveryCount: typeof count === 'number' ? count : undefined,
      exchange: msg.fields.exchange,
      routingKey: msg.fields.routingKey,
      timestamp: typeof ts === 'number' ? new Date(ts * 1000) : undefined,
      get log(): Logger {
        log ??= consumerLog.child({ messageId });
        return log;
      },
    };
    if (this.#def.ackMode !== 'manual') return base;
    const settle = (action: BrokerAction, what: string): void => {
      if (delivery.settled) {
        this.#log.warn({ messageId, call: what }, 'message already settled; ignoring the second call');
        return;
      }
      this.#apply(delivery, action, undefined);
    };
    return Object.assign(Object.create(base) as ConsumerContext, {
      ack: () => settle({ type: 'ack' }, 'ack'),
      nack: (o?: { requeue?: boolean }) => settle({ type: 'nack', requeue: o?.requeue ?? false }, 'nack'),
      reject: () => settle({ type: 'nack', requeue: false }, 'reject'),
    });
  }

  /** Tells the broker the outcome, on the delivery's own channel only. */
  #apply(delivery: Delivery, action: BrokerAction, outcome: Outcome | undefined): void {
    const messageId = delivery.msg.properties.messageId as string | undefined;
    if (outcome?.kind === 'invalid') {
      this.#log.warn(
        { messageId, err: messageOf(outcome.error), code: outcome.error instanceof WarrenError ? outcome.error.code : undefined },
        this.#hasDeadLetter ? 'invalid message dead-lettered' : 'invalid message discarded (queue has no dead-letter exchange)',
      );
    } else if (outcome?.kind === 'failed') {
      const requeue = action.type === 'nack' && action.requeue;
      this.#log[requeue || this.#hasDeadLetter ? 'warn' : 'error'](
        { messageId, err: outcome.error },
        requeue ? 'handler failed; message requeued' : this.#hasDeadLetter ? 'handler failed; message dead-lettered' : 'handler failed; message discarded (queue has no dead-letter exchange)',
      );
    }
    if (action.type === 'none') return;
    delivery.settled = true;
    const ch = delivery.channel;
    if (ch !== this.#channel) {
      // The channel this came on is gone: the broker has already requeued the message. Acking its
      // tag on a new channel would ack a different message, or close the channel (406 unknown tag).
      this.#log.debug({ messageId, action: action.type }, 'delivery from a closed channel; not settling it (the broker redelivers it)');
      return;
    }
    try {
      if (action.type === 'ack') ch.ack(delivery.msg);
      else ch.nack(delivery.msg, false, action.requeue);
    } catch (err) {
      this.#log.debug({ messageId, err: messageOf(err) }, 'could not settle delivery; the channel closed (the broker redelivers it)');
    }
  }

  #checkIdle(): void {
    if (this.#running > 0 || this.#idleWaiters.length === 0) return;
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
    if (ch !== undefined && this.#consumerTag !== undefined) {
      await ch.cancel(this.#consumerTag).catch((err: unknown) => this.#log.debug({ err: messageOf(err) }, 'cancel failed'));
    }
    // Not started yet: give them back now rather than when the channel closes.
    for (const d of this.#waiting.splice(0)) {
      if (d.channel === ch) this.#apply(d, { type: 'nack', requeue: true }, undefined);
    }
    if (this.#running > 0) {
      const finished = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), this.#def.stopTimeoutMs);
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!finished) {
        this.#log.warn({ inFlight: this.#running, stopTimeoutMs: this.#def.stopTimeoutMs }, 'handlers still running at stop deadline; their messages will be redelivered');
      }
    }
    this.#channel = undefined;
    if (ch !== undefined) await ch.close().catch(() => undefined);
    this.#setDetached('stopped');
    this.#consumerTag = undefined;
    this.#log.info('consumer stopped');
    this.#deps.onStopped(this);
  }
}
