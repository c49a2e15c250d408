import { z } from 'zod';
import { durationMs } from './config.js';
import type { Duration } from './duration.js';

/** The most attempts a retry policy may allow (and the highest `x-warren-attempt` trusted without one). */
export const MAX_ATTEMPTS = 1000;

/**
 * A consumer's retry policy: how many attempts, and how long to wait before each retry. The
 * waiting itself is done by the broker (see dead-letter/wait-queues.ts).
 */
export const retryPolicySchema = z
  .strictObject({
    /** Deliveries in all, the first included. 1 = no retry. */
    maxAttempts: z.number().int().min(1).max(MAX_ATTEMPTS),
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
      // It becomes a wait queue's x-message-ttl, which the broker takes in whole ms only.
      else if (!Number.isInteger(d)) ctx.addIssue({ code: 'custom', path: ['delays'], message: `${d} ms: a retry delay must be a whole number of ms` });
    }
  });

/**
 * A retry policy as written: `{ maxAttempts: 5, delays: ['1s', '10s', '1m'] }` (the last delay
 * repeats; a readonly `as const` array will do) or `{ maxAttempts: 5, backoff: { initialDelay:
 * '1s', factor: 2, maxDelay: '5m' } }`. Durations are ms or `'500ms'`, `'10s'`, `'1m'`, `'1h'`.
 */
export interface RetryPolicyInput {
  /** Deliveries in all, the first included (1 = no retry); at most 1000. */
  maxAttempts: number;
  /** Wait before retry 1, 2, …; the last one repeats. */
  delays?: readonly Duration[];
  /** Or: delay n = min(maxDelay, initialDelay × factor^(n-1)). */
  backoff?: { initialDelay: Duration; factor?: number; maxDelay?: Duration };
}
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

/**
 * The delays an ad-hoc `ctx.retry({ delay })` is rounded up to when the consumer's policy does
 * not declare that delay: each distinct delay is a wait queue on the broker, so a delay taken
 * from data must not create queues without bound.
 */
export const RETRY_DELAY_LADDER: readonly number[] = [1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 21_600_000, 86_400_000];

/**
 * The wait tier a requested retry delay uses: the delay itself when the policy declares it,
 * else the smallest declared or ladder delay at least as long (a retry delay is a minimum).
 * Undefined when it is longer than every one of them (over 24 h).
 */
export function retryTierFor(requestedMs: number, policy: RetryPolicy | undefined): number | undefined {
  const declared = policy !== undefined ? retryTiers(policy) : [];
  if (declared.includes(requestedMs)) return requestedMs;
  requestedMs = Math.ceil(requestedMs);
  let best: number | undefined;
  for (const t of [...declared, ...RETRY_DELAY_LADDER]) if (t >= requestedMs && (best === undefined || t < best)) best = t;
  return best;
}
