import { publishChannel, type PublishOutcome, type PublishTrace } from '../instrument/channels.js';
import { PublishNackedError, PublishTimeoutError, UnroutableError } from '../support/errors.js';

/** The publisher's buffer and window now, and what became of the publishes so far, as `warren.health().publisher` shows them. */
export interface PublisherStats {
  /** Sent and waiting for the broker's confirm. */
  inFlight: number;
  /** Waiting to be sent (disconnected, blocked, or the window is full). */
  buffered: number;
  bufferedBytes: number;
  /** whenFull 'wait': publishes waiting for room in the buffer. */
  waitingForRoom: number;
  /** publish() calls accepted (valid, and taken into the buffer), since connect(). */
  published: number;
  /** Confirmed by the broker. */
  confirmed: number;
  /** Refused by the broker (basic.nack). */
  nacked: number;
  /** Returned as unroutable (basic.return). */
  returned: number;
  /** No confirm within the deadline. */
  timedOut: number;
  /** Failed otherwise after being accepted (the broker closed the channel for it, close(), a full buffer after waiting). */
  failed: number;
}

export type PublishCounts = Pick<PublisherStats, 'published' | 'confirmed' | 'nacked' | 'returned' | 'timedOut' | 'failed'>;

/** How a settled publish is counted. */
export type Counter = 'confirmed' | 'nacked' | 'returned' | 'timedOut' | 'failed';

export function newCounts(): PublishCounts {
  return { published: 0, confirmed: 0, nacked: 0, returned: 0, timedOut: 0, failed: 0 };
}

/** The counter a publish settled with `err` (undefined: confirmed) goes to. */
export function counterOf(err: Error | undefined): Counter {
  if (err === undefined) return 'confirmed';
  if (err instanceof UnroutableError) return 'returned';
  if (err instanceof PublishNackedError) return 'nacked';
  if (err instanceof PublishTimeoutError) return 'timedOut';
  return 'failed';
}

const OUTCOME: Record<Counter, PublishOutcome> = { confirmed: 'confirmed', returned: 'returned', nacked: 'nacked', timedOut: 'timed-out', failed: 'failed' };

/** Completes a `warren:publish` operation: its outcome and duration, `error` on failure, then `end`. */
export function endTrace(trace: PublishTrace, startedAt: number, err: Error | undefined): void {
  trace.outcome = OUTCOME[counterOf(err)];
  trace.durationMs = performance.now() - startedAt;
  if (err !== undefined) {
    trace.error = err;
    publishChannel.error.publish(trace);
  }
  publishChannel.end.publish(trace);
}
