/**
 * A scripted fake of the transport seam (src/amqp/transport.ts), for unit tests of warren's own
 * logic — the Publisher, the consumer pipeline — with no broker. It is NOT a broker: it routes
 * nothing, stores nothing and never answers on its own. It records every call warren makes
 * (`frames`, `published`), and the test plays the broker's part, one step at a time:
 *
 * - Confirms: by default NOTHING is confirmed until the test says so (`m.ack()`, `m.nack()`,
 *   `confirmAll()`); `new ScriptedTransport({ autoConfirm: true })` acks each publish on the
 *   microtask after it is sent.
 * - `m.returnUnroutable()`: basic.return, then the ack, in the order a broker sends them.
 * - `channel.closeByBroker(404, "NOT_FOUND - no exchange 'x' in vhost '/'")`, `link.drop()`,
 *   `link.block()`: closes and alarms, with amqplib's error text and numeric `code`.
 * - `deliver(queue, {...})`, `cancelConsumer(queue)` (the null delivery), `fillSocket()` / `drain()`.
 * - `failNext('connect' | 'channel' | 'publish', err)`, `hold('connect' | 'channel')`.
 *
 * Where it behaves like amqplib (src/amqp/amqplib.ts), on purpose: a channel the broker closes
 * answers its unconfirmed publishes 'closed' with the broker's error, in order, then emits 'close'
 * with it; a dropped link closes its channels first (no error), then emits 'close' with the error;
 * calls on a closed channel throw; `cancel()` keeps delivering until the channel closes. And like
 * RabbitMQ it closes a channel (406) that settles an unknown delivery tag, so a double ack shows.
 */
import { replyCodeName } from '../../src/amqp/reply-codes.js';
import type { Channel, ChannelEvents, ConfirmChannel, ConfirmResult, ExchangeOptions, Inbound, Link, LinkEvents, LinkOptions, PublishProperties, QueueInfo } from '../../src/amqp/transport.js';
import type { QueueOptions, Transport } from '../../src/amqp/transport.js';
import { TypedEmitter } from '../../src/support/events.js';

type Failing = 'connect' | 'channel' | 'publish';

/** One call warren made, as recorded. `link` / `channel` are the fake's own ids. */
export type Frame =
  | { op: 'connect'; link: number; connectionName: string }
  | { op: 'open'; link: number; channel: number; confirm: boolean }
  | { op: 'assertExchange'; channel: number; name: string; type: string }
  | { op: 'assertQueue'; channel: number; name: string; arguments: Record<string, unknown> }
  | { op: 'checkQueue'; channel: number; name: string }
  | { op: 'purgeQueue'; channel: number; name: string }
  | { op: 'bindQueue'; channel: number; name: string; exchange: string; routingKey: string }
  | { op: 'prefetch'; channel: number; count: number }
  | { op: 'consume'; channel: number; name: string; consumerTag: string }
  | { op: 'cancel'; channel: number; consumerTag: string }
  | { op: 'get'; channel: number; name: string }
  | { op: 'publish'; channel: number; message: SentMessage }
  | { op: 'ack'; channel: number; deliveryTag: number; multiple: boolean }
  | { op: 'nack'; channel: number; deliveryTag: number; multiple: boolean; requeue: boolean }
  | { op: 'close'; channel: number; by: 'client' | 'broker' | 'link'; error: Error | undefined }
  | { op: 'close-link'; link: number; by: 'client' | 'broker'; error: Error | undefined }
  /** A connect(), createChannel() or publish() the test made fail (see `failNext()`). */
  | { op: 'failed'; what: Failing; error: Error };

export type Op = Frame['op'];

/** A delivery as the test writes it; everything else gets a plain default. */
export interface DeliveryInput {
  /** A Buffer or a string is the body as is; anything else is sent as its JSON. */
  body: unknown;
  headers?: Record<string, unknown>;
  messageId?: string;
  /** Default 'application/json'. */
  contentType?: string;
  redelivered?: boolean;
}

/** The error amqplib raises when the broker closes a channel or connection: its text, and `code`. */
export function brokerError(code: number, text: string, scope: 'channel' | 'connection' = 'channel'): Error & { code: number } {
  const name = (replyCodeName(code) ?? 'UNKNOWN').replace(/_/g, '-');
  const prefix = scope === 'channel' ? 'Channel closed by server' : 'Connection closed';
  return Object.assign(new Error(`${prefix}: ${code} (${name}) with message "${text}"`), { code });
}

/** A message warren published, and the broker's answer once the test gave one. */
export class SentMessage {
  result: ConfirmResult | undefined = undefined;

  constructor(readonly channel: ScriptedChannel, readonly exchange: string, readonly routingKey: string, readonly body: Buffer,
              readonly properties: PublishProperties, readonly onConfirm: (result: ConfirmResult, closeError: Error | undefined) => void) {}

  get messageId(): string { return this.properties.messageId; }
  get headers(): Record<string, unknown> { return this.properties.headers ?? {}; }
  json(): unknown { return JSON.parse(this.body.toString('utf8')); }
  ack(): void { this.channel.answer(this, 'ack'); }
  nack(): void { this.channel.answer(this, 'nack'); }

  /** basic.return (no queue took it), then the ack: the order a broker sends them in. */
  returnUnroutable(replyCode = 312, replyText = 'NO_ROUTE'): void {
    const { messageId, exchange, routingKey } = this;
    this.channel.returned({ messageId, exchange, routingKey, replyCode, replyText });
    this.ack();
  }
}

export class ScriptedChannel extends TypedEmitter<ChannelEvents> implements ConfirmChannel {
  closed = false;
  #writable = true;
  #nextTag = 1;
  #nextConsumer = 1;
  /** Delivery tags handed out and not yet acked or nacked. */
  readonly #unsettled = new Set<number>();
  /** Consumers by tag: their queue and callback. */
  readonly subscribers = new Map<string, { queue: string; onMessage: (message: Inbound | null) => void }>();
  readonly #unconfirmed: SentMessage[] = [];

  constructor(readonly link: ScriptedLink, readonly id: number, readonly confirm: boolean) {
    super();
  }

  /** Records a call on this channel, or throws as amqplib does on a closed one. */
  #call(frame: Frame): void {
    if (this.closed) throw new Error('Channel closed');
    this.link.transport.record(frame);
  }

  // Declarations are recorded and succeed: the fake keeps no entities (queues report 0 messages).
  async assertExchange(name: string, type: string, _o: ExchangeOptions): Promise<void> { this.#call({ op: 'assertExchange', channel: this.id, name, type }); }
  async assertQueue(name: string, o: QueueOptions): Promise<QueueInfo> { this.#call({ op: 'assertQueue', channel: this.id, name, arguments: o.arguments }); return empty(name); }
  async checkQueue(name: string): Promise<QueueInfo> { this.#call({ op: 'checkQueue', channel: this.id, name }); return empty(name); }
  async purgeQueue(name: string): Promise<number> { this.#call({ op: 'purgeQueue', channel: this.id, name }); return 0; }
  async bindQueue(name: string, exchange: string, routingKey: string): Promise<void> { this.#call({ op: 'bindQueue', channel: this.id, name, exchange, routingKey }); }
  async prefetch(count: number): Promise<void> { this.#call({ op: 'prefetch', channel: this.id, count }); }
  /** Recorded only: as with amqplib's adapter, deliveries still reach the consumer until the channel closes. */
  async cancel(consumerTag: string): Promise<void> { this.#call({ op: 'cancel', channel: this.id, consumerTag }); }
  /** basic.get finds every queue empty: the fake stores nothing. */
  async get(name: string): Promise<Inbound | undefined> { this.#call({ op: 'get', channel: this.id, name }); return undefined; }

  async consume(queue: string, onMessage: (message: Inbound | null) => void): Promise<string> {
    const consumerTag = `ctag-${this.id}.${this.#nextConsumer++}`;
    this.#call({ op: 'consume', channel: this.id, name: queue, consumerTag });
    this.subscribers.set(consumerTag, { queue, onMessage });
    return consumerTag;
  }

  ack(deliveryTag: number, multiple: boolean): void { this.#settle({ op: 'ack', channel: this.id, deliveryTag, multiple }); }
  nack(deliveryTag: number, multiple: boolean, requeue: boolean): void { this.#settle({ op: 'nack', channel: this.id, deliveryTag, multiple, requeue }); }

  #settle(frame: Extract<Frame, { op: 'ack' | 'nack' }>): void {
    this.#call(frame);
    const { deliveryTag: tag, multiple } = frame;
    if (!this.#unsettled.has(tag)) {
      // RabbitMQ's answer to an unknown (e.g. already acked) tag, which arrives a little later.
      queueMicrotask(() => this.end('broker', brokerError(406, `PRECONDITION_FAILED - unknown delivery tag ${tag}`)));
      return;
    }
    for (const t of this.#unsettled) if (t === tag || (multiple && t < tag)) this.#unsettled.delete(t);
  }

  async close(): Promise<void> {
    if (this.closed) throw new Error('Channel closed');
    await Promise.resolve(); // the broker's close-ok comes later
    this.end('client', undefined);
  }

  publish(exchange: string, routingKey: string, body: Buffer, properties: PublishProperties, onConfirm: SentMessage['onConfirm']): boolean {
    if (this.closed) throw new Error('Channel closed');
    const t = this.link.transport;
    const failure = t.takeFailure('publish');
    if (failure !== undefined) throw failure;
    const message = new SentMessage(this, exchange, routingKey, body, properties, onConfirm);
    this.#unconfirmed.push(message);
    t.published.push(message);
    t.record({ op: 'publish', channel: this.id, message });
    if (t.autoConfirm) queueMicrotask(() => message.result === undefined && !this.closed && message.ack());
    return this.#writable;
  }

  /** The broker confirms (or refuses) one message. */
  answer(message: SentMessage, result: 'ack' | 'nack'): void {
    const i = this.#unconfirmed.indexOf(message);
    if (i < 0) throw new Error(`scripted-transport: message ${message.messageId} is not waiting for a confirm on channel ${this.id}`);
    this.#unconfirmed.splice(i, 1);
    message.result = result;
    message.onConfirm(result, undefined);
  }

  returned(message: ChannelEvents['return'][0]): void { this.emit('return', message); }
  /** From now on publish() returns false (the socket's buffer is full), until `drain()`. */
  fillSocket(): void { this.#writable = false; }
  drain(): void { this.#writable = true; this.emit('drain'); }
  closeByBroker(code: number, text: string): void { this.end('broker', brokerError(code, text)); }

  /** basic.deliver to this channel's consumer of `queue`; returns what it delivered. */
  deliver(queue: string, input: DeliveryInput): Inbound {
    const sub = [...this.subscribers.values()].find((s) => s.queue === queue);
    if (sub === undefined || this.closed) throw new Error(`scripted-transport: no consumer of '${queue}' on channel ${this.id}`);
    const deliveryTag = this.#nextTag++;
    this.#unsettled.add(deliveryTag);
    const msg = inbound(queue, deliveryTag, input);
    sub.onMessage(msg);
    return msg;
  }

  /** basic.cancel from the broker (its queue was deleted): the consumer's callback gets null. */
  cancelByBroker(queue: string): void {
    for (const [tag, sub] of this.subscribers) {
      if (sub.queue !== queue) continue;
      this.subscribers.delete(tag);
      sub.onMessage(null);
    }
  }

  /** The channel is gone: unconfirmed publishes are answered 'closed' (with the broker's reason), in order; then 'close'. */
  end(by: 'client' | 'broker' | 'link', error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.link.transport.record({ op: 'close', channel: this.id, by, error });
    this.subscribers.clear();
    this.#unsettled.clear();
    for (const m of this.#unconfirmed.splice(0)) {
      m.result = 'closed';
      m.onConfirm('closed', error);
    }
    this.emit('close', error);
  }
}

const empty = (queue: string): QueueInfo => ({ queue, messageCount: 0, consumerCount: 0 });

function inbound(queue: string, deliveryTag: number, input: DeliveryInput): Inbound {
  const { body, headers = {} } = input;
  const count = headers['x-delivery-count'];
  // As delivered through the default exchange, straight to the queue; unset properties undefined.
  return {
    body: Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8'),
    deliveryTag, redelivered: input.redelivered ?? false, exchange: '', routingKey: queue, headers, persistent: true,
    messageId: input.messageId ?? `${queue}-${deliveryTag}`,
    deliveryCount: typeof count === 'number' ? count : undefined,
    contentType: input.contentType ?? 'application/json',
    correlationId: undefined, contentEncoding: undefined, timestamp: undefined, type: undefined, appId: undefined, replyTo: undefined, priority: undefined,
  };
}

export class ScriptedLink extends TypedEmitter<LinkEvents> implements Link {
  /** 'publish' or 'consume': the suffix warren gives the connection name. */
  readonly role: string;
  readonly channels: ScriptedChannel[] = [];
  closed = false;

  constructor(readonly transport: ScriptedTransport, readonly id: number, connectionName: string) {
    super();
    this.role = connectionName.slice(connectionName.lastIndexOf(':') + 1);
  }

  createChannel(): Promise<Channel> { return this.#open(false); }
  createConfirmChannel(): Promise<ConfirmChannel> { return this.#open(true); }

  async #open(confirm: boolean): Promise<ScriptedChannel> {
    await this.transport.held('channel');
    if (this.closed) throw new Error('Connection closed');
    const failure = this.transport.takeFailure('channel');
    if (failure !== undefined) throw failure;
    const ch = new ScriptedChannel(this, this.transport.nextId(), confirm);
    this.channels.push(ch);
    this.transport.record({ op: 'open', link: this.id, channel: ch.id, confirm });
    return ch;
  }

  async close(): Promise<void> {
    await Promise.resolve(); // the broker's close-ok comes later
    this.#end('client', undefined);
  }

  /** The connection is lost: its channels close (without an error, as amqplib reports them), then the link, with `error`. */
  drop(error: Error = brokerError(320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'", 'connection')): void {
    this.#end('broker', error);
  }

  block(reason = 'low on memory'): void { this.emit('blocked', reason); }
  unblock(): void { this.emit('unblocked'); }

  #end(by: 'client' | 'broker', error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    for (const ch of this.channels) ch.end('link', undefined);
    this.transport.record({ op: 'close-link', link: this.id, by, error });
    this.emit('close', error);
  }
}

export class ScriptedTransport implements Transport {
  readonly name = 'scripted';
  readonly autoConfirm: boolean;
  /** Every call warren made, in order. */
  readonly frames: Frame[] = [];
  readonly links: ScriptedLink[] = [];
  /** Every message published, on any channel, in order. */
  readonly published: SentMessage[] = [];
  readonly #failures: Record<Failing, Error[]> = { connect: [], channel: [], publish: [] };
  readonly #holds = new Map<'connect' | 'channel', Promise<void>>();
  readonly #checks = new Set<() => void>();
  #ids = 0;

  constructor(options: { autoConfirm?: boolean } = {}) { this.autoConfirm = options.autoConfirm ?? false; }

  async connect(_url: string, options: LinkOptions): Promise<Link> {
    await this.held('connect');
    const failure = this.takeFailure('connect');
    if (failure !== undefined) throw failure;
    const link = new ScriptedLink(this, this.nextId(), options.connectionName);
    this.links.push(link);
    this.record({ op: 'connect', link: link.id, connectionName: options.connectionName });
    return link;
  }

  // ---- the broker's side, played by the test ----

  /** The next connect(), createChannel() or publish() fails with `error` (publish() throws it). */
  failNext(what: Failing, error: Error): void { this.#failures[what].push(error); }

  /** connect() / createChannel() wait until the returned function is called. */
  hold(what: 'connect' | 'channel'): () => void {
    let release!: () => void;
    this.#holds.set(what, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.#holds.delete(what);
      release();
    };
  }

  /** The open link warren uses for `role`. */
  link(role: 'publish' | 'consume'): ScriptedLink {
    const link = this.links.findLast((l) => l.role === role && !l.closed);
    if (link === undefined) throw new Error(`scripted-transport: no open ${role} link`);
    return link;
  }

  /** The open confirm channel of the publish link: the publisher's. */
  publishChannel(): ScriptedChannel {
    const ch = this.link('publish').channels.findLast((c) => c.confirm && !c.closed);
    if (ch === undefined) throw new Error('scripted-transport: no open publish channel');
    return ch;
  }

  /** The open channel consuming `queue`. */
  consumerChannel(queue: string): ScriptedChannel {
    const ch = this.links.flatMap((l) => l.channels).findLast((c) => !c.closed && [...c.subscribers.values()].some((s) => s.queue === queue));
    if (ch === undefined) throw new Error(`scripted-transport: nothing consumes '${queue}'`);
    return ch;
  }

  deliver(queue: string, input: DeliveryInput): Inbound { return this.consumerChannel(queue).deliver(queue, input); }
  cancelConsumer(queue: string): void { this.consumerChannel(queue).cancelByBroker(queue); }

  /** Answers every message waiting for a confirm, oldest first. */
  confirmAll(result: 'ack' | 'nack' = 'ack'): void {
    for (const m of this.published.filter((p) => p.result === undefined && !p.channel.closed)) m.channel.answer(m, result);
  }

  of<K extends Op>(op: K): Extract<Frame, { op: K }>[] {
    return this.frames.filter((f): f is Extract<Frame, { op: K }> => f.op === op);
  }

  /** Resolves once `condition` holds: checked now and after every call warren makes. Rejects after `ms`, naming `what`. */
  waitFor(condition: () => boolean, what: string, ms = 2000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return;
        this.#checks.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#checks.delete(check);
        reject(new Error(`scripted-transport: no ${what} within ${ms} ms (last calls: ${this.frames.slice(-8).map((f) => f.op).join(', ')})`));
      }, ms);
      this.#checks.add(check);
    });
  }

  // ---- used by the links and channels ----

  record(frame: Frame): void {
    this.frames.push(frame);
    for (const check of [...this.#checks]) check();
  }

  nextId(): number { return ++this.#ids; }

  takeFailure(what: Failing): Error | undefined {
    const error = this.#failures[what].shift();
    if (error !== undefined) this.record({ op: 'failed', what, error });
    return error;
  }

  async held(what: 'connect' | 'channel'): Promise<void> { await this.#holds.get(what); }
}
