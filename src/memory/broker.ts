import { randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers';
import type { ExchangeOptions, Inbound, PublishProperties, QueueInfo, QueueOptions } from '../amqp/transport.js';
import { NotModelledError } from '../support/errors.js';
import { TypedEmitter } from '../support/events.js';
import { systemClock, type Clock } from './clock.js';
import { bindingMatches, type MemoryExchangeType } from './routing.js';

/**
 * An in-memory RabbitMQ: exchanges, bindings, queues and the rules the real broker applies to
 * them (routing, alternate exchanges, TTL, dead-lettering, max-length overflow, prefetch,
 * acks, requeue, quorum delivery counts). The transport in ./transport.ts puts warren's
 * Link / Channel interfaces in front of it. What it does not model it refuses with a
 * NotModelledError (see NOT_MODELLED below); it never pretends.
 *
 * Everything the broker tells a client (deliveries, confirms, returns, closes) happens on a
 * later turn of the event loop (the real `setImmediate` of node:timers, which fake timers
 * leave alone), as it would over a socket: a handler never runs inside the `publish()` that
 * caused it.
 */

export interface MemoryBrokerOptions {
  /** Message TTLs and x-death times read this clock. Default: the global timers (fake timers apply). */
  clock?: Clock;
  /**
   * The delivery limit of a quorum queue declared without `x-delivery-limit`. RabbitMQ 4.x sets
   * 20; 3.x none (`undefined`). Default: 20, as RabbitMQ 4.
   */
  quorumDeliveryLimit?: number | undefined;
}

/** Queue arguments the in-memory broker honours (or, for placement and storage hints, accepts as no-ops). */
const QUEUE_ARGUMENTS = new Set([
  'x-queue-type',
  'x-message-ttl',
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-dead-letter-strategy',
  'x-max-length',
  'x-max-length-bytes',
  'x-overflow',
  'x-delivery-limit',
  'x-queue-leader-locator',
  'x-quorum-initial-group-size',
  'x-queue-version',
]);

/** What the in-memory broker refuses, by feature (the README's "What it does not model" lists the same). */
export const NOT_MODELLED = [
  'stream queues',
  'priority queues (x-max-priority)',
  'single active consumer (x-single-active-consumer)',
  'queue expiry (x-expires)',
  'exchange types other than direct, topic, fanout and headers (plugins such as x-delayed-message)',
  'exchange arguments other than alternate-exchange',
  'users, permissions and virtual hosts (one vhost, every client may do everything)',
  'memory and disk limits (use block() to simulate an alarm)',
] as const;

type Props = Omit<PublishProperties, 'mandatory' | 'messageId'> & { messageId?: string | undefined; headers: Record<string, unknown> };

/** One message as a queue holds it: its own copy of the headers. */
export interface StoredMessage {
  readonly body: Buffer;
  readonly properties: Props;
  readonly exchange: string;
  readonly routingKey: string;
}

/** A message in a queue, or lent to a channel until it is acked or returned. */
export interface QueuedMessage {
  msg: StoredMessage;
  seq: number;
  expiresAt: number | undefined;
  deliveryCount: number;
  redelivered: boolean;
}

interface BindingEntry {
  destination: { kind: 'queue' | 'exchange'; name: string };
  routingKey: string;
  arguments: Record<string, unknown>;
}

interface MemoryExchange {
  name: string;
  type: MemoryExchangeType;
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  arguments: Record<string, unknown>;
  bindings: BindingEntry[];
}

/** Where the broker hands a delivery: one consumer on one channel. */
export interface Subscriber {
  readonly tag: string;
  readonly owner: ClientChannel;
  readonly prefetch: number;
  unacked: number;
  deliver(message: Inbound | null): void;
}

/** What the broker needs of a client's channel. */
export interface ClientChannel {
  readonly link: ClientLink;
  /** Hands out the next delivery tag and remembers what it was for. */
  track(queue: MemoryQueue, qm: QueuedMessage, subscriber: Subscriber | undefined): number;
}

/** What the broker needs of a client's connection: who it is (exclusive queues), and how to close or block it. */
export interface ClientLink {
  readonly id: number;
  forceClose(error: Error): void;
  setBlocked(reason: string | undefined): void;
}

export class MemoryQueue {
  readonly name: string;
  readonly durable: boolean;
  readonly exclusive: boolean;
  readonly autoDelete: boolean;
  readonly arguments: Record<string, unknown>;
  readonly type: 'classic' | 'quorum';
  readonly owner: ClientLink | undefined;
  readonly ready: QueuedMessage[] = [];
  readonly subscribers: Subscriber[] = [];
  unacked = 0;
  hadSubscriber = false;
  next = 0;
  timer: unknown;
  timerAt: number | undefined;

  constructor(name: string, options: QueueOptions, owner: ClientLink | undefined) {
    this.name = name;
    this.durable = options.durable;
    this.exclusive = options.exclusive;
    this.autoDelete = options.autoDelete;
    this.arguments = { ...options.arguments };
    this.type = options.arguments['x-queue-type'] === 'quorum' ? 'quorum' : 'classic';
    this.owner = options.exclusive ? owner : undefined;
  }

  get readyBytes(): number {
    let n = 0;
    for (const q of this.ready) n += q.msg.body.length;
    return n;
  }

  num(arg: string): number | undefined {
    const v = this.arguments[arg];
    return typeof v === 'number' ? v : undefined;
  }
}

/** A failure the broker answers with a channel close (or, with `connection`, a connection close). */
export class BrokerRefusal extends Error {
  readonly code: number;

  constructor(code: number, name: string, text: string) {
    super(`Channel closed by server: ${code} (${name.replace(/_/g, '-')}) with message "${name} - ${text}"`);
    this.code = code;
    this.name = 'BrokerRefusal';
  }
}

const notFound = (what: 'exchange' | 'queue', name: string): BrokerRefusal => new BrokerRefusal(404, 'NOT_FOUND', `no ${what} '${name}' in vhost '/'`);

/** A message that was published: what the testing kit lists. */
export interface PublishedMessage extends StoredMessage {
  /** The queues it reached (after alternate exchanges and exchange-to-exchange bindings). */
  readonly queues: readonly string[];
  /** True when it was published mandatory and no queue took it (basic.return). */
  readonly returned: boolean;
}

/** A message the broker dead-lettered (x-dead-letter-exchange), or dropped for want of one. */
export interface BrokerDeadLetter {
  readonly queue: string;
  readonly reason: 'rejected' | 'expired' | 'maxlen' | 'delivery_limit';
  readonly message: StoredMessage;
  /** The queues the dead-lettered copy reached; empty when it was dropped. */
  readonly queues: readonly string[];
}

export interface MemoryBrokerEvents {
  published: [message: PublishedMessage];
  'dead-lettered': [event: BrokerDeadLetter];
  /** Something changed: a publish, delivery, ack, requeue, expiry. The testing kit waits on it. */
  activity: [];
}

/** A read-only view of a message in a queue. */
export interface QueuedMessageView {
  readonly body: Buffer;
  readonly properties: Readonly<Props>;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly exchange: string;
  readonly routingKey: string;
  readonly redelivered: boolean;
  /** Quorum queues: how many times it was returned to the queue. */
  readonly deliveryCount: number;
}

/** A read-only view of a queue. */
export interface QueueView {
  readonly name: string;
  readonly type: 'classic' | 'quorum';
  readonly durable: boolean;
  readonly arguments: Readonly<Record<string, unknown>>;
  /** Ready messages (not delivered, or returned). */
  readonly messageCount: number;
  /** Delivered and not yet acked. */
  readonly unackedCount: number;
  readonly consumerCount: number;
  /** The ready messages, head first. */
  readonly messages: readonly QueuedMessageView[];
}

const BUILT_IN: readonly [string, MemoryExchangeType][] = [
  ['amq.direct', 'direct'],
  ['amq.topic', 'topic'],
  ['amq.fanout', 'fanout'],
  ['amq.headers', 'headers'],
  ['amq.match', 'headers'],
];

export class MemoryBroker extends TypedEmitter<MemoryBrokerEvents> {
  readonly clock: Clock;
  readonly #quorumDeliveryLimit: number | undefined;
  readonly #exchanges = new Map<string, MemoryExchange>();
  readonly #queues = new Map<string, MemoryQueue>();
  #seq = 0;
  #tasks: (() => void)[] = [];
  #dirty = new Set<MemoryQueue>();
  #scheduled = false;
  #blocked: string | undefined;
  #held: (() => void)[] = [];
  #running = true;
  readonly links = new Set<ClientLink>();

  constructor(options: MemoryBrokerOptions = {}) {
    super();
    this.clock = options.clock ?? systemClock;
    this.#quorumDeliveryLimit = 'quorumDeliveryLimit' in options ? options.quorumDeliveryLimit : 20;
    for (const [name, type] of BUILT_IN) {
      this.#exchanges.set(name, { name, type, durable: true, autoDelete: false, internal: false, arguments: {}, bindings: [] });
    }
  }

  // ---- What tests read -------------------------------------------------------------------

  /** A queue's state, or undefined when it does not exist. */
  queue(name: string): QueueView | undefined {
    const q = this.#queues.get(name);
    if (q === undefined) return undefined;
    this.#expire(q);
    return {
      name: q.name,
      type: q.type,
      durable: q.durable,
      arguments: { ...q.arguments },
      messageCount: q.ready.length,
      unackedCount: q.unacked,
      consumerCount: q.subscribers.length,
      messages: q.ready.map((m) => ({
        body: m.msg.body,
        properties: m.msg.properties,
        headers: m.msg.properties.headers,
        exchange: m.msg.exchange,
        routingKey: m.msg.routingKey,
        redelivered: m.redelivered,
        deliveryCount: m.deliveryCount,
      })),
    };
  }

  /** The names of every queue. */
  queueNames(): string[] {
    return [...this.#queues.keys()];
  }

  /** The names of every exchange (the built-in `amq.*` ones included). */
  exchangeNames(): string[] {
    return [...this.#exchanges.keys()];
  }

  /**
   * What is still in flight, or undefined when the broker is quiet: no delivery waits for an
   * ack, no message waits for a consumer with room, no confirm or delivery is on its way.
   * Messages waiting for their TTL (retry wait queues) do not count: only time moves them.
   */
  busy(): string | undefined {
    const pending: string[] = [];
    if (this.#blocked !== undefined && this.#held.length > 0) pending.push(`${this.#held.length} publish(es) held while the broker is blocked (${this.#blocked})`);
    for (const q of this.#queues.values()) {
      if (q.unacked > 0) pending.push(`${q.unacked} unacked on '${q.name}'`);
      else if (q.ready.length > 0 && q.subscribers.some((s) => s.prefetch === 0 || s.unacked < s.prefetch)) pending.push(`${q.ready.length} ready on '${q.name}'`);
    }
    if (pending.length === 0 && (this.#tasks.length > 0 || this.#dirty.size > 0)) pending.push('deliveries and confirms on their way to clients');
    return pending.length > 0 ? pending.join(', ') : undefined;
  }

  /** When the next message TTL falls due (clock time, ms), or undefined when no message waits for one. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const q of this.#queues.values()) if (q.timerAt !== undefined && (next === undefined || q.timerAt < next)) next = q.timerAt;
    return next;
  }

  // ---- Faults a test can cause -------------------------------------------------------------

  /** Closes every connection as a broker restart would (320 CONNECTION_FORCED); clients reconnect. */
  dropConnections(reason = 'shutdown'): void {
    const err = Object.assign(new Error(`Connection closed: 320 (CONNECTION-FORCED) with message "CONNECTION_FORCED - broker forced connection closure with reason '${reason}'"`), { code: 320 });
    for (const link of [...this.links]) link.forceClose(err);
  }

  /** Stops accepting connections and drops the open ones; transient messages and queues are lost, as in a restart. */
  stop(): void {
    this.#running = false;
    this.dropConnections('shutdown');
    this.#blocked = undefined;
    this.#held = [];
    for (const q of [...this.#queues.values()]) {
      if (!q.durable) this.#deleteQueue(q);
      else if (q.type === 'classic') {
        // A quorum queue keeps every message; a classic one only the persistent ones.
        q.ready.splice(0, q.ready.length, ...q.ready.filter((m) => m.msg.properties.persistent === true));
        this.#retime(q);
      }
    }
    for (const ex of [...this.#exchanges.values()]) if (!ex.durable) this.#exchanges.delete(ex.name);
  }

  /** Accepts connections again after stop(). */
  start(): void {
    this.#running = true;
  }

  get running(): boolean {
    return this.#running;
  }

  /** A memory or disk alarm: connections are told they are blocked, and publishes wait until unblock(). */
  block(reason = 'low on memory'): void {
    if (this.#blocked !== undefined) return;
    this.#blocked = reason;
    for (const link of this.links) link.setBlocked(reason);
  }

  unblock(): void {
    if (this.#blocked === undefined) return;
    this.#blocked = undefined;
    for (const link of this.links) link.setBlocked(undefined);
    const held = this.#held;
    this.#held = [];
    for (const run of held) run();
  }

  /** Deletes a queue as `rabbitmqctl delete_queue` would: its consumers are cancelled by the broker. */
  deleteQueue(name: string): boolean {
    const q = this.#queues.get(name);
    if (q === undefined) return false;
    this.#deleteQueue(q);
    return true;
  }

  /** Binds exchange `destination` to exchange `source` (exchange.bind): messages routed by the binding go on through `destination`. */
  bindExchange(destination: string, source: string, routingKey: string, args: Record<string, unknown> = {}): void {
    const src = this.#exchanges.get(source);
    if (src === undefined) throw notFound('exchange', source);
    if (!this.#exchanges.has(destination)) throw notFound('exchange', destination);
    this.#addBinding(src, { destination: { kind: 'exchange', name: destination }, routingKey, arguments: { ...args } });
  }

  /**
   * Publishes a message as another service would: no validation, no confirm, any body and
   * headers (a malformed body, a header from an old version). Returns the queues it reached.
   * Throws (404) when the exchange does not exist.
   */
  send(exchange: string, routingKey: string, body: Buffer | string, properties: Partial<Omit<PublishProperties, 'mandatory'>> = {}): string[] {
    const result = this.publish(exchange, routingKey, Buffer.from(body), properties);
    this.recordPublish({ ...result.message, queues: result.queues, returned: false });
    return result.queues;
  }

  // ---- AMQP operations (called by the transport) -------------------------------------------

  get blocked(): string | undefined {
    return this.#blocked;
  }

  /** Runs `fn` now, or when the broker is unblocked. */
  whenUnblocked(fn: () => void): void {
    if (this.#blocked === undefined) fn();
    else this.#held.push(fn);
  }

  assertExchange(name: string, type: string, options: ExchangeOptions): void {
    if (name === '') throw new BrokerRefusal(403, 'ACCESS_REFUSED', "operation not permitted on the default exchange");
    if (type !== 'direct' && type !== 'topic' && type !== 'fanout' && type !== 'headers') {
      throw new NotModelledError(`The in-memory broker does not model exchange type '${type}' (exchange '${name}'); test it against a real RabbitMQ.`);
    }
    for (const arg of Object.keys(options.arguments)) {
      if (arg !== 'alternate-exchange') throw new NotModelledError(`The in-memory broker does not model exchange argument '${arg}' (exchange '${name}'); test it against a real RabbitMQ.`);
    }
    const existing = this.#exchanges.get(name);
    if (existing !== undefined) {
      const where = `for exchange '${name}' in vhost '/'`;
      if (existing.type !== type) throw inequivalent(`'type' ${where}: received '${type}' but current is '${existing.type}'`);
      if (existing.durable !== options.durable) throw inequivalent(`'durable' ${where}: received '${options.durable}' but current is '${existing.durable}'`);
      if (existing.autoDelete !== options.autoDelete) throw inequivalent(`'auto_delete' ${where}: received '${options.autoDelete}' but current is '${existing.autoDelete}'`);
      if (existing.internal !== options.internal) throw inequivalent(`'internal' ${where}: received '${options.internal}' but current is '${existing.internal}'`);
      const mismatch = argumentMismatch(options.arguments, existing.arguments, where);
      if (mismatch !== undefined) throw mismatch;
      return;
    }
    if (name.startsWith('amq.')) throw new BrokerRefusal(403, 'ACCESS_REFUSED', `exchange name '${name}' contains reserved prefix 'amq.*'`);
    this.#exchanges.set(name, { name, type, durable: options.durable, autoDelete: options.autoDelete, internal: options.internal, arguments: { ...options.arguments }, bindings: [] });
  }

  assertQueue(name: string, options: QueueOptions, link: ClientLink): QueueInfo {
    const queueName = name === '' ? `amq.gen-${randomUUID()}` : name;
    if (name.startsWith('amq.')) throw new BrokerRefusal(403, 'ACCESS_REFUSED', `queue name '${name}' contains reserved prefix 'amq.*'`);
    const existing = this.#queues.get(queueName);
    if (existing !== undefined) {
      this.#checkExclusive(existing, link);
      const where = `for queue '${queueName}' in vhost '/'`;
      if (existing.durable !== options.durable) throw inequivalent(`'durable' ${where}: received '${options.durable}' but current is '${existing.durable}'`);
      if (existing.exclusive !== options.exclusive) throw inequivalent(`'exclusive' ${where}: received '${options.exclusive}' but current is '${existing.exclusive}'`);
      if (existing.autoDelete !== options.autoDelete) throw inequivalent(`'auto_delete' ${where}: received '${options.autoDelete}' but current is '${existing.autoDelete}'`);
      const declared = { 'x-queue-type': 'classic', ...options.arguments };
      const current = { 'x-queue-type': 'classic', ...existing.arguments };
      const mismatch = argumentMismatch(declared, current, where);
      if (mismatch !== undefined) throw mismatch;
      return this.#info(existing);
    }
    const type = options.arguments['x-queue-type'] ?? 'classic';
    if (type === 'stream') throw new NotModelledError(`The in-memory broker does not model stream queues (queue '${queueName}'); test it against a real RabbitMQ.`);
    if (type !== 'classic' && type !== 'quorum') throw new BrokerRefusal(406, 'PRECONDITION_FAILED', `invalid arg 'x-queue-type' for queue '${queueName}' in vhost '/': unknown type ${JSON.stringify(type)}`);
    for (const arg of Object.keys(options.arguments)) {
      if (!QUEUE_ARGUMENTS.has(arg)) throw new NotModelledError(`The in-memory broker does not model queue argument '${arg}' (queue '${queueName}'); test it against a real RabbitMQ.`);
    }
    if (type === 'quorum' && (!options.durable || options.exclusive || options.autoDelete)) {
      const prop = !options.durable ? 'non-durable' : options.exclusive ? 'exclusive' : 'auto-delete';
      throw new BrokerRefusal(406, 'PRECONDITION_FAILED', `invalid property '${prop}' for queue '${queueName}' in vhost '/'`);
    }
    const overflow = options.arguments['x-overflow'];
    if (overflow !== undefined && overflow !== 'drop-head' && overflow !== 'reject-publish' && overflow !== 'reject-publish-dlx') {
      throw new BrokerRefusal(406, 'PRECONDITION_FAILED', `invalid arg 'x-overflow' for queue '${queueName}' in vhost '/': ${JSON.stringify(overflow)}`);
    }
    // A quorum queue without x-delivery-limit gets the broker's default at settle time (as RabbitMQ 4 applies it), not as an argument.
    const q = new MemoryQueue(queueName, options, link);
    this.#queues.set(queueName, q);
    // The default exchange routes to every queue by its name; no binding is stored for it.
    return this.#info(q);
  }

  checkQueue(name: string, link: ClientLink): QueueInfo {
    const q = this.#queues.get(name);
    if (q === undefined) throw notFound('queue', name);
    this.#checkExclusive(q, link);
    return this.#info(q);
  }

  purgeQueue(name: string, link: ClientLink): number {
    const q = this.#need(name, link);
    const n = q.ready.length;
    q.ready.length = 0;
    this.#retime(q);
    this.emit('activity');
    return n;
  }

  bindQueue(queue: string, exchange: string, routingKey: string, args: Record<string, unknown>, link: ClientLink): void {
    const q = this.#need(queue, link);
    if (exchange === '') throw new BrokerRefusal(403, 'ACCESS_REFUSED', `operation not permitted on the default exchange`);
    const ex = this.#exchanges.get(exchange);
    if (ex === undefined) throw notFound('exchange', exchange);
    this.#addBinding(ex, { destination: { kind: 'queue', name: q.name }, routingKey, arguments: { ...args } });
  }

  subscribe(queue: string, link: ClientLink, make: (q: MemoryQueue) => Subscriber): Subscriber {
    const q = this.#need(queue, link);
    const sub = make(q);
    q.subscribers.push(sub);
    q.hadSubscriber = true;
    this.#markDirty(q);
    return sub;
  }

  /** Removes a consumer. Its unacked messages stay with its channel until acked or the channel closes. */
  unsubscribe(queueName: string, sub: Subscriber): void {
    const q = this.#queues.get(queueName);
    if (q === undefined) return;
    const i = q.subscribers.indexOf(sub);
    if (i >= 0) q.subscribers.splice(i, 1);
    if (q.autoDelete && q.hadSubscriber && q.subscribers.length === 0) this.#deleteQueue(q);
    else this.#markDirty(q);
  }

  /** basic.get: the head message, lent to the channel, or undefined. */
  get(queueName: string, channel: ClientChannel): { qm: QueuedMessage; tag: number; queue: MemoryQueue } | undefined {
    const q = this.#need(queueName, channel.link);
    this.#expire(q);
    const qm = q.ready.shift();
    if (qm === undefined) return undefined;
    q.unacked++;
    this.#retime(q);
    const tag = channel.track(q, qm, undefined);
    this.emit('activity');
    return { qm, tag, queue: q };
  }

  /** A lent message was acked: it is gone. */
  settleAck(queue: MemoryQueue, sub: Subscriber | undefined): void {
    queue.unacked--;
    if (sub !== undefined) sub.unacked--;
    this.#markDirty(queue);
  }

  /** A lent message came back: requeued (in its old place), or dead-lettered / dropped when `requeue` is false or its delivery limit is spent. */
  settleReturn(queue: MemoryQueue, qm: QueuedMessage, sub: Subscriber | undefined, requeue: boolean): void {
    queue.unacked--;
    if (sub !== undefined) sub.unacked--;
    if (!this.#queues.has(queue.name) || this.#queues.get(queue.name) !== queue) return;
    if (!requeue) {
      this.#deadLetter(queue, qm.msg, 'rejected');
      this.#markDirty(queue);
      return;
    }
    qm.redelivered = true;
    if (queue.type === 'quorum') {
      qm.deliveryCount++;
      const limit = queue.num('x-delivery-limit') ?? this.#quorumDeliveryLimit;
      if (limit !== undefined && limit >= 0 && qm.deliveryCount > limit) {
        this.#deadLetter(queue, qm.msg, 'delivery_limit');
        this.#markDirty(queue);
        return;
      }
    }
    let at = queue.ready.findIndex((m) => m.seq > qm.seq);
    if (at < 0) at = queue.ready.length;
    queue.ready.splice(at, 0, qm);
    this.#retime(queue);
    this.#markDirty(queue);
  }

  /**
   * Routes a published message. Throws BrokerRefusal 404 when the exchange does not exist (the
   * channel closes). Returns where it went and whether a queue refused it (overflow
   * reject-publish: the publisher's confirm is then a nack).
   */
  publish(exchange: string, routingKey: string, body: Buffer, properties: Partial<PublishProperties>): { queues: string[]; routed: boolean; refused: boolean; message: StoredMessage } {
    const ex = exchange === '' ? undefined : this.#exchanges.get(exchange);
    if (exchange !== '' && ex === undefined) throw notFound('exchange', exchange);
    if (ex?.internal === true) throw new BrokerRefusal(403, 'ACCESS_REFUSED', `cannot publish to internal exchange '${exchange}' in vhost '/'`);
    const props = { ...properties };
    delete props.mandatory;
    const headers = cloneTable(properties.headers ?? {});
    // As RabbitMQ 4: the death history is the broker's own; a publisher's x-death is not carried on.
    for (const name of DEATH_HEADERS) delete headers[name];
    // The body is the caller's copy (the transport copies at publish(), send() at its call).
    const message: StoredMessage = { body, properties: { ...props, headers }, exchange, routingKey };
    const targets = ex === undefined ? this.#byName(routingKey) : [...this.#route(ex, routingKey, message.properties.headers, new Set())];
    let refused = false;
    const reached: string[] = [];
    for (const q of targets) {
      if (this.#enqueue(q, message)) reached.push(q.name);
      else refused = true;
    }
    return { queues: reached, routed: targets.length > 0, refused, message };
  }

  /** Tells the testing kit what was published (after the confirm's fate is known). */
  recordPublish(published: PublishedMessage): void {
    this.emit('published', published);
  }

  /** Schedules a callback to a client on a later turn (confirms, returns, closes). */
  later(task: () => void): void {
    this.#tasks.push(task);
    this.#schedule();
  }

  /** An exclusive queue's connection closed: the queue goes with it. */
  dropExclusive(link: ClientLink): void {
    for (const q of [...this.#queues.values()]) if (q.owner === link) this.#deleteQueue(q);
  }

  // ---- Internals ---------------------------------------------------------------------------

  #info(q: MemoryQueue): QueueInfo {
    this.#expire(q);
    return { queue: q.name, messageCount: q.ready.length, consumerCount: q.subscribers.length };
  }

  #need(name: string, link: ClientLink): MemoryQueue {
    const q = this.#queues.get(name);
    if (q === undefined) throw notFound('queue', name);
    this.#checkExclusive(q, link);
    return q;
  }

  #checkExclusive(q: MemoryQueue, link: ClientLink): void {
    if (q.owner !== undefined && q.owner !== link) {
      throw new BrokerRefusal(405, 'RESOURCE_LOCKED', `cannot obtain exclusive access to locked queue '${q.name}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`);
    }
  }

  #addBinding(ex: MemoryExchange, entry: BindingEntry): void {
    const same = ex.bindings.some((b) => b.destination.kind === entry.destination.kind && b.destination.name === entry.destination.name && b.routingKey === entry.routingKey && sameArgs(b.arguments, entry.arguments));
    if (!same) ex.bindings.push(entry);
  }

  #byName(name: string): MemoryQueue[] {
    const q = this.#queues.get(name);
    return q === undefined ? [] : [q];
  }

  /** The queues a message reaches through `ex`: its bindings, exchange-to-exchange bindings, and its alternate exchange when nothing matched. */
  #route(ex: MemoryExchange, routingKey: string, headers: Record<string, unknown>, seen: Set<string>): Set<MemoryQueue> {
    const out = new Set<MemoryQueue>();
    if (seen.has(ex.name)) return out;
    seen.add(ex.name);
    let matched = false;
    for (const b of ex.bindings) {
      if (!bindingMatches(ex.type, b, routingKey, headers)) continue;
      matched = true;
      if (b.destination.kind === 'queue') {
        const q = this.#queues.get(b.destination.name);
        if (q !== undefined) out.add(q);
      } else {
        const next = this.#exchanges.get(b.destination.name);
        if (next !== undefined) for (const q of this.#route(next, routingKey, headers, seen)) out.add(q);
      }
    }
    const alternate = ex.arguments['alternate-exchange'];
    // RabbitMQ uses the alternate exchange only when none of this exchange's own bindings matched
    // (a matching exchange-to-exchange binding counts, even if nothing lies behind it).
    if (!matched && typeof alternate === 'string') {
      const ae = this.#exchanges.get(alternate);
      if (ae !== undefined) for (const q of this.#route(ae, routingKey, headers, seen)) out.add(q);
    }
    return out;
  }

  /** Puts a copy in `q`, applying its TTL and length limits. False when the queue refused it (reject-publish). */
  #enqueue(q: MemoryQueue, message: StoredMessage): boolean {
    this.#expire(q);
    const copy: StoredMessage = { ...message, properties: { ...message.properties, headers: cloneTable(message.properties.headers) } };
    const now = this.clock.now();
    const ttls = [q.num('x-message-ttl'), expirationOf(copy.properties.expiration)].filter((t): t is number => t !== undefined);
    const qm: QueuedMessage = { msg: copy, seq: this.#seq++, expiresAt: ttls.length > 0 ? now + Math.min(...ttls) : undefined, deliveryCount: 0, redelivered: false };
    // As RabbitMQ: a message that finds the queue empty and a consumer with room goes straight to
    // it, never counted against the queue's length or TTL.
    if (q.ready.length === 0) {
      const sub = this.#pick(q);
      if (sub !== undefined) {
        const delivery = this.#lend(q, qm, sub);
        this.later(() => sub.deliver(delivery));
        return true;
      }
    }
    const max = q.num('x-max-length');
    const maxBytes = q.num('x-max-length-bytes');
    const overflow = q.arguments['x-overflow'] ?? 'drop-head';
    const full = (extra: number, extraBytes: number): boolean =>
      (max !== undefined && q.ready.length + extra > max) || (maxBytes !== undefined && q.readyBytes + extraBytes > maxBytes);
    // A quorum queue refuses only once it is over its limit, so it may go one message over (as RabbitMQ's do).
    const refuses = q.type === 'quorum' ? full(0, 0) || (max !== undefined && q.ready.length >= max + 1) : full(1, copy.body.length);
    if (overflow !== 'drop-head' && refuses) {
      if (overflow === 'reject-publish-dlx') this.#deadLetter(q, copy, 'maxlen');
      return false;
    }
    q.ready.push(qm);
    while (q.ready.length > 0 && full(0, 0) && (overflow === 'drop-head')) {
      const dropped = q.ready.shift();
      if (dropped !== undefined) this.#deadLetter(q, dropped.msg, 'maxlen');
    }
    this.#expire(q);
    this.#retime(q);
    this.#markDirty(q);
    return true;
  }

  /** The next consumer with room on `q`, round-robin, or undefined. */
  #pick(q: MemoryQueue): Subscriber | undefined {
    for (let i = 0; i < q.subscribers.length; i++) {
      const s = q.subscribers[(q.next + i) % q.subscribers.length];
      if (s !== undefined && (s.prefetch === 0 || s.unacked < s.prefetch)) {
        q.next = (q.next + i + 1) % q.subscribers.length;
        return s;
      }
    }
    return undefined;
  }

  /** Lends a message to a consumer: counted unacked, tracked by its channel. Returns the delivery to hand over. */
  #lend(q: MemoryQueue, qm: QueuedMessage, sub: Subscriber): Inbound {
    q.unacked++;
    sub.unacked++;
    const tag = sub.owner.track(q, qm, sub);
    return toInbound(qm, tag, q.type);
  }

  /** Dead-letters messages at the head whose TTL has passed (RabbitMQ expires from the head only). */
  #expire(q: MemoryQueue): void {
    const now = this.clock.now();
    while (q.ready.length > 0) {
      const head = q.ready[0];
      if (head === undefined || head.expiresAt === undefined || head.expiresAt > now) break;
      q.ready.shift();
      this.#deadLetter(q, head.msg, 'expired');
    }
  }

  /** Sets the queue's one timer for its head's expiry. */
  #retime(q: MemoryQueue): void {
    const at = q.ready[0]?.expiresAt;
    if (at === q.timerAt) return;
    if (q.timer !== undefined) this.clock.clear(q.timer);
    q.timer = undefined;
    q.timerAt = at;
    if (at === undefined) return;
    q.timer = this.clock.set(() => {
      q.timer = undefined;
      q.timerAt = undefined;
      if (this.#queues.get(q.name) !== q) return;
      this.#expire(q);
      this.#retime(q);
      this.#markDirty(q);
      this.emit('activity');
    }, Math.max(0, at - this.clock.now()));
  }

  #deadLetter(q: MemoryQueue, msg: StoredMessage, reason: BrokerDeadLetter['reason']): void {
    const dlx = q.arguments['x-dead-letter-exchange'];
    const reached: string[] = [];
    if (typeof dlx === 'string') {
      const dlKey = q.arguments['x-dead-letter-routing-key'];
      const routingKey = typeof dlKey === 'string' ? dlKey : msg.routingKey;
      const headers = withDeath(msg, q.name, reason, this.clock.now());
      // The per-message TTL goes into x-death as original-expiration, not on with the copy.
      const properties = { ...msg.properties, headers };
      delete properties.expiration;
      const copy: StoredMessage = { body: msg.body, properties, exchange: msg.exchange, routingKey: msg.routingKey };
      const ex = dlx === '' ? undefined : this.#exchanges.get(dlx);
      const targets = dlx === '' ? this.#byName(routingKey) : ex === undefined ? [] : [...this.#route(ex, routingKey, headers, new Set())];
      for (const target of targets) {
        if (isCycle(headers, target.name)) continue;
        if (this.#enqueue(target, { ...copy, exchange: dlx, routingKey })) reached.push(target.name);
      }
    }
    this.emit('dead-lettered', { queue: q.name, reason, message: msg, queues: reached });
  }

  #deleteQueue(q: MemoryQueue): void {
    if (this.#queues.get(q.name) !== q) return;
    this.#queues.delete(q.name);
    if (q.timer !== undefined) this.clock.clear(q.timer);
    for (const ex of this.#exchanges.values()) ex.bindings = ex.bindings.filter((b) => !(b.destination.kind === 'queue' && b.destination.name === q.name));
    const subs = q.subscribers.splice(0);
    q.ready.length = 0;
    for (const s of subs) this.later(() => s.deliver(null));
    this.emit('activity');
  }

  #markDirty(q: MemoryQueue): void {
    this.#dirty.add(q);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    nextTurn(() => this.#pump());
  }

  /** One turn: callbacks to clients in order, then deliveries from every queue that changed. */
  #pump(): void {
    this.#scheduled = false;
    const tasks = this.#tasks;
    this.#tasks = [];
    for (const task of tasks) task();
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    for (const q of dirty) this.#dispatch(q);
    this.emit('activity');
  }

  /**
   * Hands ready messages to consumers with room, round-robin. The deliveries are made after the
   * choosing: a consumer may settle one synchronously (requeue it), and a message given back must
   * wait for the next turn, as it would over a socket, not come round again in this loop.
   */
  #dispatch(q: MemoryQueue): void {
    if (this.#queues.get(q.name) !== q) return;
    this.#expire(q);
    const out: [Subscriber, Inbound][] = [];
    for (;;) {
      this.#expire(q);
      if (q.ready.length === 0) break;
      const chosen = this.#pick(q);
      if (chosen === undefined) break;
      const qm = q.ready.shift();
      if (qm === undefined) break;
      out.push([chosen, this.#lend(q, qm, chosen)]);
    }
    this.#retime(q);
    for (const [sub, message] of out) sub.deliver(message);
  }
}

const DEATH_HEADERS = ['x-death', 'x-first-death-reason', 'x-first-death-queue', 'x-first-death-exchange', 'x-last-death-reason', 'x-last-death-queue', 'x-last-death-exchange'];

function inequivalent(text: string): BrokerRefusal {
  return new BrokerRefusal(406, 'PRECONDITION_FAILED', `inequivalent arg ${text}`);
}

function amqpType(v: unknown): string {
  if (typeof v === 'string') return 'longstr';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'signedint' : 'double';
  return 'table';
}

function describe(v: unknown): string {
  return v === undefined ? 'none' : `the value '${typeof v === 'string' ? v : JSON.stringify(v)}' of type '${amqpType(v)}'`;
}

function argumentMismatch(declared: Record<string, unknown>, current: Record<string, unknown>, where: string): BrokerRefusal | undefined {
  for (const key of new Set([...Object.keys(declared), ...Object.keys(current)])) {
    if (!sameArg(declared[key], current[key])) return inequivalent(`'${key}' ${where}: received ${describe(declared[key])} but current is ${describe(current[key])}`);
  }
  return undefined;
}

function sameArg(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameArgs(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if (!sameArg(a[k], b[k])) return false;
  return true;
}

function expirationOf(expiration: string | undefined): number | undefined {
  if (expiration === undefined) return undefined;
  const n = Number(expiration);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** A deep copy of an AMQP field table, as encoding and decoding it would give (undefined values left out). */
export function cloneTable(table: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(table)) if (v !== undefined) out[k] = cloneValue(v);
  return out;
}

function cloneValue(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(cloneValue);
  if (typeof v === 'object' && v !== null) return cloneTable(v as Record<string, unknown>);
  return v;
}

/** The headers of a dead-lettered copy: `x-death` updated (or started) as RabbitMQ does, and the first-death headers. */
function withDeath(msg: StoredMessage, queue: string, reason: string, now: number): Record<string, unknown> {
  const headers = cloneTable(msg.properties.headers);
  const deaths = Array.isArray(headers['x-death']) ? (headers['x-death'] as Record<string, unknown>[]) : [];
  const i = deaths.findIndex((d) => d.queue === queue && d.reason === reason);
  // As amqplib decodes an AMQP timestamp field: seconds, tagged.
  const time = { '!': 'timestamp', value: Math.floor(now / 1000) };
  const entry = i >= 0 ? deaths.splice(i, 1)[0] : undefined;
  const count = typeof entry?.count === 'number' ? entry.count + 1 : 1;
  const expiration = msg.properties.expiration;
  deaths.unshift({ ...entry, count, reason, queue, time, exchange: msg.exchange, 'routing-keys': [msg.routingKey], ...(expiration !== undefined ? { 'original-expiration': expiration } : {}) });
  headers['x-death'] = deaths;
  if (headers['x-first-death-reason'] === undefined) {
    headers['x-first-death-reason'] = reason;
    headers['x-first-death-queue'] = queue;
    headers['x-first-death-exchange'] = msg.exchange;
  }
  headers['x-last-death-reason'] = reason;
  headers['x-last-death-queue'] = queue;
  headers['x-last-death-exchange'] = msg.exchange;
  return headers;
}

/** RabbitMQ drops a dead-lettered message that would go back to a queue it died in before, unless a rejection broke the cycle. */
function isCycle(headers: Record<string, unknown>, target: string): boolean {
  const deaths = headers['x-death'];
  if (!Array.isArray(deaths)) return false;
  const list = deaths as Record<string, unknown>[];
  if (!list.some((d) => d.queue === target)) return false;
  return !list.some((d) => d.reason === 'rejected');
}

export function toInbound(qm: QueuedMessage, deliveryTag: number, type: 'classic' | 'quorum'): Inbound {
  const p = qm.msg.properties;
  const headers = cloneTable(p.headers);
  if (type === 'quorum') {
    if (qm.deliveryCount > 0) headers['x-delivery-count'] = qm.deliveryCount;
    else delete headers['x-delivery-count'];
  }
  return {
    body: qm.msg.body,
    deliveryTag,
    redelivered: qm.redelivered,
    exchange: qm.msg.exchange,
    routingKey: qm.msg.routingKey,
    messageId: p.messageId,
    correlationId: p.correlationId,
    headers,
    deliveryCount: typeof headers['x-delivery-count'] === 'number' ? headers['x-delivery-count'] : undefined,
    contentType: p.contentType,
    contentEncoding: p.contentEncoding,
    timestamp: p.timestamp,
    type: p.type,
    appId: p.appId,
    replyTo: p.replyTo,
    priority: p.priority,
    persistent: p.persistent === true,
  };
}

