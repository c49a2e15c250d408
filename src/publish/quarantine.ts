import { amqpCode, refusedExchange } from '../amqp/reply-codes.js';
import type { Pending } from './buffer.js';

/**
 * The second line of defence against a message the broker cannot take (the first is the header
 * check in options.ts). When the broker closes the channel or the connection with an error a
 * message can cause — a code ≥ 400, not 320 CONNECTION_FORCED, not the network — every message
 * that was in flight becomes suspect. Suspects are re-sent one at a time; one that is alone in
 * flight when the broker closes again is the cause, and fails, instead of closing the connection
 * on every reconnect while the messages beside it time out.
 */
export class Quarantine {
  /** The messages of the last channel close, until the link says how it ended. */
  #lastLost: Pending[] = [];
  /** A suspect sent alone; nothing else is sent until it settles. */
  #solo: Pending | undefined;

  /** A suspect is alone in flight: send nothing more until it settles. */
  get holding(): boolean {
    return this.#solo !== undefined;
  }

  /**
   * Whether `next` (the first message waiting) may be sent while `inFlight` others are in flight:
   * a suspect goes out only alone, and is then the one alone in flight.
   */
  admit(next: Pending | undefined, inFlight: number): boolean {
    if (next?.suspect !== true) return true;
    if (inFlight > 0) return false;
    this.#solo = next;
    return true;
  }

  /** A message settled (confirmed, failed): if it was the suspect alone in flight, others may go. */
  settled(p: Pending): void {
    if (p === this.#solo) this.#solo = undefined;
  }

  /** A new channel: a suspect that was alone on the last one and not found at fault is tried alone again. */
  channelOpened(): void {
    this.#solo = undefined;
  }

  /** The channel closed with `lost` unconfirmed; a connection-level error comes right after (same turn), on the link's 'lost'. */
  channelClosed(lost: Pending[]): void {
    this.#lastLost = lost;
  }

  /**
   * How the broker closed the channel or connection. Marks what was lost as suspect, and returns
   * the suspect that was alone in flight when it closed with an error again: the cause.
   */
  judge(err: Error): Pending | undefined {
    const code = amqpCode(err);
    const lost = this.#lastLost;
    this.#lastLost = [];
    // A refused exchange names its culprits, and they have failed already.
    if (code === undefined || code < 400 || refusedExchange(err) !== undefined) return undefined;
    const solo = this.#solo;
    this.#solo = undefined;
    let cause: Pending | undefined;
    for (const p of lost) {
      if (p.settled) continue;
      if (p === solo) cause = p;
      else p.suspect = true;
    }
    return cause;
  }
}
