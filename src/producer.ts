import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import { backoffDelay, defaultBackoff } from './backoff.js';
import { closeWithin, CLOSE_WAIT_MS, type ConnectionManager } from './connection.js';
import {
  amqpCode,
  brokerText,
  ClosedError,
  ConfigError,
  MessageTooLargeError,
  messageOf,
  PublishBufferFullError,
  PublishError,
  PublishNackedError,
  PublishTimeoutError,
  UnroutableError,
} from './errors.js';
import type { Logger } from './logger.js';
import { PublishBuffer, type Pending } from './publish-buffer.js';
import { encodeJson, validatePayload, type MessageContract, type PayloadInput } from './message.js';

/** Per-call options of `publish()`. */
export interface PublishOptions {
  /** Defaults to a random UUID. Re-publishes after a reconnect keep it, so consumers can deduplicate. */
  messageId?: string;
  correlationId?: string;
  headers?: Record<string, unknown>;
  /** Defaults to now. */
  timestamp?: Date;
  /** Overrides the contract's routing key. */
  routingKey?: string;
  /** Per-message TTL in ms. */
  expirationMs?: number;
  priority?: number;
  replyTo?: string;
  /** Override the contract's `persistent` / `mandatory`. */
  persistent?: boolean;
  mandatory?: boolean;
  /** Overrides `publisher.timeoutMs` for this message. */
  timeoutMs?: number;
}

/** The publisher's buffer and window, as `warren.health().publisher` shows them. */
export interface PublisherStats {
  /** Sent and waiting for the broker's confirm. */
  inFlight: number;
  /** Waiting to be sent (disconnected, blocked, or the window is full). */
  buffered: number;
  bufferedBytes: number;
  /** whenFull 'wait': publishes waiting for room in the buffer. */
  waitingForRoom: number;
}

/** What a confirmed publish resolves with. */
export interface PublishReceipt {
  messageId: string;
}

export interface PublisherSettings {
  /** Messages sent and not yet confirmed, at most. */
  maxInFlight: number;
  /** Deadline for a publish to be confirmed, from the call, in ms. */
  timeoutMs: number;
  /** Messages waiting to be sent (while disconnected, blocked, or the window is full), at most. */
  maxBufferedMessages: number;
  /** Bytes of message bodies waiting to be sent, at most. */
  maxBufferedBytes: number;
  /** Largest body accepted, in bytes. */
  maxMessageBytes: number;
  /** A publish that finds the buffer full: 'reject' at once, or 'wait' for room until its deadline. */
  whenFull: 'reject' | 'wait';
  /** Sent as the AMQP app-id property. */
  appId: string;
}

const SWEEP_INTERVAL_MS = 100;

/**
 * Publishes on a confirm channel of the publish connection. Messages are pipelined up to
 * `maxInFlight`, wait in a bounded buffer while the channel is down, blocked or the socket is
 * full, and are re-published (same messageId) when the channel was lost before their confirm.
 */
export class Publisher {
  readonly #conn: ConnectionManager;
  readonly #settings: PublisherSettings;
  readonly #log: Logger;
  readonly #buffer: PublishBuffer;
  #inFlight = new Set<Pending>();
  #channel: ConfirmChannel | undefined;
  #opening = false;
  #writable = true;
  #channelFailures = 0;
  #reopenTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  /** close() was called: no new publishes; accepted ones still go out. */
  #closing = false;
  /** close() finished: the channel is gone for good. */
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  #readyWaiters: (() => void)[] = [];

  constructor(conn: ConnectionManager, settings: PublisherSettings, logger: Logger) {
    this.#conn = conn;
    this.#settings = settings;
    this.#buffer = new PublishBuffer(settings.maxBufferedMessages, settings.maxBufferedBytes);
    this.#log = logger.child({ component: 'publisher' });
    conn.on('open', (c) => this.#openChannel(c));
    conn.on('unblocked', () => this.#pump());
    const c = conn.connection;
    if (c !== undefined) this.#openChannel(c);
  }

  /** Resolves once the publish channel is open (connect() waits for it, so the first publish goes straight out). */
  ready(): Promise<void> {
    if (this.#channel !== undefined || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** Messages accepted by `publish()` and not yet settled. */
  get pending(): number {
    return this.#buffer.size + this.#inFlight.size + this.#buffer.waitingForRoom;
  }

  /** What the publisher holds now: for health() and dashboards. */
  stats(): PublisherStats {
    return {
      inFlight: this.#inFlight.size,
      buffered: this.#buffer.size,
      bufferedBytes: this.#buffer.bytes,
      waitingForRoom: this.#buffer.waitingForRoom,
    };
  }

  /**
   * Validates, encodes and publishes a message. Resolves only after the broker confirms it;
   * rejects with ValidationError, MessageTooLargeError, PublishBufferFullError, UnroutableError,
   * PublishNackedError, PublishError, PublishTimeoutError or ClosedError.
   */
  publish<M extends MessageContract>(contract: M, payload: PayloadInput<M>, options: PublishOptions = {}): Promise<PublishReceipt> {
    try {
      return this.#publish(contract, payload, options);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #publish(contract: MessageContract, payload: unknown, options: PublishOptions): Promise<PublishReceipt> {
    const messageId = options.messageId ?? randomUUID();
    const exchange = contract.exchange;
    const routingKey = options.routingKey ?? contract.routingKey;
    if (this.#closing) {
      return Promise.reject(new ClosedError(`Cannot publish message ${messageId} ('${contract.name}'): warren is closing.`));
    }
    checkOptions(options);
    validatePayload(contract, payload);
    const json = encodeJson(contract, payload);
    // Kept as text until sent: holding each unconfirmed body as a Buffer pins Node's shared 8 KiB
    // buffer pool slabs, which costs far more garbage collection than the string does.
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > this.#settings.maxMessageBytes) throw new MessageTooLargeError(contract.name, bytes, this.#settings.maxMessageBytes);

    const amqpOptions: Options.Publish & { messageId: string } = {
      persistent: options.persistent ?? contract.persistent,
      mandatory: options.mandatory ?? contract.mandatory,
      contentType: contract.contentType,
      messageId,
      type: contract.name,
      appId: this.#settings.appId,
      timestamp: Math.floor((options.timestamp?.getTime() ?? Date.now()) / 1000),
    };
    if (options.correlationId !== undefined) amqpOptions.correlationId = options.correlationId;
    if (options.headers !== undefined) amqpOptions.headers = options.headers;
    if (options.expirationMs !== undefined) amqpOptions.expiration = String(options.expirationMs);
    if (options.priority !== undefined) amqpOptions.priority = options.priority;
    if (options.replyTo !== undefined) amqpOptions.replyTo = options.replyTo;

    return this.#enqueue(exchange, routingKey, json, bytes, amqpOptions, options.timeoutMs ?? this.#settings.timeoutMs);
  }

  /**
   * Publishes an already encoded message with confirms (warren's own copies: retries, dead
   * letters, replays). `properties.messageId` must be set. Same errors as `publish()`.
   */
  publishRaw(exchange: string, routingKey: string, content: Buffer, properties: Options.Publish & { messageId: string }): Promise<PublishReceipt> {
    try {
      return this.#enqueue(exchange, routingKey, content, content.length, properties, this.#settings.timeoutMs);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #enqueue(exchange: string, routingKey: string, body: string | Buffer, bytes: number, amqpOptions: Options.Publish & { messageId: string }, timeoutMs: number): Promise<PublishReceipt> {
    const messageId = amqpOptions.messageId;
    const full = this.#buffer.waitingForRoom > 0 ? 'earlier publishes waiting for room' : this.#buffer.fullBecause(bytes);
    if (full !== undefined && this.#settings.whenFull === 'reject') throw new PublishBufferFullError({ messageId, exchange, routingKey }, full);
    return new Promise<PublishReceipt>((resolve, reject) => {
      const p: Pending = {
        exchange,
        routingKey,
        body,
        bytes,
        options: amqpOptions,
        messageId,
        deadline: Date.now() + timeoutMs,
        timeoutMs,
        resolve,
        reject,
        sent: false,
        wasSent: false,
        settled: false,
      };
      this.#armSweep();
      if (full !== undefined) {
        // whenFull 'wait': admitted in order as room frees up, or rejected at its deadline.
        this.#buffer.waitForRoom(p);
        return;
      }
      this.#buffer.push(p);
      this.#pump();
    });
  }

  /** Sends waiting messages while the channel is up, unblocked, writable and the window has room. */
  #pump(): void {
    const ch = this.#channel;
    if (ch === undefined || !this.#writable || this.#conn.state !== 'open') return;
    while (this.#inFlight.size < this.#settings.maxInFlight) {
      const p = this.#buffer.shift();
      if (p === undefined) break;
      if (!this.#send(ch, p)) break;
    }
    this.#buffer.compact();
    if (this.#buffer.waitingForRoom > 0 && this.#buffer.admit() > 0) {
      this.#pump();
      return;
    }
    this.#checkIdle();
  }

  /** Returns false when the socket buffer is full (wait for 'drain') or the channel is gone. */
  #send(ch: ConfirmChannel, p: Pending): boolean {
    p.sent = true;
    p.wasSent = true;
    this.#inFlight.add(p);
    let ok: boolean;
    try {
      const content = typeof p.body === 'string' ? Buffer.from(p.body, 'utf8') : p.body;
      ok = ch.publish(p.exchange, p.routingKey, content, p.options, (err: unknown) => this.#onConfirm(p, err));
    } catch (err) {
      this.#inFlight.delete(p);
      p.sent = false;
      if (err instanceof RangeError || err instanceof TypeError) {
        // amqplib refuses e.g. a headers table over its encoding buffer, or a header value it cannot
        // encode (a BigInt, a function): this message can never be sent.
        this.#settle(p, new PublishError(p, `it cannot be encoded (${err.message}); make its headers smaller`, undefined, { cause: err }));
        return true;
      }
      // The channel closed under us; its 'close' handler will reopen it. Keep the message first in line.
      this.#buffer.pushFront([p]);
      return false;
    }
    if (!ok) this.#writable = false;
    return ok;
  }

  #onConfirm(p: Pending, err: unknown): void {
    this.#inFlight.delete(p);
    p.sent = false;
    if (err === null || err === undefined) {
      this.#channelFailures = 0;
      this.#settle(p, undefined);
    } else if (messageOf(err) === 'message nacked') {
      this.#settle(p, new PublishNackedError(p));
    } else {
      // 'channel closed': the confirm was lost with the channel. Don't pump into the closing channel.
      this.#onLostConfirm(p);
      return;
    }
    this.#pump();
  }

  #lostOnClose: Pending[] = [];
  #closeError: Error | undefined;

  #onLostConfirm(p: Pending): void {
    if (p.settled) return;
    const refused = this.#closeError !== undefined ? refusedExchange(this.#closeError) : undefined;
    if (refused !== undefined && refused === p.exchange && this.#closeError !== undefined) {
      this.#settle(p, new PublishError(p, brokerText(this.#closeError), amqpCode(this.#closeError), { cause: this.#closeError }));
      return;
    }
    // Collected here and put back at the front, in order, by the channel's 'close' handler.
    this.#lostOnClose.push(p);
  }

  #settle(p: Pending, err: Error | undefined): void {
    if (p.settled) return;
    p.settled = true;
    if (err === undefined) p.resolve({ messageId: p.messageId });
    else p.reject(err);
  }

  #openChannel(conn: ChannelModel): void {
    if (this.#opening || this.#channel !== undefined || this.#closed) return;
    this.#opening = true;
    conn.createConfirmChannel().then(
      (ch) => {
        this.#opening = false;
        if (this.#closed || conn !== this.#conn.connection) {
          ch.close().catch(() => undefined);
          return;
        }
        this.#adoptChannel(conn, ch);
      },
      (err: unknown) => {
        this.#opening = false;
        this.#log.warn({ err: messageOf(err) }, 'could not open the publish channel; will retry');
        this.#scheduleReopen();
      },
    );
  }

  #adoptChannel(conn: ChannelModel, ch: ConfirmChannel): void {
    this.#channel = ch;
    this.#writable = true;
    this.#closeError = undefined;
    ch.on('error', (err: Error) => {
      // Emitted just before 'close' when the broker closes the channel; kept to explain the lost confirms.
      this.#closeError = err;
      this.#log.warn({ err: err.message }, 'the broker closed the publish channel');
    });
    ch.on('drain', () => {
      this.#writable = true;
      this.#pump();
    });
    ch.on('return', (msg: Message) => this.#onReturn(msg));
    ch.on('close', () => {
      if (this.#channel !== ch) return;
      this.#channel = undefined;
      const lost = this.#lostOnClose.splice(0);
      if (lost.length > 0) this.#log.info({ count: lost.length }, 'publish channel closed with unconfirmed messages; re-publishing them');
      this.#buffer.pushFront(lost);
      const byServer = this.#closeError !== undefined;
      this.#channelFailures = byServer ? this.#channelFailures + 1 : 0;
      if (!this.#closed && conn === this.#conn.connection) this.#scheduleReopen();
      this.#checkIdle();
    });
    this.#log.debug('publish channel open');
    for (const w of this.#readyWaiters.splice(0)) w();
    this.#pump();
  }

  /** Reopens the channel on the same connection, backing off if the broker keeps closing it. */
  #scheduleReopen(): void {
    if (this.#reopenTimer !== undefined) return;
    const delay = this.#channelFailures <= 1 ? 0 : backoffDelay(this.#channelFailures - 2, defaultBackoff);
    this.#reopenTimer = setTimeout(() => {
      this.#reopenTimer = undefined;
      // The connection may have been replaced meanwhile: open on whichever is current.
      const current = this.#conn.connection;
      if (current !== undefined) this.#openChannel(current);
    }, delay);
  }

  #onReturn(msg: Message): void {
    const id = msg.properties.messageId as string | undefined;
    for (const p of this.#inFlight) {
      if (p.messageId === id && !p.settled) {
        this.#channelFailures = 0;
        // basic.return carries reply-code and reply-text; amqplib's types omit them.
        const fields = msg.fields as typeof msg.fields & { replyCode?: number; replyText?: string };
        this.#settle(p, new UnroutableError(p, fields.replyCode ?? 312, fields.replyText ?? 'NO_ROUTE'));
        return;
      }
    }
  }

  #armSweep(): void {
    if (this.#sweepTimer !== undefined) return;
    this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
  }

  /** Rejects publishes past their deadline; a waiting one is also dropped from the buffer so it is never sent. */
  #sweep(): void {
    const now = Date.now();
    const expired = this.#buffer.expire(now);
    for (const p of expired.waiting) this.#settle(p, new PublishTimeoutError(p, p.timeoutMs, p.wasSent));
    for (const p of expired.room) this.#settle(p, new PublishBufferFullError(p, this.#buffer.fullBecause(p.bytes) ?? 'earlier messages', p.timeoutMs));
    for (const p of this.#inFlight) {
      if (!p.settled && p.deadline <= now) this.#settle(p, new PublishTimeoutError(p, p.timeoutMs, true));
    }
    if (this.pending === 0 && this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer);
      this.#sweepTimer = undefined;
    }
    this.#pump();
  }

  #checkIdle(): void {
    if (this.#idleWaiters.length === 0) return;
    if (this.#countUnsettled() > 0) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  #countUnsettled(): number {
    let n = this.#buffer.unsettled();
    for (const p of this.#inFlight) if (!p.settled) n += 1;
    return n;
  }

  /**
   * Stops accepting publishes, waits up to `timeoutMs` for every accepted one to settle, then
   * rejects what is left with ClosedError and closes the channel.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    if (this.#countUnsettled() > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const left = [...this.#buffer.takeAll(), ...this.#inFlight, ...this.#lostOnClose];
    let dropped = 0;
    for (const p of left) {
      if (p === undefined || p.settled) continue;
      dropped += 1;
      this.#settle(
        p,
        new ClosedError(
          `warren closed before message ${p.messageId} was ${p.wasSent ? 'confirmed (it was sent; it may still be delivered)' : 'sent (it was not sent)'}.`,
        ),
      );
    }
    if (dropped > 0) this.#log.warn({ count: dropped }, 'closed with unsettled publishes; they were rejected with ClosedError');
    this.#closed = true;
    for (const w of this.#readyWaiters.splice(0)) w();
    this.#inFlight.clear();
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    if (this.#reopenTimer !== undefined) clearTimeout(this.#reopenTimer);
    const ch = this.#channel;
    this.#channel = undefined;
    if (ch !== undefined) await closeWithin(ch, CLOSE_WAIT_MS);
  }
}

/** Options the broker would answer by closing the channel (406): refused here, before anything is sent. */
function checkOptions(o: PublishOptions): void {
  if (o.expirationMs === undefined && o.priority === undefined && o.timeoutMs === undefined) return;
  const problems: string[] = [];
  if (o.expirationMs !== undefined && !(Number.isInteger(o.expirationMs) && o.expirationMs >= 0)) problems.push('expirationMs: must be a whole number of ms, 0 or more');
  if (o.priority !== undefined && !(Number.isInteger(o.priority) && o.priority >= 0 && o.priority <= 255)) problems.push('priority: must be a whole number from 0 to 255');
  if (o.timeoutMs !== undefined && !(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0)) problems.push('timeoutMs: must be a positive number of ms');
  if (problems.length > 0) throw new ConfigError('publish() options', problems);
}

/** The exchange a channel-close error says it refused, e.g. "NOT_FOUND - no exchange 'x' in vhost '/'". */
function refusedExchange(err: Error): string | undefined {
  const code = amqpCode(err);
  if (code === undefined || code < 400) return undefined;
  return /exchange '([^']*)'/.exec(err.message)?.[1];
}
