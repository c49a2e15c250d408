import { describe, expect, it } from 'vitest';
import { backoffCeiling, backoffDelay } from '../../src/backoff.js';

const opts = { initialDelayMs: 100, maxDelayMs: 5_000, factor: 2 };

describe('backoff (exponential, full jitter)', () => {
  it('grows the ceiling by the factor from initialDelayMs and caps it at maxDelayMs', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 10].map((a) => backoffCeiling(a, opts))).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  });

  it('draws uniformly in [0, ceiling) — 0 at random 0, just under the ceiling near 1', () => {
    expect(backoffDelay(3, opts, () => 0)).toBe(0);
    expect(backoffDelay(3, opts, () => 0.5)).toBe(400);
    expect(backoffDelay(3, opts, () => 0.999999)).toBe(799);
  });

  it('stays finite and capped for huge or odd attempt numbers', () => {
    for (const attempt of [1e6, Number.MAX_SAFE_INTEGER, -3, 2.7]) {
      const d = backoffDelay(attempt, opts, () => 0.999);
      expect(Number.isFinite(d)).toBe(true);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(5_000);
    }
  });

  it('spreads many clients over the whole window (no lockstep)', () => {
    const delays = Array.from({ length: 2000 }, () => backoffDelay(4, opts));
    const ceiling = backoffCeiling(4, opts);
    expect(Math.min(...delays)).toBeLessThan(ceiling * 0.1);
    expect(Math.max(...delays)).toBeGreaterThan(ceiling * 0.9);
    expect(delays.every((d) => d >= 0 && d < ceiling)).toBe(true);
  });
});
