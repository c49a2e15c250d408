import { MAX_ATTEMPTS } from '../define/retry-policy.js';

/** Headers warren sets on retried and dead-lettered copies. */
export const Header = {
  /** The attempt this delivery is (1 for the first). */
  attempt: 'x-warren-attempt',
  /** Why it was dead-lettered: retries-exhausted | non-retryable | invalid | handler-failed | retry-failed | handler, or the text a handler gave ctx.deadLetter(). */
  reason: 'x-warren-reason',
  errorCode: 'x-warren-error-code',
  errorMessage: 'x-warren-error-message',
  /** zod's issues for a payload that failed its schema, as JSON (size-bounded). */
  validationIssues: 'x-warren-validation-issues',
  /** Attempts made before it was dead-lettered. */
  attempts: 'x-warren-attempts',
  originalExchange: 'x-warren-original-exchange',
  originalRoutingKey: 'x-warren-original-routing-key',
  firstFailureAt: 'x-warren-first-failure-at',
  lastFailureAt: 'x-warren-last-failure-at',
  consumer: 'x-warren-consumer',
  /** The queue a dead letter came from; replay sends it back there. */
  originQueue: 'x-warren-origin-queue',
  /** How many times a dead letter was replayed. */
  replays: 'x-warren-replays',
  /** On a dead letter whose own headers were too large to copy: the names of the headers left out. */
  trimmedHeaders: 'x-warren-trimmed-headers',
} as const;

/** Longest error message stored in a header: far below frame_max, and still readable. */
export const MAX_ERROR_MESSAGE = 1024;
export const MAX_ISSUES_JSON = 4096;
export const MAX_ERROR_CODE = 128;
/** Longest reason text a handler may give `ctx.deadLetter()` that is kept in `x-warren-reason`. */
export const MAX_REASON = 255;

/**
 * The attempt a delivery is, from warren's header: trusted only as a whole number within
 * [1, maxAttempts] (a header anyone could have set must not skip the retries); 1 otherwise.
 */
export function attemptOf(headers: Readonly<Record<string, unknown>> | undefined, maxAttempts = MAX_ATTEMPTS): number {
  const v = headers?.[Header.attempt];
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= maxAttempts ? n : 1;
}

/** Cuts a string to `max` characters, saying so. */
export function bounded(text: string, max: number): string {
  const suffix = '… (truncated)';
  return text.length <= max ? text : text.slice(0, max - suffix.length) + suffix;
}
