import { ClosedError, errorCode, messageOf } from '../support/errors.js';
import { TypedEmitter } from '../support/events.js';
import type { Logger } from '../support/logger.js';
import { failureLevel } from '../support/throttle.js';
import { backoffDelay, defaultBackoff } from './backoff.js';
import { closeWithin } from './close.js';
import type { ConnectionManager } from './connection.js';
import type { Channel, Link } from './transport.js';

export interface LiveChannelOptions<C extends Channel> {
  connection: ConnectionManager;
  /** For logs: 'publish channel', 'consumer channel'. */
  what: string;
  log: Logger;
  /** Opens a channel on `link`. */
  create: (link: Link) => Promise<C>;
  /** Makes a fresh (or, after `resubscribe()`, the current) channel ready: prefetch, consume, … A failure closes the channel and is retried. */
  setup?: (channel: C, link: Link) => Promise<void>;
}

export interface LiveChannelEvents<C extends Channel> {
  /** A channel was opened and set up. */
  open: [channel: C];
  /** The current channel closed: `error` is the broker's reason when it closed it. */
  close: [channel: C, error: Error | undefined];
  /** Opening or setting up a channel failed; it is retried with backoff. */
  failed: [error: Error];
}

/**
 * A channel that comes back. It opens one on the connection as soon as the connection is open,
 * and opens another when the broker closes it or the connection is replaced; failures are
 * retried with backoff (at once the first time) and logged loudly once, then quietly. The
 * Publisher and every consumer's Subscription each keep one.
 */
export class LiveChannel<C extends Channel> extends TypedEmitter<LiveChannelEvents<C>> {
  readonly #o: LiveChannelOptions<C>;
  #current: C | undefined;
  #opening: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Consecutive failures since the owner last called `healthy()`. */
  #failures = 0;
  /** A permission refusal has been logged as an error since the last `healthy()`. */
  #refusedLogged = false;
  #closed = false;
  /** Reacting to the connection's 'open' (after start()). */
  #listening = false;
  /** resubscribe() was asked for while an open was in progress: run it once that is done. */
  #resubscribeAfterOpen = false;
  /** Channels this object closed itself: their 'close' is not a failure. */
  readonly #closing = new WeakSet<C>();
  readonly #onOpen = (link: Link): void => {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ensure(link);
  };

  constructor(options: LiveChannelOptions<C>) {
    super();
    this.#o = options;
  }

  /** The open channel, or undefined while there is none. */
  get current(): C | undefined {
    return this.#current;
  }

  /**
   * Starts keeping a channel. `'keep-trying'`: opens on the open connection (if any) and on every
   * reconnect, retrying failures. `'fail-fast'`: waits for the connection, then opens once and
   * rejects with the failure (the caller then closes this), retrying only after a first success.
   */
  async start(mode: 'keep-trying' | 'fail-fast'): Promise<void> {
    if (mode === 'keep-trying') {
      this.#listen();
      const link = this.#o.connection.connection;
      if (link !== undefined) this.#ensure(link);
      return;
    }
    // One path until the first channel is up: listening for 'open' meanwhile would open a second
    // one beside it (the connection announces 'open' as it resolves whenOpen()).
    while (this.#current === undefined) {
      if (this.#closed) throw new ClosedError(`The ${this.#o.what} was closed before it opened.`);
      // Opened on a connection that was replaced meanwhile: try again on the new one.
      await this.#open(await this.#o.connection.whenOpen());
    }
    this.#listen();
  }

  #listen(): void {
    if (this.#listening) return;
    this.#listening = true;
    this.#o.connection.on('open', this.#onOpen);
  }

  /** The channel works (a confirm came, a consumer attached): the next failure is retried at once again. */
  healthy(): void {
    this.#failures = 0;
    this.#refusedLogged = false;
  }

  /** Runs `setup` again on the current channel (e.g. after the broker cancelled a consumer); a failure closes it and opens a new one. */
  resubscribe(): void {
    if (this.#opening !== undefined) {
      this.#resubscribeAfterOpen = true;
      return;
    }
    const ch = this.#current;
    const link = this.#o.connection.connection;
    if (ch === undefined || link === undefined || this.#closed) return;
    void this.#track(link, async () => {
      try {
        await this.#o.setup?.(ch, link);
      } catch (err) {
        this.#failed(link, err);
        if (this.#current === ch) this.#dispose(ch);
      }
    });
  }

  /**
   * Stops opening channels (on reconnect, after a close, on a retry), keeping the current one;
   * resolves once an open in progress has finished. Idempotent.
   */
  async stopReopening(): Promise<void> {
    this.#closed = true;
    this.#o.connection.off('open', this.#onOpen);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#opening?.catch(() => undefined);
  }

  /** Stops reopening and closes the current channel (waiting at most CLOSE_WAIT_MS for the broker). Idempotent. */
  async close(): Promise<void> {
    await this.stopReopening();
    const ch = this.#current;
    this.#current = undefined;
    if (ch !== undefined) {
      this.#closing.add(ch);
      await closeWithin(ch);
    }
  }

  #ensure(link: Link): void {
    if (this.#closed || this.#current !== undefined || this.#opening !== undefined) return;
    this.#open(link).catch((err: unknown) => this.#failed(link, err));
  }

  #open(link: Link): Promise<void> {
    return this.#track(link, async () => {
      const ch = await this.#o.create(link);
      ch.on('close', (err) => this.#onClose(link, ch, err));
      if (this.#closed || link !== this.#o.connection.connection) {
        this.#dispose(ch);
        return;
      }
      try {
        await this.#o.setup?.(ch, link);
      } catch (err) {
        this.#dispose(ch);
        throw err;
      }
      if (this.#closed) {
        this.#dispose(ch);
        return;
      }
      this.#current = ch;
      this.emit('open', ch);
    });
  }

  /** Runs an open or a resubscribe on `link` as the one in progress, then catches up (#afterOpen). */
  #track(link: Link, work: () => Promise<void>): Promise<void> {
    const opening = work().finally(() => {
      this.#opening = undefined;
      this.#afterOpen(link);
    });
    this.#opening = opening;
    return opening;
  }

  /** An open (or a resubscribe) finished: catch up with what happened meanwhile. */
  #afterOpen(link: Link): void {
    if (this.#closed) return;
    const now = this.#o.connection.connection;
    // The connection was replaced while this open ran on the old one: its 'open' came and went.
    if (this.#listening && this.#current === undefined && now !== undefined && now !== link) {
      this.#ensure(now);
      return;
    }
    if (this.#resubscribeAfterOpen && this.#current !== undefined) {
      this.#resubscribeAfterOpen = false;
      this.resubscribe();
    }
  }

  /** Closes a channel that is not (or no longer) wanted, without treating its close as a failure. */
  #dispose(ch: C): void {
    this.#closing.add(ch);
    if (this.#current === ch) this.#current = undefined;
    void closeWithin(ch);
  }

  #onClose(link: Link, ch: C, err: Error | undefined): void {
    if (this.#current === ch) {
      this.#current = undefined;
      this.emit('close', ch, err);
    }
    if (this.#closed || this.#closing.has(ch)) return;
    // Opened again on the same connection: at once the first time, then backing off while the
    // broker keeps closing it. amqplib closes the channels before it reports the connection
    // closed, so look at the connection only once the timer fires; a new connection's 'open'
    // opens a channel by itself.
    this.#failures = err !== undefined ? this.#failures + 1 : 0;
    const delayMs = this.#failures <= 1 ? 0 : backoffDelay(this.#failures - 2, defaultBackoff);
    this.#schedule(link, delayMs);
  }

  #failed(link: Link, err: unknown): void {
    if (this.#closed) return;
    this.#failures += 1;
    const delayMs = backoffDelay(this.#failures - 1, defaultBackoff);
    const level = failureLevel(this.#failures);
    if (errorCode(err) === 'PERMISSION_REFUSED') {
      // Not a blip: it lasts until someone grants the permission, so it is an error (the first
      // time, even after other failures, then every 20th attempt), and retried with backoff so
      // the grant is picked up without a restart.
      const first = !this.#refusedLogged;
      this.#refusedLogged = true;
      this.#o.log[first || level === 'warn' ? 'error' : 'debug']({ err, attempt: this.#failures, delayMs }, `could not open the ${this.#o.what}: a permission is missing; retrying with backoff until it is granted`);
    } else {
      this.#o.log[level]({ err, attempt: this.#failures, delayMs }, `could not open the ${this.#o.what}; retrying`);
    }
    this.emit('failed', err instanceof Error ? err : new Error(messageOf(err)));
    this.#schedule(link, delayMs);
  }

  #schedule(link: Link, delayMs: number): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (link === this.#o.connection.connection) this.#ensure(link);
    }, delayMs);
  }
}
