import { z } from 'zod';
import { durationMs } from './config.js';
import { WarrenError, type WarrenErrorOptions } from './errors.js';

/**
 * Retry with delay, done by the broker: one wait queue per delay tier (`<queue>.retry.<delay>`)
 * with `x-message-ttl`, whose expired messages dead-letter back to the origin queue through the
 * default exchange. The attempt count lives in warren's own header, because `x-death` cannot be
 * trusted once a message is re-published (RabbitMQ 4.0 ignores it from clients).
 */

/** Headers warren sets on retried and dead-lettered copies. */
export const Header = {
  /** The attempt this delivery is (1 for the first). */
  attempt: 'x-warren-attempt',
  /** Why it was dead-lettered: retries-exhausted | non-retryable | invalid | handler. */
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
} as const;

/** Longest error message stored in a header: far below frame_max, and still readable. */
export const MAX_ERROR_MESSAGE = 1024;
export const MAX_ISSUES_JSON = 4096;

export const retryPolicySchema = z
  .strictObject({
    /** Deliveries in all, the first included. 1 = no retry. */
    maxAttempts: z.number().int().min(1).max(1000),
    /** Wait before retry 1, 2, …; the last one repeats. */
    delays: z.array(durationMs).min(1).optional(),
    /** Or: delay n = min(maxDelay, initialDelay × factor^(n-1)). */
    backoff: z.strictObject({ initialDelay: durationMs, factor: z.number().min(1).default(2), maxDelay: durationMs.optional() }).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.delays !== undefined && p.backoff !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'give either delays or backoff, not both' });
    }
    if (p.maxAttempts > 1 && p.delays === undefined && p.backoff === undefined) {
      ctx.addIssue({ code: 'custom', path: ['delays'], message: "say how long to wait between attempts: delays: ['1s', '10s'] or backoff: { initialDelay: '1s' }" });
    }
    for (const d of p.delays ?? []) {
      if (d < 1) ctx.addIssue({ code: 'custom', path: ['delays'], message: 'each delay must be at least 1 ms' });
    }
  });

export type RetryPolicyInput = z.input<typeof retryPolicySchema>;
export type RetryPolicy = z.output<typeof retryPolicySchema>;

/** The wait before retry number `retry` (1 for the first retry), in ms. */
export function retryDelay(policy: RetryPolicy, retry: number): number {
  if (policy.delays !== undefined) {
    const i = Math.min(retry, policy.delays.length) - 1;
    return policy.delays[Math.max(0, i)] ?? 0;
  }
  const b = policy.backoff;
  if (b === undefined) return 0;
  const raw = b.initialDelay * b.factor ** Math.max(0, retry - 1);
  return Math.round(b.maxDelay !== undefined ? Math.min(b.maxDelay, raw) : raw);
}

/** Every delay tier the policy can use, each once, ascending. */
export function retryTiers(policy: RetryPolicy): number[] {
  const tiers = new Set<number>();
  for (let retry = 1; retry < policy.maxAttempts; retry += 1) tiers.add(retryDelay(policy, retry));
  return [...tiers].sort((a, b) => a - b);
}

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

/**
 * Throw this from a handler for a failure that retrying cannot fix (a declined card, a missing
 * record): the message goes straight to the dead-letter queue.
 */
export class NonRetryableError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('NON_RETRYABLE', message, options);
  }
}
