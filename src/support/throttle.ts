/**
 * How loudly to log the `attempt`-th consecutive failure of something that retries by itself (a
 * reconnect, a channel that keeps closing): a storm logs a warning once, then quietly at debug,
 * with a reminder every 20 attempts.
 */
export function failureLevel(attempt: number): 'warn' | 'debug' {
  return attempt === 1 || attempt % 20 === 0 ? 'warn' : 'debug';
}
