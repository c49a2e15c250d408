import type { PublishProperties } from '../amqp/transport.js';
import type { PublishTrace } from '../instrument/channels.js';

/** A publish from `publish()` until the caller has its answer. */
export interface Pending {
  readonly exchange: string;
  readonly routingKey: string;
  /**
   * The body: a JSON string for publish() (encoded to bytes as it is sent, so no buffer is held
   * while waiting for the confirm), or the bytes themselves for publishRaw().
   */
  readonly body: string | Buffer;
  /** The body's size in bytes. */
  readonly bytes: number;
  readonly options: PublishProperties;
  readonly messageId: string;
  /** A publish() call (counted and traced), or one of warren's own copies (retry, dead letter, replay). */
  readonly kind: 'publish' | 'copy';
  /** The `warren:publish` context, when it had subscribers as the publish began. */
  readonly trace: PublishTrace | undefined;
  /** `performance.now()` at the publish() call, when traced. */
  readonly startedAt: number;
  readonly deadline: number;
  readonly timeoutMs: number;
  readonly resolve: (r: { messageId: string }) => void;
  readonly reject: (e: Error) => void;
  /** Sent on the current channel and waiting for its confirm. */
  sent: boolean;
  /** Sent at least once (perhaps on a channel since lost): the broker may have it. */
  wasSent: boolean;
  /** The caller has its answer (confirm, error, timeout); late broker news is ignored. */
  settled: boolean;
  /**
   * It was in flight when the broker closed the channel or connection with an error (a 406, a
   * 541, …): it may be what the broker refused, so it is sent again alone, and failed if the
   * broker closes again while it is.
   */
  suspect: boolean;
}

/**
 * The publisher's bounded buffer: messages waiting to be sent (while the channel is down,
 * blocked, or the window is full), oldest first, bounded in count and bytes; and, with
 * `whenFull: 'wait'`, the publishes waiting for room in it, admitted in order.
 */
export class PublishBuffer {
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  /** `#head` skips taken slots without shifting the array; a hole is a message taken out early. */
  #items: (Pending | undefined)[] = [];
  #head = 0;
  #bytes = 0;
  #roomWaiters: Pending[] = [];

  constructor(maxMessages: number, maxBytes: number) {
    this.#maxMessages = maxMessages;
    this.#maxBytes = maxBytes;
  }

  /** Messages waiting to be sent. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Their body bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  get waitingForRoom(): number {
    return this.#roomWaiters.length;
  }

  /** Why a body of `bytes` does not fit now, or undefined when it does. */
  fullBecause(bytes: number): string | undefined {
    if (this.size >= this.#maxMessages) return `${this.size} messages`;
    if (this.#bytes + bytes > this.#maxBytes) return `${this.#bytes} bytes`;
    return undefined;
  }

  push(p: Pending): void {
    this.#items.push(p);
    this.#bytes += p.bytes;
  }

  /** Puts messages back at the front, in order (they were taken out to be sent, and were not). */
  pushFront(items: Pending[]): void {
    const live = items.filter((p) => !p.settled);
    if (live.length === 0) return;
    for (const p of live) this.#bytes += p.bytes;
    this.#items = [...live, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }

  /** Queues a publish until the buffer has room for it (see admit()). */
  waitForRoom(p: Pending): void {
    this.#roomWaiters.push(p);
  }

  /** The oldest waiting message, left in place; undefined when none is left. */
  peek(): Pending | undefined {
    for (let i = this.#head; i < this.#items.length; i += 1) {
      const p = this.#items[i];
      if (p !== undefined && !p.settled) return p;
    }
    return undefined;
  }

  /** Takes the oldest waiting message out to be sent, or undefined when none is left. */
  shift(): Pending | undefined {
    while (this.#head < this.#items.length) {
      const p = this.#items[this.#head];
      this.#items[this.#head] = undefined;
      this.#head += 1;
      if (p === undefined) continue;
      // A message settled while it waited here (failed by the Quarantine, say) still counts in #bytes.
      this.#bytes -= p.bytes;
      if (p.settled) continue;
      return p;
    }
    return undefined;
  }

  /** Frees the taken slots: at once when all are taken, else now and then. */
  compact(): void {
    if (this.#head === this.#items.length) {
      if (this.#head === 0) return;
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Moves publishes waiting for room into the buffer while it has room; returns how many. */
  admit(): number {
    let admitted = 0;
    for (;;) {
      const p = this.#roomWaiters[0];
      if (p === undefined || this.fullBecause(p.bytes) !== undefined) return admitted;
      this.#roomWaiters.shift();
      if (p.settled) continue;
      this.push(p);
      admitted += 1;
    }
  }

  /** Takes out what is past its deadline: waiting messages (never sent again) and room waiters. */
  expire(now: number): { waiting: Pending[]; room: Pending[] } {
    const waiting: Pending[] = [];
    for (let i = this.#head; i < this.#items.length; i += 1) {
      const p = this.#items[i];
      if (p !== undefined && !p.settled && p.deadline <= now) {
        this.#items[i] = undefined;
        this.#bytes -= p.bytes;
        waiting.push(p);
      }
    }
    // Drop the holes now: while disconnected nothing else compacts, and holes count in `size`.
    if (waiting.length > 0) {
      this.#items = this.#items.slice(this.#head).filter((p) => p !== undefined);
      this.#head = 0;
    }
    const room: Pending[] = [];
    if (this.#roomWaiters.some((p) => p.deadline <= now)) {
      this.#roomWaiters = this.#roomWaiters.filter((p) => {
        if (p.deadline > now) return true;
        room.push(p);
        return false;
      });
    }
    return { waiting, room };
  }

  /** Messages in it (room waiters included) whose caller has no answer yet. */
  unsettled(): number {
    let n = 0;
    for (let i = this.#head; i < this.#items.length; i += 1) if (this.#items[i]?.settled === false) n += 1;
    return n + this.#roomWaiters.length;
  }

  /** Empties it, returning everything that was in it. */
  takeAll(): Pending[] {
    const all = [...this.#items.slice(this.#head), ...this.#roomWaiters].filter((p) => p !== undefined);
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#roomWaiters = [];
    return all;
  }
}
