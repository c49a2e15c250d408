import { randomUUID } from 'node:crypto';
import type { ConnectionManager } from '../amqp/connection.js';
import { LiveChannel } from '../amqp/live-channel.js';
import { permissionError } from '../amqp/permissions.js';
import { amqpCode, brokerText, refusedExchange } from '../amqp/reply-codes.js';
import type { ConfirmChannel, ConfirmResult, PublishProperties, Returned } from '../amqp/transport.js';
import type { CopyPublisher } from '../dead-letter/copy.js';
import { encodeJson, validatePayload, type MessageContract, type PayloadInput } from '../define/message.js';
import { publishChannel, type PublishTrace } from '../instrument/channels.js';
import {
  ClosedError,
  MessageTooLargeError,
  PublishBufferFullError,
  PublishError,
  PublishNackedError,
  PublishTimeoutError,
  UnroutableError,
  ValidationError,
} from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import { PublishBuffer, type Pending } from './buffer.js';
import { Quarantine } from './quarantine.js';
import { checkHeaders, checkOptions, propertiesFor, type PublishOptions } from './options.js';
import { counterOf, endTrace, newCounts, type PublisherStats } from './stats.js';

export type { PublisherStats };

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
  /** Sent as the AMQP app-id property; also the `client` of instrumentation events. */
  appId: string;
}

const SWEEP_INTERVAL_MS = 100;

/**
 * Publishes on a confirm channel of the publish connection. Messages are pipelined up to
 * `maxInFlight`, wait in a bounded buffer while the channel is down, blocked or the socket is
 * full, and are re-published (same messageId) when the channel was lost before their confirm.
 */
export class Publisher implements CopyPublisher {
  readonly #conn: ConnectionManager;
  readonly #settings: PublisherSettings;
  readonly #log: Logger;
  readonly #buffer: PublishBuffer;
  readonly #live: LiveChannel<ConfirmChannel>;
  readonly #counts = newCounts();
  #inFlight = new Set<Pending>();
  #channel: ConfirmChannel | undefined;
  #writable = true;
  /** Messages whose confirm was lost with the channel: put back in order when its 'close' comes. */
  #lostOnClose: Pending[] = [];
  readonly #quarantine = new Quarantine();
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
    this.#live = new LiveChannel({ connection: conn, what: 'publish channel', log: this.#log, create: (link) => link.createConfirmChannel() });
    this.#live.on('open', (ch) => this.#adopt(ch));
    this.#live.on('close', (ch, err) => this.#onChannelClose(ch, err));
    conn.on('unblocked', () => this.#pump());
    conn.on('lost', (err) => this.#judge(err));
    void this.#live.start('keep-trying');
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

  /** What the publisher holds now, and its counts so far: for health() and dashboards. */
  stats(): PublisherStats {
    return {
      inFlight: this.#inFlight.size,
      buffered: this.#buffer.size,
      bufferedBytes: this.#buffer.bytes,
      waitingForRoom: this.#buffer.waitingForRoom,
      ...this.#counts,
    };
  }

  /**
   * Validates, encodes and publishes a message. Resolves only after the broker confirms it;
   * rejects with ValidationError, MessageTooLargeError, PublishBufferFullError, UnroutableError,
   * PublishNackedError, PublishError, PermissionError (no write permission on the exchange), PublishTimeoutError or ClosedError.
   */
  publish<M extends MessageContract>(contract: M, payload: PayloadInput<M>, options: PublishOptions = {}): Promise<PublishReceipt> {
    if (publishChannel.hasSubscribers) return this.#tracedPublish(contract, payload, options);
    try {
      return this.#publish(contract, payload, options, options.messageId ?? randomUUID(), undefined, 0);
    } catch (err) {
      return Promise.reject(asError(err));
    }
  }

  #tracedPublish(contract: MessageContract, payload: unknown, options: PublishOptions): Promise<PublishReceipt> {
    const startedAt = performance.now();
    const messageId = options.messageId ?? randomUUID();
    const trace: PublishTrace = {
      client: this.#settings.appId,
      contract: contract.name,
      exchange: contract.exchange,
      routingKey: options.routingKey ?? contract.routingKey,
      messageId,
      headers: { ...options.headers },
    };
    publishChannel.start.publish(trace);
    try {
      return this.#publish(contract, payload, options, messageId, trace, startedAt);
    } catch (err) {
      const error = asError(err);
      endTrace(trace, startedAt, error);
      return Promise.reject(error);
    }
  }

  #publish(contract: MessageContract, payload: unknown, options: PublishOptions, messageId: string, trace: PublishTrace | undefined, startedAt: number): Promise<PublishReceipt> {
    const routingKey = options.routingKey ?? contract.routingKey;
    if (this.#closing) throw new ClosedError(`Cannot publish message ${messageId} ('${contract.name}'): warren is ${this.#closed ? 'closed' : 'closing'}.`);
    checkOptions(options);
    validatePayload(contract, payload);
    // A tracer may have added headers on start (to a copy of the caller's): they are what is sent.
    const headers = trace !== undefined ? trace.headers : options.headers;
    if (headers !== undefined) checkHeaders(contract.name, headers);
    const json = encodeJson(contract, payload);
    // Kept as text until sent: holding each unconfirmed body as a Buffer pins Node's shared 8 KiB
    // buffer pool slabs, which costs far more garbage collection than the string does.
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > this.#settings.maxMessageBytes) throw new MessageTooLargeError(contract.name, bytes, this.#settings.maxMessageBytes);
    const properties = propertiesFor(contract, options, messageId, this.#settings.appId, headers);
    const timeoutMs = options.timeoutMs ?? this.#settings.timeoutMs;
    return this.#enqueue(contract.exchange, routingKey, json, bytes, properties, timeoutMs, 'publish', trace, startedAt);
  }

  /**
   * Publishes an already encoded copy with confirms (warren's own: retries, dead letters,
   * replays). `properties.messageId` must be set. Same errors as `publish()`; not counted in
   * stats() and not traced on `warren:publish`.
   */
  publishCopy(exchange: string, routingKey: string, body: Buffer, properties: PublishProperties): Promise<PublishReceipt> {
    try {
      if (properties.headers !== undefined) checkHeaders(properties.type ?? 'a copy', properties.headers);
      return this.#enqueue(exchange, routingKey, body, body.length, properties, this.#settings.timeoutMs, 'copy', undefined, 0);
    } catch (err) {
      return Promise.reject(asError(err));
    }
  }

  #enqueue(
    exchange: string,
    routingKey: string,
    body: string | Buffer,
    bytes: number,
    properties: PublishProperties,
    timeoutMs: number,
    kind: Pending['kind'],
    trace: PublishTrace | undefined,
    startedAt: number,
  ): Promise<PublishReceipt> {
    const messageId = properties.messageId;
    const full = this.#buffer.waitingForRoom > 0 ? 'earlier publishes waiting for room' : this.#buffer.fullBecause(bytes);
    if (full !== undefined && this.#settings.whenFull === 'reject') throw new PublishBufferFullError({ messageId, exchange, routingKey }, full);
    if (kind === 'publish') {
      this.#counts.published += 1;
      if (trace !== undefined) {
        trace.accepted = true;
        publishChannel.asyncStart.publish(trace);
      }
    }
    return new Promise<PublishReceipt>((resolve, reject) => {
      const p: Pending = {
        exchange,
        routingKey,
        body,
        bytes,
        options: properties,
        messageId,
        kind,
        trace,
        startedAt,
        deadline: Date.now() + timeoutMs,
        timeoutMs,
        resolve,
        reject,
        sent: false,
        wasSent: false,
        settled: false,
        suspect: false,
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
    while (this.#inFlight.size < this.#settings.maxInFlight && !this.#quarantine.holding) {
      if (!this.#quarantine.admit(this.#buffer.peek(), this.#inFlight.size)) break;
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
      ok = ch.publish(p.exchange, p.routingKey, content, p.options, (result, closeError) => this.#onConfirm(p, result, closeError));
    } catch (err) {
      this.#inFlight.delete(p);
      p.sent = false;
      if (err instanceof RangeError || err instanceof TypeError) {
        // The encoder refused something checkHeaders() let through: this message can never be sent.
        this.#settle(p, new ValidationError(p.options.type ?? 'a copy', [{ path: ['headers'], message: `cannot be encoded (${err.message})`, code: 'custom' }], { cause: err }));
        return true;
      }
      // The channel closed under us; its 'close' handler will reopen it. Keep the message first in line.
      this.#buffer.pushFront([p]);
      return false;
    }
    if (!ok) this.#writable = false;
    return ok;
  }

  #onConfirm(p: Pending, result: ConfirmResult, closeError: Error | undefined): void {
    this.#inFlight.delete(p);
    p.sent = false;
    if (result === 'ack') {
      this.#live.healthy();
      this.#settle(p, undefined);
    } else if (result === 'nack') {
      this.#settle(p, new PublishNackedError(p));
    } else {
      // The confirm was lost with the channel. Don't pump into the closing channel.
      this.#onLostConfirm(p, closeError);
      return;
    }
    this.#pump();
  }

  #onLostConfirm(p: Pending, closeError: Error | undefined): void {
    if (p.settled) return;
    if (closeError !== undefined && refusedExchange(closeError) === p.exchange) {
      // Failed, not re-sent: the broker would refuse it again (a missing exchange, a missing write permission).
      const what = p.kind === 'publish' ? `message ${p.messageId}` : `a retry or dead-letter copy of message ${p.messageId}`;
      const refused = permissionError(closeError, { kind: 'publish', exchange: p.exchange, routingKey: p.routingKey, what });
      this.#settle(p, refused ?? new PublishError(p, brokerText(closeError), amqpCode(closeError), { cause: closeError }));
      return;
    }
    // Collected here and put back at the front, in order, by the channel's 'close' handler.
    this.#lostOnClose.push(p);
  }

  #settle(p: Pending, err: Error | undefined): void {
    if (p.settled) return;
    p.settled = true;
    this.#quarantine.settled(p);
    if (p.kind === 'publish') this.#counts[counterOf(err)] += 1;
    if (p.trace !== undefined) endTrace(p.trace, p.startedAt, err);
    if (err === undefined) p.resolve({ messageId: p.messageId });
    else p.reject(err);
  }

  #adopt(ch: ConfirmChannel): void {
    this.#channel = ch;
    this.#writable = true;
    this.#quarantine.channelOpened();
    ch.on('drain', () => {
      if (this.#channel !== ch) return;
      this.#writable = true;
      this.#pump();
    });
    ch.on('return', (msg) => this.#onReturn(msg));
    this.#log.debug('publish channel open');
    for (const w of this.#readyWaiters.splice(0)) w();
    this.#pump();
  }

  #onChannelClose(ch: ConfirmChannel, err: Error | undefined): void {
    if (this.#channel !== ch) return;
    this.#channel = undefined;
    if (err !== undefined) this.#log.warn({ err }, 'the broker closed the publish channel');
    const lost = this.#lostOnClose.splice(0);
    if (lost.length > 0) this.#log.info({ count: lost.length }, 'publish channel closed with unconfirmed messages; re-publishing them');
    this.#buffer.pushFront(lost);
    this.#quarantine.channelClosed(lost);
    if (err !== undefined) this.#judge(err);
    this.#checkIdle();
  }

  /** The broker closed the channel or the connection: see Quarantine. */
  #judge(err: Error): void {
    const cause = this.#quarantine.judge(err);
    if (cause === undefined) return;
    const code = amqpCode(err);
    this.#log.error({ messageId: cause.messageId, err }, 'the broker closed the connection again while only this message was in flight; failing it instead of re-sending it');
    const what = code !== undefined && code >= 500 ? 'connection' : 'channel';
    this.#settle(cause, new PublishError(cause, `the broker closed the ${what} each time it was sent (${brokerText(err)}); it was not sent again`, code, { cause: err }));
  }

  #onReturn(msg: Returned): void {
    // Matched on id, exchange and routing key: a retry copy keeps its original's id, and the
    // original's confirm may not have come yet when the copy comes back. The oldest in flight
    // is the one returned (the broker answers in order).
    for (const p of this.#inFlight) {
      if (p.messageId === msg.messageId && p.exchange === msg.exchange && p.routingKey === msg.routingKey && !p.settled) {
        this.#live.healthy();
        this.#settle(p, new UnroutableError(p, msg.replyCode, msg.replyText));
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
    this.#channel = undefined;
    await this.#live.close();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
