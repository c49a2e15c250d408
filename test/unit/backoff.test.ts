import { describe, expect, it } from 'vitest';
import { backoffCeiling, backoffDelay } from '../../src/amqp/backoff.js';

const opts = { initialDelayMs: 100, maxDelayMs: 5_000, factor: 2 };
/** The largest value Math.random() can return. */
const almostOne = 1 - 2 ** -53;

describe('backoff (exponential, full jitter)', () => {
  it('attempt 0 waits less than initialDelayMs', () => {
    expect(backoffCeiling(0, opts)).toBe(100);
    expect(backoffDelay(0, opts, () => 0)).toBe(0);
    expect(backoffDelay(0, opts, () => almostOne)).toBe(99);
  });

  it('grows the ceiling by the factor per attempt and caps it at maxDelayMs', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 10].map((a) => backoffCeiling(a, opts))).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    expect([0, 1, 2, 3].map((a) => backoffCeiling(a, { initialDelayMs: 50, maxDelayMs: 1_000, factor: 3 }))).toEqual([50, 150, 450, 1000]);
    expect(backoffCeiling(9, { initialDelayMs: 250, maxDelayMs: 60_000, factor: 1 })).toBe(250);
  });

  it('uses the documented defaults when given no options: 100 ms, ×2, at most 30 s', () => {
    expect([0, 1, 2, 8, 9, 50].map((a) => backoffCeiling(a))).toEqual([100, 200, 400, 25_600, 30_000, 30_000]);
  });

  it('draws from [0, ceiling): 0 at random 0, just under the ceiling near 1, in proportion between', () => {
    for (let attempt = 0; attempt <= 8; attempt += 1) {
      const ceiling = backoffCeiling(attempt, opts);
      expect(backoffDelay(attempt, opts, () => 0)).toBe(0);
      expect(backoffDelay(attempt, opts, () => 0.5)).toBe(ceiling / 2);
      expect(backoffDelay(attempt, opts, () => almostOne)).toBe(ceiling - 1);
    }
  });

  it('stays finite and within the cap for huge or odd attempt numbers', () => {
    for (const attempt of [64, 1_000, 1e6, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY, -3, 2.7]) {
      const ceiling = backoffCeiling(attempt, opts);
      const delay = backoffDelay(attempt, opts, () => almostOne);
      expect(Number.isFinite(ceiling)).toBe(true);
      expect(ceiling).toBeLessThanOrEqual(5_000);
      expect(Number.isFinite(delay)).toBe(true);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(5_000);
    }
    // A factor so large that factor^attempt alone is Infinity still yields the cap.
    expect(backoffCeiling(1e6, { initialDelayMs: 100, maxDelayMs: 5_000, factor: 1e9 })).toBe(5_000);
  });

  it('spreads many clients over the whole window instead of bringing them back in lockstep', () => {
    const ceiling = backoffCeiling(4, opts);
    const delays = Array.from({ length: 2_000 }, () => backoffDelay(4, opts));
    expect(delays.every((d) => Number.isInteger(d) && d >= 0 && d < ceiling)).toBe(true);
    // With 2 000 uniform draws, missing either tenth of the window has a probability of about 1e-92.
    expect(Math.min(...delays)).toBeLessThan(ceiling * 0.1);
    expect(Math.max(...delays)).toBeGreaterThan(ceiling * 0.9);
  });
});
