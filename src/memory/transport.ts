import type {
  Channel,
  ChannelEvents,
  ConfirmChannel,
  ConfirmResult,
  ExchangeOptions,
  Inbound,
  Link,
  LinkEvents,
  LinkOptions,
  PublishProperties,
  QueueInfo,
  QueueOptions,
  Transport,
} from '../amqp/transport.js';
import { TypedEmitter } from '../support/events.js';
import { BrokerRefusal, MemoryBroker, toInbound, type ClientChannel, type MemoryBrokerOptions, type MemoryQueue, type QueuedMessage, type Subscriber } from './broker.js';

/** The in-memory transport: `connect({ transport: memory() })`. Its `broker` is what a test inspects and pokes. */
export interface MemoryTransport extends Transport {
  readonly broker: MemoryBroker;
}

/**
 * A transport whose broker lives in this process. Every client connected through the same
 * transport (or given the same `broker`) shares its queues and exchanges. URLs are ignored:
 * there is one vhost and no authentication.
 */
export function memory(options: MemoryBrokerOptions & { broker?: MemoryBroker } = {}): MemoryTransport {
  const broker = options.broker ?? new MemoryBroker(options);
  let ids = 0;
  return {
    name: 'memory',
    defaultUrls: ['amqp://in-memory'],
    broker,
    connect(_url: string, _options: LinkOptions): Promise<Link> {
      if (!broker.running) {
        return Promise.reject(Object.assign(new Error('connect ECONNREFUSED: the in-memory broker is stopped (broker.start() brings it back)'), { code: 'ECONNREFUSED' }));
      }
      return Promise.resolve(new MemoryLink(broker, ++ids));
    },
  };
}

const channelClosed = (): Error => Object.assign(new Error('Channel closed'), { name: 'IllegalOperationError' });

class MemoryLink extends TypedEmitter<LinkEvents> implements Link {
  readonly id: number;
  readonly #broker: MemoryBroker;
  readonly #channels = new Set<MemoryChannel>();
  #closed = false;

  constructor(broker: MemoryBroker, id: number) {
    super();
    this.#broker = broker;
    this.id = id;
    broker.links.add(this);
    const blocked = broker.blocked;
    if (blocked !== undefined) broker.later(() => this.emit('blocked', blocked));
  }

  createChannel(): Promise<Channel> {
    return this.#open(false);
  }

  createConfirmChannel(): Promise<ConfirmChannel> {
    return this.#open(true);
  }

  #open(confirm: boolean): Promise<MemoryChannel> {
    if (this.#closed) return Promise.reject(new Error('Connection closed'));
    const ch = new MemoryChannel(this.#broker, this, confirm, () => this.#channels.delete(ch));
    this.#channels.add(ch);
    return Promise.resolve(ch);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#end(undefined);
    return Promise.resolve();
  }

  forceClose(error: Error): void {
    if (!this.#closed) this.#end(error);
  }

  setBlocked(reason: string | undefined): void {
    if (this.#closed) return;
    this.#broker.later(() => (reason === undefined ? this.emit('unblocked') : this.emit('blocked', reason)));
  }

  #end(error: Error | undefined): void {
    this.#closed = true;
    this.#broker.links.delete(this);
    for (const ch of [...this.#channels]) ch.teardown(undefined);
    this.#broker.dropExclusive(this);
    this.#broker.later(() => this.emit('close', error));
  }
}

interface Lent {
  queue: MemoryQueue;
  qm: QueuedMessage;
  sub: Subscriber | undefined;
}

class MemoryChannel extends TypedEmitter<ChannelEvents> implements ConfirmChannel, ClientChannel {
  readonly link: MemoryLink;
  readonly lateDeliveries = false;
  readonly #broker: MemoryBroker;
  readonly #confirm: boolean;
  readonly #onGone: () => void;
  readonly #lent = new Map<number, Lent>();
  readonly #subs = new Map<string, { queue: string; sub: Subscriber }>();
  readonly #pending = new Map<number, (result: ConfirmResult, closeError: Error | undefined) => void>();
  #nextTag = 1;
  #nextPublish = 1;
  #prefetch = 0;
  #closed = false;
  static #tags = 0;

  constructor(broker: MemoryBroker, link: MemoryLink, confirm: boolean, onGone: () => void) {
    super();
    this.#broker = broker;
    this.link = link;
    this.#confirm = confirm;
    this.#onGone = onGone;
  }

  track(queue: MemoryQueue, qm: QueuedMessage, sub: Subscriber | undefined): number {
    const tag = this.#nextTag++;
    this.#lent.set(tag, { queue, qm, sub });
    return tag;
  }

  /** Runs one synchronous broker operation as an AMQP method: a refusal closes the channel, as RabbitMQ does. */
  #op<T>(fn: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(channelClosed());
    try {
      return Promise.resolve(fn());
    } catch (err) {
      if (err instanceof BrokerRefusal) this.teardown(err);
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  assertExchange(name: string, type: string, options: ExchangeOptions): Promise<void> {
    return this.#op(() => this.#broker.assertExchange(name, type, options));
  }

  assertQueue(name: string, options: QueueOptions): Promise<QueueInfo> {
    return this.#op(() => this.#broker.assertQueue(name, options, this.link));
  }

  checkQueue(name: string): Promise<QueueInfo> {
    return this.#op(() => this.#broker.checkQueue(name, this.link));
  }

  purgeQueue(name: string): Promise<number> {
    return this.#op(() => this.#broker.purgeQueue(name, this.link));
  }

  bindQueue(queue: string, exchange: string, routingKey: string, args: Record<string, unknown>): Promise<void> {
    return this.#op(() => this.#broker.bindQueue(queue, exchange, routingKey, args, this.link));
  }

  prefetch(count: number): Promise<void> {
    return this.#op(() => {
      this.#prefetch = count;
    });
  }

  consume(queue: string, onMessage: (message: Inbound | null) => void): Promise<string> {
    return this.#op(() => {
      const tag = `amq.ctag-memory-${++MemoryChannel.#tags}`;
      const sub = this.#broker.subscribe(queue, this.link, () => ({
        tag,
        owner: this,
        prefetch: this.#prefetch,
        unacked: 0,
        deliver: (m: Inbound | null) => {
          if (this.#closed) return;
          if (m === null) this.#subs.delete(tag);
          onMessage(m);
        },
      }));
      this.#subs.set(tag, { queue, sub });
      return tag;
    });
  }

  cancel(consumerTag: string): Promise<void> {
    return this.#op(() => {
      const entry = this.#subs.get(consumerTag);
      if (entry === undefined) return;
      this.#subs.delete(consumerTag);
      this.#broker.unsubscribe(entry.queue, entry.sub);
    });
  }

  get(queue: string): Promise<Inbound | undefined> {
    return this.#op(() => {
      const got = this.#broker.get(queue, this);
      return got === undefined ? undefined : toInbound(got.qm, got.tag, got.queue.type);
    });
  }

  ack(deliveryTag: number, multiple: boolean): void {
    for (const [, lent] of this.#take(deliveryTag, multiple)) this.#broker.settleAck(lent.queue, lent.sub);
  }

  nack(deliveryTag: number, multiple: boolean, requeue: boolean): void {
    for (const [, lent] of this.#take(deliveryTag, multiple)) this.#broker.settleReturn(lent.queue, lent.qm, lent.sub, requeue);
  }

  /** The lent messages an ack or nack settles; an unknown tag closes the channel (406), as RabbitMQ does. */
  #take(deliveryTag: number, multiple: boolean): [number, Lent][] {
    if (this.#closed) throw channelClosed();
    const taken: [number, Lent][] = [];
    if (multiple) {
      // Tag 0 with multiple: every outstanding delivery, as AMQP says.
      for (const [tag, lent] of this.#lent) if (deliveryTag === 0 || tag <= deliveryTag) taken.push([tag, lent]);
    } else {
      const lent = this.#lent.get(deliveryTag);
      if (lent !== undefined) taken.push([deliveryTag, lent]);
    }
    if (taken.length === 0 && !(multiple && deliveryTag === 0)) {
      this.teardown(new BrokerRefusal(406, 'PRECONDITION_FAILED', `unknown delivery tag ${deliveryTag}`));
      return [];
    }
    for (const [tag] of taken) this.#lent.delete(tag);
    return taken;
  }

  publish(exchange: string, routingKey: string, body: Buffer, properties: PublishProperties, onConfirm: (result: ConfirmResult, closeError: Error | undefined) => void): boolean {
    if (this.#closed) throw channelClosed();
    if (!this.#confirm) throw new Error('publish() needs a confirm channel');
    const seq = this.#nextPublish++;
    this.#pending.set(seq, onConfirm);
    const sent = Buffer.from(body);
    this.#broker.whenUnblocked(() => {
      if (this.#closed) return;
      let result: ReturnType<MemoryBroker['publish']>;
      try {
        result = this.#broker.publish(exchange, routingKey, sent, properties);
      } catch (err) {
        if (err instanceof BrokerRefusal) this.teardown(err);
        else throw err;
        return;
      }
      // A queue that refused it (reject-publish) still counts as a route: the publisher gets a nack, not a return.
      const returned = properties.mandatory === true && !result.routed;
      this.#broker.later(() => {
        if (returned && !this.#closed) {
          this.emit('return', { messageId: properties.messageId, exchange, routingKey, replyCode: 312, replyText: 'NO_ROUTE' });
        }
        const cb = this.#pending.get(seq);
        if (cb !== undefined) {
          this.#pending.delete(seq);
          cb(result.refused ? 'nack' : 'ack', undefined);
        }
        this.#broker.recordPublish({ ...result.message, queues: result.queues, returned });
      });
    });
    return true;
  }

  close(): Promise<void> {
    if (!this.#closed) this.teardown(undefined);
    return Promise.resolve();
  }

  /** The channel is gone: its consumers are removed, what it was lent goes back to its queues, and pending confirms end 'closed'. */
  teardown(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onGone();
    for (const { queue, sub } of this.#subs.values()) this.#broker.unsubscribe(queue, sub);
    this.#subs.clear();
    const lent = [...this.#lent.values()].sort((a, b) => a.qm.seq - b.qm.seq);
    this.#lent.clear();
    for (const l of lent) this.#broker.settleReturn(l.queue, l.qm, l.sub, true);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#broker.later(() => {
      for (const cb of pending) cb('closed', error);
      this.emit('close', error);
    });
  }
}
