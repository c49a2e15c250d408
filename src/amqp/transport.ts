import type { Logger } from '../support/logger.js';

/**
 * The transport seam: the small set of AMQP operations warren uses, and nothing else. amqplib
 * implements it (amqp/amqplib.ts); an in-memory transport can implement it too. Everything
 * above amqp/ talks to a broker only through these interfaces, and sees deliveries only as
 * `Inbound` values.
 */

/** Opens links (connections) to a broker. */
export interface Transport {
  /** Shown in logs: which implementation this is. */
  readonly name: string;
  /** The URLs connect() uses when given none: set by a transport that needs no broker address (the in-memory one). */
  readonly defaultUrls?: readonly string[];
  /** Opens one connection, handshake done. Rejects with the transport's own error (see amqp/reply-codes.ts). */
  connect(url: string, options: LinkOptions): Promise<Link>;
}

/** Options for the socket under a link: TLS material for `amqps://`, keep-alive, and anything else Node's `net` / `tls` take. */
export interface SocketOptions {
  ca?: string | Buffer | (string | Buffer)[];
  cert?: string | Buffer | (string | Buffer)[];
  key?: string | Buffer | (string | Buffer)[];
  passphrase?: string;
  servername?: string;
  rejectUnauthorized?: boolean;
  keepAlive?: boolean;
  keepAliveDelay?: number;
  /** AMQP client properties sent at connection (warren sets `connection_name`, `product`, `version`). */
  clientProperties?: Record<string, unknown>;
  [option: string]: unknown;
}

/** A PEM text (or a Buffer of one), or several. */
export type Pem = string | Buffer | (string | Buffer)[];

/** TLS for `amqps://` URLs, with warren's defaults filled in (see ConnectOptions' `tls`). */
export interface TlsOptions {
  ca?: Pem | undefined;
  cert?: Pem | undefined;
  key?: Pem | undefined;
  pfx?: Pem | undefined;
  passphrase?: string | undefined;
  servername?: string | undefined;
  rejectUnauthorized: boolean;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
}

/** How the client logs in: PLAIN (user name and password from the URL), or EXTERNAL (the client certificate names the user). */
export type AuthMechanism = 'PLAIN' | 'EXTERNAL';

export interface LinkOptions {
  /** The client-provided connection name the management UI shows. */
  connectionName: string;
  /** 0 turns heartbeats off. */
  heartbeatSeconds: number;
  connectTimeoutMs: number;
  /** Extra socket options (TLS `ca`, `cert`, `key`, …), passed through to the socket. */
  socketOptions: SocketOptions;
  /** TLS for an `amqps://` URL (ignored for `amqp://`); `tls` wins over socketOptions. */
  tls: TlsOptions;
  mechanism: AuthMechanism;
  logger: Logger;
  /**
   * The user name and password to log in with, when they travel apart from the URL (the
   * `credentials` option; the URL then has no userinfo). Never to be logged.
   */
  login?: { username: string; password: string };
}

/** Events of a link. `close` comes once, with the reason when the broker or the network ended it. */
export interface LinkEvents {
  close: [error: Error | undefined];
  /** The broker stopped reading from this connection (memory or disk alarm). */
  blocked: [reason: string];
  unblocked: [];
}

export interface Emits<Events extends { [K in keyof Events]: unknown[] }> {
  on<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): unknown;
  once<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): unknown;
  off<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): unknown;
}

/** One connection to a broker. */
export interface Link extends Emits<LinkEvents> {
  /** The broker's version as it announced it at connection (`server-properties.version`, e.g. '4.0.5'), when it did. */
  readonly serverVersion?: string | undefined;
  createChannel(): Promise<Channel>;
  createConfirmChannel(): Promise<ConfirmChannel>;
  /** Closes the connection; resolves when the broker acknowledged it (callers bound the wait, see closeWithin). */
  close(): Promise<void>;
}

export interface ChannelEvents {
  /** The channel is gone. `error` is the broker's reason when the broker closed it (406, 404, …), else undefined. */
  close: [error: Error | undefined];
  /** The socket accepts writes again after `publish()` returned false. */
  drain: [];
  /** A mandatory message no queue took (basic.return). */
  return: [message: Returned];
}

export interface ExchangeOptions {
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  arguments: Record<string, unknown>;
}

export interface QueueOptions {
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  arguments: Record<string, unknown>;
}

export interface QueueInfo {
  queue: string;
  messageCount: number;
  consumerCount: number;
}

/** The AMQP basic properties warren sends. */
export interface PublishProperties {
  messageId: string;
  persistent?: boolean;
  mandatory?: boolean;
  contentType?: string;
  contentEncoding?: string;
  correlationId?: string;
  replyTo?: string;
  /** Per-message TTL in ms, as AMQP carries it: a string. */
  expiration?: string;
  priority?: number;
  /** Seconds since the epoch. */
  timestamp?: number;
  type?: string;
  appId?: string;
  headers?: Record<string, unknown>;
}

/** What became of a message published on a confirm channel. */
export type ConfirmResult = 'ack' | 'nack' | 'closed';

/** A message the broker delivered (basic.deliver) or handed out (basic.get), read once at the boundary. */
export interface Inbound {
  readonly body: Buffer;
  readonly deliveryTag: number;
  /** The broker delivered it before without an ack. */
  readonly redelivered: boolean;
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  /** The message's headers; an empty object when it has none. */
  readonly headers: Readonly<Record<string, unknown>>;
  /** `x-delivery-count` (quorum queues): earlier deliveries of this message; undefined where the broker sets none. */
  readonly deliveryCount: number | undefined;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  /** Seconds since the epoch, as AMQP carries it. */
  readonly timestamp: number | undefined;
  readonly type: string | undefined;
  readonly appId: string | undefined;
  readonly replyTo: string | undefined;
  readonly priority: number | undefined;
  readonly persistent: boolean;
}

/** A mandatory message that no queue took, as the broker returned it. */
export interface Returned {
  readonly messageId: string | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly replyCode: number;
  readonly replyText: string;
}

/** One AMQP channel. Operations the broker refuses reject, and the channel then closes. */
export interface Channel extends Emits<ChannelEvents> {
  /**
   * False when no delivery can follow a cancel's reply (the in-memory transport), so a stopping
   * consumer need not wait for late ones. RabbitMQ's quorum queues may send some: left undefined.
   */
  readonly lateDeliveries?: boolean;
  assertExchange(name: string, type: string, options: ExchangeOptions): Promise<void>;
  assertQueue(name: string, options: QueueOptions): Promise<QueueInfo>;
  /** Rejects (404, closing the channel) when the queue does not exist. */
  checkQueue(name: string): Promise<QueueInfo>;
  /** Removes every ready message of the queue; resolves with how many. */
  purgeQueue(name: string): Promise<number>;
  bindQueue(queue: string, exchange: string, routingKey: string, args: Record<string, unknown>): Promise<void>;
  /** Per-consumer prefetch (basic.qos with global false). */
  prefetch(count: number): Promise<void>;
  /**
   * Subscribes with acks on. `onMessage` gets each delivery, or null when the broker cancelled the
   * consumer (its queue was deleted, or moved). Resolves with the consumer tag.
   */
  consume(queue: string, onMessage: (message: Inbound | null) => void): Promise<string>;
  /**
   * Cancels a subscription. Deliveries the broker sent before it saw the cancel still reach
   * `onMessage` until the channel closes (a quorum queue may send some after cancel-ok).
   */
  cancel(consumerTag: string): Promise<void>;
  /** basic.get with acks on: a message (to ack or nack later), or undefined when the queue is empty. */
  get(queue: string): Promise<Inbound | undefined>;
  ack(deliveryTag: number, multiple: boolean): void;
  nack(deliveryTag: number, multiple: boolean, requeue: boolean): void;
  close(): Promise<void>;
}

/** A channel in confirm mode: every publish is answered by the broker. */
export interface ConfirmChannel extends Channel {
  /**
   * Sends a message. `onConfirm` is called once: 'ack' (the broker has it), 'nack' (it refused
   * it) or 'closed' (the channel closed first; the broker may or may not have it), and then
   * with the broker's reason for closing the channel when it gave one. Returns false when the
   * socket's buffer is full: wait for 'drain'. Throws RangeError or TypeError for a message that
   * cannot be encoded, and another error when the channel is closed; either way nothing was sent.
   */
  publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: PublishProperties,
    onConfirm: (result: ConfirmResult, closeError: Error | undefined) => void,
  ): boolean;
}
