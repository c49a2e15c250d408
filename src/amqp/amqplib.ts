import amqp, { type Channel as AmqplibChannel, type ChannelModel, type ConfirmChannel as AmqplibConfirmChannel, type Message } from 'amqplib';
import { messageOf, TlsError } from '../support/errors.js';
import { TypedEmitter } from '../support/events.js';
import type { Logger } from '../support/logger.js';
import { VERSION } from '../support/version.js';
import { redactUrl } from '../support/redact.js';
import { batchSocketWrites } from './batch-writes.js';
import { checkTlsMaterial, speaksTls, tlsSocketOptions } from './tls.js';
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
  Returned,
  Transport,
} from './transport.js';

/** The transport over amqplib: the only module in warren that imports it. */
export const amqplibTransport: Transport = {
  name: 'amqplib',
  async connect(url: string, options: LinkOptions): Promise<Link> {
    const target = new URL(url);
    if (!target.searchParams.has('heartbeat')) target.searchParams.set('heartbeat', String(options.heartbeatSeconds));
    const socketOptions = options.socketOptions;
    const secure = target.protocol === 'amqps:';
    // socketOptions after `tls`: without `tls` its own TLS keys (the older way) still apply; with
    // `tls`, connect() refuses socketOptions that hold any.
    const tlsOptions = secure ? { ...tlsSocketOptions(options.tls), ...socketOptions } : {};
    if (secure) checkTlsMaterial(tlsOptions);
    let model: ChannelModel;
    try {
      model = await amqp.connect(target.toString(), {
        noDelay: true,
        timeout: options.connectTimeoutMs,
        ...tlsOptions,
        ...socketOptions,
        // SASL EXTERNAL (the client certificate), or PLAIN with a login given apart from the URL
        // (amqplib then ignores the URL's userinfo).
        ...(options.mechanism === 'EXTERNAL'
          ? { credentials: amqp.credentials.external() }
          : options.login !== undefined
            ? { credentials: amqp.credentials.plain(options.login.username, options.login.password) }
            : {}),
        clientProperties: {
          connection_name: options.connectionName,
          product: 'warren',
          version: VERSION,
          ...socketOptions.clientProperties,
        },
      });
    } catch (err) {
      // A TLS listener closes a plain AMQP connection without a word (or resets it, when our
      // header is still unread): find out whether that is why.
      if (!secure && closedWithoutAWord(err) && (await speaksTls(target.hostname, Number(target.port || 5672), options.connectTimeoutMs))) {
        throw new TlsError('tls-required', redactUrl(url), { cause: err });
      }
      throw err;
    }
    if (!batchSocketWrites(model)) options.logger.debug('amqplib internals differ from what warren expects; frames are written one by one');
    return new AmqplibLink(model, options.logger);
  },
};

/** The server closed (amqplib's text) or reset the socket before the AMQP handshake was done. */
function closedWithoutAWord(err: unknown): boolean {
  return messageOf(err) === 'Socket closed abruptly during opening handshake' || (err as { code?: unknown } | undefined)?.code === 'ECONNRESET';
}

class AmqplibLink extends TypedEmitter<LinkEvents> implements Link {
  readonly #model: ChannelModel;
  readonly #log: Logger;
  readonly serverVersion: string | undefined;

  constructor(model: ChannelModel, log: Logger) {
    super();
    this.#model = model;
    this.#log = log;
    const version: unknown = model.connection.serverProperties.version;
    this.serverVersion = typeof version === 'string' ? version : undefined;
    // 'close' follows an 'error' with the same error; this listener only keeps the process alive.
    model.on('error', (err: Error) => log.debug({ err }, 'connection error'));
    model.on('close', (err?: Error) => this.emit('close', err));
    model.on('blocked', (reason: string) => this.emit('blocked', reason));
    model.on('unblocked', () => this.emit('unblocked'));
  }

  async createChannel(): Promise<Channel> {
    return new AmqplibChannelAdapter(await this.#model.createChannel(), this.#log);
  }

  async createConfirmChannel(): Promise<ConfirmChannel> {
    return new AmqplibConfirmAdapter(await this.#model.createConfirmChannel(), this.#log);
  }

  close(): Promise<void> {
    return this.#model.close();
  }
}

class AmqplibChannelAdapter<C extends AmqplibChannel = AmqplibChannel> extends TypedEmitter<ChannelEvents> implements Channel {
  protected readonly ch: C;
  /** The broker's reason, once it closed the channel. */
  protected closeError: Error | undefined;

  constructor(ch: C, log: Logger) {
    super();
    this.ch = ch;
    // Emitted just before 'close' when the broker closes the channel: the reason 'close' carries.
    ch.on('error', (err: Error) => {
      this.closeError = err;
    });
    ch.on('close', () => this.emit('close', this.closeError));
    // amqplib throws from its frame handler for a delivery to a consumer tag it no longer knows,
    // which tears the whole connection down; with this listener it reports it instead.
    ch.on('handler-error', (err: unknown) => log.warn({ err }, 'a delivery for a cancelled consumer; the broker redelivers it'));
  }

  async assertExchange(name: string, type: string, options: ExchangeOptions): Promise<void> {
    await this.ch.assertExchange(name, type, options);
  }

  assertQueue(name: string, options: QueueOptions): Promise<QueueInfo> {
    return this.ch.assertQueue(name, options);
  }

  checkQueue(name: string): Promise<QueueInfo> {
    return this.ch.checkQueue(name);
  }

  async purgeQueue(name: string): Promise<number> {
    return (await this.ch.purgeQueue(name)).messageCount;
  }

  async bindQueue(queue: string, exchange: string, routingKey: string, args: Record<string, unknown>): Promise<void> {
    await this.ch.bindQueue(queue, exchange, routingKey, args);
  }

  async prefetch(count: number): Promise<void> {
    await this.ch.prefetch(count, false);
  }

  async consume(queue: string, onMessage: (message: Inbound | null) => void): Promise<string> {
    const reply = await this.ch.consume(queue, (msg) => onMessage(msg === null ? null : new AmqplibInbound(msg)), { noAck: false });
    return reply.consumerTag;
  }

  async cancel(consumerTag: string): Promise<void> {
    // A quorum queue can still deliver a few messages after basic.cancel-ok (amqplib#641,
    // rabbitmq-server#3746); amqplib forgets the consumer at once and then throws on them.
    keepConsumerAfterCancel(this.ch, consumerTag);
    await this.ch.cancel(consumerTag);
  }

  async get(queue: string): Promise<Inbound | undefined> {
    const msg = await this.ch.get(queue, { noAck: false });
    return msg === false ? undefined : new AmqplibInbound(msg);
  }

  ack(deliveryTag: number, multiple: boolean): void {
    this.ch.ack(tagged(deliveryTag), multiple);
  }

  nack(deliveryTag: number, multiple: boolean, requeue: boolean): void {
    this.ch.nack(tagged(deliveryTag), multiple, requeue);
  }

  close(): Promise<void> {
    return this.ch.close();
  }
}

class AmqplibConfirmAdapter extends AmqplibChannelAdapter<AmqplibConfirmChannel> implements ConfirmChannel {
  constructor(ch: AmqplibConfirmChannel, log: Logger) {
    super(ch, log);
    ch.on('drain', () => this.emit('drain'));
    ch.on('return', (msg: Message) => this.emit('return', toReturned(msg)));
  }

  publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: PublishProperties,
    onConfirm: (result: ConfirmResult, closeError: Error | undefined) => void,
  ): boolean {
    return this.ch.publish(exchange, routingKey, body, properties, (err: unknown) => {
      // amqplib answers a basic.ack with null, a basic.nack with Error('message nacked'), and a
      // closed channel with Error('channel closed') (after its 'error' event gave the reason).
      if (err === null || err === undefined) onConfirm('ack', undefined);
      else if (messageOf(err) === 'message nacked') onConfirm('nack', undefined);
      else onConfirm('closed', this.closeError);
    });
  }
}

/** amqplib's ack/nack read only `fields.deliveryTag` of the message they are given. */
function tagged(deliveryTag: number): Message {
  return { fields: { deliveryTag } } as Message;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

/** A delivery as warren sees it: amqplib's loosely typed properties read once, here. One shape for every message. */
class AmqplibInbound implements Inbound {
  readonly body: Buffer;
  readonly deliveryTag: number;
  readonly redelivered: boolean;
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly deliveryCount: number | undefined;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  readonly timestamp: number | undefined;
  readonly type: string | undefined;
  readonly appId: string | undefined;
  readonly replyTo: string | undefined;
  readonly priority: number | undefined;
  readonly persistent: boolean;

  constructor(msg: Message) {
    const f = msg.fields as Message['fields'] & { redelivered?: boolean };
    const p = msg.properties;
    const headers = (p.headers ?? {}) as Record<string, unknown>;
    this.body = msg.content;
    this.deliveryTag = f.deliveryTag;
    this.redelivered = f.redelivered === true;
    this.exchange = f.exchange;
    this.routingKey = f.routingKey;
    this.messageId = str(p.messageId);
    this.correlationId = str(p.correlationId);
    this.headers = headers;
    this.deliveryCount = num(headers['x-delivery-count']);
    this.contentType = str(p.contentType);
    this.contentEncoding = str(p.contentEncoding);
    this.timestamp = num(p.timestamp);
    this.type = str(p.type);
    this.appId = str(p.appId);
    this.replyTo = str(p.replyTo);
    this.priority = num(p.priority);
    this.persistent = p.deliveryMode === 2;
  }
}

function toReturned(msg: Message): Returned {
  // basic.return carries reply-code and reply-text; amqplib's types omit them.
  const f = msg.fields as Message['fields'] & { replyCode?: number; replyText?: string };
  return {
    messageId: str(msg.properties.messageId),
    exchange: f.exchange,
    routingKey: f.routingKey,
    replyCode: f.replyCode ?? 312,
    replyText: f.replyText ?? 'NO_ROUTE',
  };
}

/**
 * Makes amqplib keep dispatching `tag`'s deliveries after its basic.cancel-ok (it forgets the
 * consumer at once, and throws on a later delivery). Only this channel instance is changed, and
 * only for this tag; a channel without the (internal) method is left alone.
 */
function keepConsumerAfterCancel(ch: AmqplibChannel, tag: string): void {
  const internal = ch as unknown as { unregisterConsumer?: (t: string) => void };
  const original = internal.unregisterConsumer;
  if (typeof original !== 'function') return;
  internal.unregisterConsumer = (t: string) => {
    if (t !== tag) original.call(ch, t);
  };
}
