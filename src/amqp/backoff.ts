/** Parameters of exponential backoff with full jitter. */
export interface BackoffOptions {
  /** Upper bound of the first delay, in ms. */
  initialDelayMs: number;
  /** No delay is longer than this, in ms. */
  maxDelayMs: number;
  /** Growth of the upper bound per attempt. */
  factor: number;
}

export const defaultBackoff: BackoffOptions = { initialDelayMs: 100, maxDelayMs: 30_000, factor: 2 };

/**
 * The delay before retry number `attempt` (0 for the first retry): a uniformly random value in
 * [0, min(maxDelayMs, initialDelayMs × factor^attempt)) — "full jitter", so that many clients
 * that lost the same broker do not come back in lockstep.
 * Pure: pass `random` to make it deterministic.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = defaultBackoff, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(attempt, options);
  return Math.floor(random() * ceiling);
}

/** The upper bound of the delay for `attempt`, without jitter. */
export function backoffCeiling(attempt: number, options: BackoffOptions = defaultBackoff): number {
  const n = Math.max(0, Math.floor(attempt));
  // Cap the exponent so huge attempt counts cannot overflow to Infinity/NaN.
  const exp = Math.min(n, 64);
  return Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** exp);
}
