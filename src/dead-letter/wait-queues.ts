/**
 * The names of the retry wait queues. Retry with delay is done by the broker: one wait queue per
 * delay tier (`<queue>.retry.<delay>`, declared by topology/apply.ts assertWaitQueue) with
 * `x-message-ttl`, whose expired messages dead-letter back to the origin queue through the
 * default exchange. The attempt count lives in warren's own header, because `x-death` cannot be
 * trusted once a message is re-published (RabbitMQ 4.0 ignores it from clients).
 */

/** `1500` → `'1500ms'`, `10000` → `'10s'`, `60000` → `'1m'`, `3600000` → `'1h'`. */
export function formatDelay(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The wait queue of one delay tier. */
export function waitQueueName(queue: string, delayMs: number): string {
  return `${queue}.retry.${formatDelay(delayMs)}`;
}
