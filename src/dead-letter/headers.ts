/** Headers warren sets on retried and dead-lettered copies. */
export const Header = {
  /** The attempt this delivery is (1 for the first). */
  attempt: 'x-warren-attempt',
  /** Why it was dead-lettered: retries-exhausted | non-retryable | invalid | handler-failed | handler. */
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
} as const;

/** Longest error message stored in a header: far below frame_max, and still readable. */
export const MAX_ERROR_MESSAGE = 1024;
export const MAX_ISSUES_JSON = 4096;

/** The attempt a delivery is, from warren's header (1 when absent or malformed). */
export function attemptOf(headers: Readonly<Record<string, unknown>> | undefined): number {
  const v = headers?.[Header.attempt];
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** Cuts a string to `max` characters, saying so. */
export function bounded(text: string, max: number): string {
  const suffix = '… (truncated)';
  return text.length <= max ? text : text.slice(0, max - suffix.length) + suffix;
}
