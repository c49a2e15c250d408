import type { ConnectionManager } from '../amqp/connection.js';
import { withChannel } from '../amqp/close.js';
import { LiveChannel } from '../amqp/live-channel.js';
import { permissionError } from '../amqp/permissions.js';
import { amqpCode, consumerTimeoutOf, ReplyCode } from '../amqp/reply-codes.js';
import type { Channel, Inbound, Link } from '../amqp/transport.js';
import type { CopyPublisher } from '../dead-letter/copy.js';
import { waitQueueName } from '../dead-letter/wait-queues.js';
import { effectiveRetry, type Consumer } from '../define/consumer.js';
import { retryTiers, type RetryPolicy } from '../define/retry-policy.js';
import { consumerChannel } from '../instrument/channels.js';
import { ClosedError, ConsumeError, messageOf, PermissionError, WarrenError } from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import { assertQueueOf, assertWaitQueue, type DeclareTarget } from '../topology/apply.js';
import { Acker } from './acker.js';
import { copyCounts, newCounts, type ConsumerCounts } from './counters.js';
import { Delivery } from './delivery.js';
import { Dispatcher } from './dispatch.js';
import { decide } from './outcome.js';
import { Pipeline } from './pipeline.js';
import { Settler } from './settler.js';

/** Whether a consumer is attached to its queue and since when, and what became of its deliveries so far. */
export interface ConsumerHealth extends ConsumerCounts {
  name: string;
  queue: string;
  attached: boolean;
  /** When `attached` last changed. */
  since: Date;
  consumerTag: string | undefined;
  /** Handlers running now. */
  inFlight: number;
  /** Deliveries on the current channel neither acked nor nacked yet (running, waiting, or left unsettled by a manual handler). */
  unsettled: number;
  /** How long the oldest of them has been unsettled, in ms (undefined when none is). */
  oldestUnsettledMs: number | undefined;
  /** Its whole prefetch has been unsettled for longer than `stalledAfter`: it takes no new messages (health().ok is false). */
  stalled: boolean;
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

/**
 * Where a subscription is. `starting` until the first attach; `attached` with a consumer tag;
 * `detached` (with why) while the channel or the connection is being brought back; `stopping`
 * from stop() until its channel is closed; then `stopped`.
 */
export type SubscriptionState =
  | { name: 'starting' }
  | { name: 'attached'; consumerTag: string }
  | { name: 'detached'; reason: string }
  | { name: 'stopping' }
  | { name: 'stopped' };

export interface SubscriptionDeps {
  /** The warren client's name, for instrumentation. */
  client: string;
  connection: ConnectionManager;
  publisher: CopyPublisher;
  /** connect()'s retry policy, for consumers without their own. */
  defaultRetry: RetryPolicy | undefined;
  declare: DeclareTarget;
  logger: Logger;
  onEvent: (event: ConsumerEvent) => void;
  onStopped: (subscription: Subscription) => void;
}

/** stop(): after the cancel, how long without deliveries before the channel may close. */
const LATE_DELIVERY_QUIET_MS = 100;

/**
 * One consumer on its own channel of the consume connection: attaches, re-attaches after a
 * connection loss or a broker-side cancel (queue deleted, failover) with its queue re-declared,
 * and stops gracefully. Deliveries go to the Dispatcher, which runs each through the Pipeline.
 */
export class Subscription implements ConsumerHandle {
  readonly #def: Consumer;
  readonly #deps: SubscriptionDeps;
  readonly #log: Logger;
  readonly #live: LiveChannel<Channel>;
  readonly #dispatcher: Dispatcher;
  readonly #settler: Settler;
  readonly #counts = newCounts();
  readonly #retry: RetryPolicy | undefined;
  readonly #hasDeadLetter: boolean;
  #state: SubscriptionState = { name: 'starting' };
  /** What the last attach event said (attached, or detached/never), and since when. */
  #announcedAttached = false;
  #since = new Date();
  #reason = 'not started';
  /** The channel being set up or in use, and its ack coalescer. */
  #channel: Channel | undefined;
  #acker: Acker | undefined;
  #consumerTag: string | undefined;
  /** The first attach follows connect()'s own topology assertion; later ones re-declare the queue. */
  #attachedBefore = false;
  /** Retry wait queues declared on the current connection. */
  #waitQueues = new Set<number>();
  /** When the last delivery arrived (stop() waits for a quiet moment before closing). */
  #lastDeliveryAt = 0;
  #stopPromise: Promise<void> | undefined;
  #watcher: NodeJS.Timeout | undefined;

  constructor(def: Consumer, deps: SubscriptionDeps) {
    this.#def = def;
    this.#deps = deps;
    this.#log = deps.logger.child({ component: 'consumer', consumer: def.name, queue: def.queue });
    const deadLetter = deps.declare.topology.queue(def.queue)?.deadLetter;
    this.#hasDeadLetter = deadLetter !== undefined;
    this.#retry = effectiveRetry(def, deps.defaultRetry);
    const isCurrent = (ch: Channel): boolean => ch === this.#channel;
    this.#settler = new Settler({
      client: deps.client,
      consumer: def.name,
      queue: def.queue,
      deadLetter,
      publisher: deps.publisher,
      log: this.#log,
      counts: this.#counts,
      isCurrent,
      ensureWaitQueue: (delayMs) => this.#ensureWaitQueue(delayMs, deps.connection.connection),
      forgetWaitQueue: (delayMs) => void this.#waitQueues.delete(delayMs),
    });
    const quorum = deps.declare.topology.queue(def.queue)?.type === 'quorum';
    const pipeline = new Pipeline({ client: deps.client, consumer: def, retry: this.#retry, deadLetterQueue: this.#hasDeadLetter, quorum, settler: this.#settler, log: this.#log });
    this.#dispatcher = new Dispatcher({ concurrency: def.concurrency, run: (d) => pipeline.process(d), isCurrent, log: this.#log });
    this.#live = new LiveChannel({
      connection: deps.connection,
      what: 'consumer channel',
      log: this.#log,
      create: (link) => this.#create(link),
      setup: (ch, link) => this.#subscribe(ch, link),
    });
    this.#live.on('open', () => this.#live.healthy());
    this.#live.on('failed', (err) => this.#setState({ name: 'detached', reason: err.message }));
  }

  get name(): string {
    return this.#def.name;
  }

  get queue(): string {
    return this.#def.queue;
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  health(): ConsumerHealth {
    return {
      name: this.#def.name,
      queue: this.#def.queue,
      attached: this.#announcedAttached,
      since: this.#since,
      consumerTag: this.#consumerTag,
      inFlight: this.#dispatcher.running,
      ...this.#unsettled(),
      reason: this.#announcedAttached ? undefined : this.#reason,
      ...copyCounts(this.#counts),
    };
  }

  #unsettled(): Pick<ConsumerHealth, 'unsettled' | 'oldestUnsettledMs' | 'stalled'> {
    const acker = this.#acker;
    if (acker === undefined || acker.unsettled === 0) return { unsettled: 0, oldestUnsettledMs: undefined, stalled: false };
    const now = Date.now();
    let oldest: number | undefined;
    for (const slot of acker.unsettledSince(now)) {
      oldest = slot.at;
      break;
    }
    let overdue = 0;
    const since = acker.unsettledSince(now - this.#def.stalledAfterMs);
    while (overdue < this.#def.prefetch && since.next().done !== true) overdue += 1;
    return { unsettled: acker.unsettled, oldestUnsettledMs: oldest !== undefined ? now - oldest : undefined, stalled: overdue >= this.#def.prefetch };
  }

  /** Warns once about each delivery unsettled for longer than stalledAfter: a stuck consumer is never silent. */
  #watch(): void {
    const acker = this.#acker;
    if (acker === undefined) return;
    const now = Date.now();
    for (const slot of acker.unsettledSince(now - this.#def.stalledAfterMs)) {
      if (slot.warned) continue;
      slot.warned = true;
      const unsettledForMs = now - slot.at;
      this.#log.warn(
        { messageId: slot.msg.messageId, unsettledForMs, ackMode: this.#def.ackMode, unsettled: acker.unsettled, prefetch: this.#def.prefetch },
        this.#def.ackMode === 'manual'
          ? 'a message is still unsettled: its handler called none of ack, nack, reject, retry, deadLetter; it holds a prefetch slot until it does (or the channel closes)'
          : 'a handler has been running this long; its message holds a prefetch slot until it finishes',
      );
    }
  }

  /** The first attach: waits for the connection, and fails if the queue cannot be consumed. */
  async start(): Promise<void> {
    if (!this.#hasDeadLetter && this.#def.ackMode !== 'none') {
      this.#log.warn(
        'queue has no dead-letter exchange in the topology: messages that fail validation (or throw, with onError dead-letter) will be discarded by the broker. Set deadLetter: true on the queue to keep them.',
      );
    }
    const every = Math.max(50, Math.min(this.#def.stalledAfterMs / 2, 5000));
    this.#watcher = setInterval(() => this.#watch(), every);
    this.#watcher.unref();
    try {
      await this.#live.start('fail-fast');
    } catch (err) {
      clearInterval(this.#watcher);
      // The caller is told it failed: nothing may go on trying (and consuming) behind its back.
      this.#setState({ name: 'stopped' });
      this.#channel = undefined;
      await this.#live.close();
      throw err;
    }
  }

  /** The one place the state changes; attach / detach events follow what `attached` means to a user. */
  #setState(next: SubscriptionState): void {
    this.#state = next;
    const wasAttached = this.#announcedAttached;
    const attached = next.name === 'attached' || (next.name === 'stopping' && wasAttached);
    if (next.name === 'attached') this.#consumerTag = next.consumerTag;
    else if (next.name !== 'stopping') this.#consumerTag = undefined;
    if (next.name === 'detached') this.#reason = next.reason;
    if (next.name === 'stopped') this.#reason = 'stopped';
    if (attached === wasAttached) return;
    this.#announcedAttached = attached;
    this.#since = new Date();
    const c = this.#def;
    if (next.name === 'attached') this.#announce({ type: 'attached', consumer: c.name, queue: c.queue, consumerTag: next.consumerTag });
    else this.#announce({ type: 'detached', consumer: c.name, queue: c.queue, reason: this.#reason });
  }

  #announce(event: ConsumerEvent): void {
    if (consumerChannel.hasSubscribers) {
      consumerChannel.publish({
        client: this.#deps.client,
        consumer: event.consumer,
        queue: event.queue,
        type: event.type,
        consumerTag: event.type === 'attached' ? event.consumerTag : undefined,
        reason: event.type === 'detached' ? event.reason : undefined,
      });
    }
    this.#deps.onEvent(event);
  }

  async #create(link: Link): Promise<Channel> {
    const ch = await link.createChannel();
    // Set before basic.consume: deliveries may arrive before its reply has been processed.
    this.#channel = ch;
    this.#acker = new Acker(ch, this.#log);
    ch.on('close', (err) => this.#onChannelClose(ch, err));
    return ch;
  }

  /** Re-declares the queue (after the first attach), declares the retry wait queues, and subscribes. */
  async #subscribe(ch: Channel, link: Link): Promise<void> {
    if (this.#attachedBefore) await this.#declaredOrThere(link, this.#def.queue, () => assertQueueOf(link, this.#deps.declare, this.#def.queue));
    this.#waitQueues.clear();
    for (const delayMs of this.#retry !== undefined ? retryTiers(this.#retry) : []) {
      await this.#declaredOrThere(link, waitQueueName(this.#def.queue, delayMs), () => this.#ensureWaitQueue(delayMs, link));
      this.#waitQueues.add(delayMs);
    }
    await ch.prefetch(this.#def.prefetch);
    let consumerTag: string;
    try {
      consumerTag = await ch.consume(this.#def.queue, (msg) => this.#onMessage(ch, msg));
    } catch (err) {
      throw this.#consumeError(err);
    }
    if (this.#state.name === 'stopping' || this.#state.name === 'stopped') {
      await ch.cancel(consumerTag).catch(() => undefined);
      throw new ClosedError(`Consumer '${this.#def.name}' was stopped while attaching.`);
    }
    this.#attachedBefore = true;
    this.#setState({ name: 'attached', consumerTag });
    this.#log.info({ consumerTag, prefetch: this.#def.prefetch, concurrency: this.#def.concurrency }, 'consumer attached');
  }

  /**
   * Declares a queue again; when a permission to do so is missing (revoked since the last attach,
   * say) and the queue is there, consumes it as the broker has it, as a reconnect does with the
   * topology. A queue that is not there still fails with the PermissionError: it is what to fix.
   */
  async #declaredOrThere(link: Link, queue: string, declare: () => Promise<void>): Promise<void> {
    try {
      await declare();
    } catch (err) {
      if (!(err instanceof PermissionError)) throw err;
      const there = await withChannel(link, (ch) => ch.checkQueue(queue)).then(
        () => true,
        () => false,
      );
      if (!there) throw err;
      this.#log.warn({ err, declaring: queue }, 'declaring this queue again was refused (a permission is missing); it is there, so it is used as the broker has it');
    }
  }

  async #ensureWaitQueue(delayMs: number, link: Link | undefined): Promise<void> {
    if (this.#waitQueues.has(delayMs)) return;
    if (link === undefined) throw new ClosedError('the consume connection is down');
    const type = this.#deps.declare.topology.queue(this.#def.queue)?.type ?? 'classic';
    await assertWaitQueue(link, this.#deps.declare, this.#def.queue, type, waitQueueName(this.#def.queue, delayMs), delayMs, this.#log);
    this.#waitQueues.add(delayMs);
  }

  #consumeError(err: unknown): WarrenError {
    const q = this.#def.queue;
    const code = amqpCode(err);
    if (code === ReplyCode.NOT_FOUND) {
      const fix = this.#deps.declare.declare !== false
        ? 'Declare it in the topology passed to connect().'
        : 'This client connects with declare: false, so it must be declared beforehand: run `warren topology apply <app>` as a user with configure permission.';
      return new ConsumeError(q, `Queue '${q}' does not exist. ${fix}`, { cause: err });
    }
    const refused = permissionError(err, { kind: 'consume', queue: q, consumer: this.#def.name });
    if (refused !== undefined) return refused;
    if (code === ReplyCode.ACCESS_REFUSED || code === ReplyCode.RESOURCE_LOCKED) {
      return new ConsumeError(q, `The broker refused consumer '${this.#def.name}' on queue '${q}': ${messageOf(err)}`, { cause: err });
    }
    return new ConsumeError(q, `Could not consume from queue '${q}': ${messageOf(err)}`, { cause: err });
  }

  #onChannelClose(ch: Channel, err: Error | undefined): void {
    if (this.#channel !== ch) return;
    this.#channel = undefined;
    const timeoutMs = consumerTimeoutOf(err);
    // Which message was held too long: the oldest unsettled one (it comes back, and a handler that
    // always takes longer than the timeout gets it again each time: the log says which it is).
    const now = Date.now();
    let held: { msg: Inbound; at: number } | undefined;
    if (timeoutMs !== undefined && this.#acker !== undefined) {
      for (const slot of this.#acker.unsettledSince(now)) {
        held = slot;
        break;
      }
    }
    this.#acker = undefined;
    // Deliveries not yet handed to the handler are redelivered by the broker; forget them.
    this.#dispatcher.takeWaiting();
    if (timeoutMs !== undefined) {
      const shown = Number.isNaN(timeoutMs) ? '' : ` (${timeoutMs} ms)`;
      this.#log.warn(
        {
          err,
          consumerTimeoutMs: Number.isNaN(timeoutMs) ? undefined : timeoutMs,
          ...(held !== undefined ? { messageId: held.msg.messageId, heldMs: now - held.at, redelivered: held.msg.redelivered } : {}),
        },
        `a delivery was not acked within the broker's consumer timeout${shown}: RabbitMQ closed the channel and puts its unacked messages back on the queue; ` +
          're-attaching. For handlers that need longer, raise the timeout (policy consumer-timeout, queue argument x-consumer-timeout, or consumer_timeout in rabbitmq.conf) or make the handler faster',
      );
    } else if (err !== undefined) this.#log.warn({ err }, 'the broker closed the consumer channel');
    if (this.#state.name === 'stopping' || this.#state.name === 'stopped') return;
    this.#setState({ name: 'detached', reason: timeoutMs !== undefined ? 'consumer timeout' : 'channel closed' });
  }

  #onMessage(ch: Channel, msg: Inbound | null): void {
    if (msg === null) {
      this.#onCancel(ch);
      return;
    }
    const acker = this.#acker;
    if (acker === undefined || this.#channel !== ch) {
      // A delivery on a channel already replaced or being closed: the broker redelivers it.
      this.#log.debug({ messageId: msg.messageId, deliveryTag: msg.deliveryTag }, 'delivery on a closed channel; not handled (the broker redelivers it)');
      return;
    }
    if (this.#state.name === 'stopping') {
      this.#log.debug({ messageId: msg.messageId, deliveryTag: msg.deliveryTag }, 'delivery after stop() began; handled before the channel closes');
    }
    this.#counts.delivered += 1;
    const now = Date.now();
    this.#lastDeliveryAt = now;
    this.#dispatcher.push(new Delivery(msg, ch, acker, now));
  }

  /** basic.cancel from the broker: the queue was deleted, or its leader moved. */
  #onCancel(ch: Channel): void {
    if (this.#channel !== ch || this.#state.name === 'stopping' || this.#state.name === 'stopped') return;
    // basic.cancel carries no reason: the queue was deleted, its leader moved, or (RabbitMQ 4.3+)
    // a delivery was held unacked past the consumer timeout. How long since the last delivery tells which is likely.
    this.#log.warn(
      { sinceLastDeliveryMs: this.#lastDeliveryAt > 0 ? Date.now() - this.#lastDeliveryAt : undefined },
      "the broker cancelled the consumer (its queue was deleted or its leader moved, or — RabbitMQ 4.3+ — a delivery was not acked within the broker's consumer timeout); re-declaring and re-attaching",
    );
    this.#setState({ name: 'detached', reason: 'cancelled by the broker' });
    this.#announce({ type: 'cancelled', consumer: this.#def.name, queue: this.#def.queue });
    this.#live.resubscribe();
  }

  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  async #stop(): Promise<void> {
    this.#setState({ name: 'stopping' });
    this.#settler.releaseHolds();
    await this.#live.stopReopening();
    const ch = this.#channel;
    const tag = this.#consumerTag;
    const deadline = Date.now() + this.#def.stopTimeoutMs;
    let cancelledAt = Date.now();
    if (ch !== undefined && tag !== undefined) {
      // Deliveries the broker sent before it saw the cancel (a quorum queue may send a few after
      // cancel-ok) keep reaching the handler: see the quiet period below.
      await ch.cancel(tag).catch((err: unknown) => this.#log.debug({ err }, 'cancel failed'));
      cancelledAt = Date.now();
    }
    // Messages the broker already delivered (at most prefetch) are handled too, not handed back:
    // a returned message comes again marked redelivered and, on a quorum queue, counts against
    // its delivery limit. Done when idle, acks sent, and nothing was delivered for
    // LATE_DELIVERY_QUIET_MS since the cancel, the last delivery and the last acks; only what is
    // left at the deadline goes back.
    this.#dispatcher.next();
    let finished = true;
    let acksSentAt = 0;
    for (;;) {
      if (!(await this.#dispatcher.idle(deadline))) {
        finished = false;
        break;
      }
      // Acks out now, not as the channel closes: a quorum queue may answer acks with more
      // deliveries to the cancelled consumer, and those must arrive while we still listen.
      if ((this.#acker?.flush() ?? 0) > 0) acksSentAt = Date.now();
      const quietFor = Date.now() - Math.max(cancelledAt, this.#lastDeliveryAt, acksSentAt);
      if (ch === undefined || ch.lateDeliveries === false || quietFor >= LATE_DELIVERY_QUIET_MS || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(LATE_DELIVERY_QUIET_MS - quietFor, deadline - Date.now())));
    }
    if (!finished) {
      const unstarted = this.#dispatcher.takeWaiting();
      const giveBack = decide({ on: 'stop-deadline' }, { ackMode: this.#def.ackMode, onError: this.#def.onError, retry: this.#retry, attempt: 1, deadLetterQueue: this.#hasDeadLetter });
      for (const d of unstarted) void this.#settler.settle(d, giveBack); // synchronous: a nack each
      this.#log.warn(
        { inFlight: this.#dispatcher.running, returned: unstarted.length, stopTimeoutMs: this.#def.stopTimeoutMs },
        'stop deadline reached: unstarted messages returned to the queue; those whose handlers still run will be redelivered',
      );
    }
    this.#channel = undefined;
    // Acks still waiting for the end of this turn go out before the channel closes.
    this.#acker?.flush();
    this.#acker = undefined;
    await this.#live.close();
    clearInterval(this.#watcher);
    this.#setState({ name: 'stopped' });
    this.#log.info('consumer stopped');
    this.#deps.onStopped(this);
  }
}
