import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, defineConsumer, defineMessage } from '../../src/index.js';
import { attemptOf, bounded } from '../../src/dead-letter/headers.js';
import { formatDelay, waitQueueName } from '../../src/dead-letter/wait-queues.js';
import { retryDelay, retryPolicySchema, retryTiers } from '../../src/define/retry-policy.js';

const policy = (input: z.input<typeof retryPolicySchema>) => retryPolicySchema.parse(input);

describe('retry policy', () => {
  it('uses the listed delays in order and repeats the last', () => {
    const p = policy({ maxAttempts: 6, delays: ['1s', '10s', '1m'] });
    expect([1, 2, 3, 4, 5].map((r) => retryDelay(p, r))).toEqual([1000, 10_000, 60_000, 60_000, 60_000]);
    expect(retryTiers(p)).toEqual([1000, 10_000, 60_000]);
  });

  it('or grows exponentially up to maxDelay', () => {
    const p = policy({ maxAttempts: 6, backoff: { initialDelay: '1s', factor: 3, maxDelay: '20s' } });
    expect([1, 2, 3, 4, 5].map((r) => retryDelay(p, r))).toEqual([1000, 3000, 9000, 20_000, 20_000]);
    expect(retryTiers(p)).toEqual([1000, 3000, 9000, 20_000]);
  });

  it('has no tiers when it never retries', () => {
    expect(retryTiers(policy({ maxAttempts: 1 }))).toEqual([]);
  });

  it('refuses a policy without delays, with both delays and backoff, or with a bad duration', () => {
    expect(retryPolicySchema.safeParse({ maxAttempts: 3 }).success).toBe(false);
    expect(retryPolicySchema.safeParse({ maxAttempts: 3, delays: ['1s'], backoff: { initialDelay: '1s' } }).success).toBe(false);
    expect(retryPolicySchema.safeParse({ maxAttempts: 3, delays: ['soon'] }).success).toBe(false);
    expect(retryPolicySchema.safeParse({ maxAttempts: 0, delays: ['1s'] }).success).toBe(false);
  });

  it('names wait queues after their delay', () => {
    expect([250, 1000, 90_000, 60_000, 7_200_000].map(formatDelay)).toEqual(['250ms', '1s', '90s', '1m', '2h']);
    expect(waitQueueName('billing.orders', 10_000)).toBe('billing.orders.retry.10s');
  });

  it('reads the attempt from warren’s header, defaulting to 1', () => {
    expect(attemptOf(undefined)).toBe(1);
    expect(attemptOf({ 'x-warren-attempt': 3 })).toBe(3);
    expect(attemptOf({ 'x-warren-attempt': 'junk' })).toBe(1);
    expect(attemptOf({ 'x-warren-attempt': 0 })).toBe(1);
    // Trusted only within the policy's attempts: a spoofed huge count does not skip the retries.
    expect(attemptOf({ 'x-warren-attempt': 1e308 }, 5)).toBe(1);
    expect(attemptOf({ 'x-warren-attempt': 6 }, 5)).toBe(1);
    expect(attemptOf({ 'x-warren-attempt': 5 }, 5)).toBe(5);
    expect(attemptOf({ 'x-warren-attempt': 1e308 })).toBe(1);
    expect(attemptOf({ 'x-warren-attempt': 2.5 }, 5)).toBe(1);
  });

  it('bounds header text', () => {
    expect(bounded('x'.repeat(5000), 1024)).toHaveLength(1024);
    expect(bounded('short', 1024)).toBe('short');
  });

  it("refuses onError 'requeue' together with a retry policy", () => {
    const M = defineMessage({ name: 'm', exchange: '', routingKey: 'q', schema: z.object({}) });
    expect(() => defineConsumer({ queue: 'q', message: M, onError: 'requeue', retry: { maxAttempts: 3, delays: ['1s'] }, handle: () => undefined })).toThrow(
      ConfigError,
    );
  });
});
