const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

type DurationUnit = 'ms' | 's' | 'm' | 'h';

/**
 * A duration in ms, or a string such as `'250ms'`, `'10s'`, `'1.5m'`, `'1h'` (no space: `'200 ms'`
 * does not compile, as it would not parse).
 */
export type Duration = number | `${bigint}${DurationUnit}` | `${bigint}.${bigint}${DurationUnit}`;

/** Converts a Duration to milliseconds; undefined for a malformed one. */
export function toMs(d: number | string): number | undefined {
  if (typeof d === 'number') return Number.isFinite(d) && d >= 0 ? d : undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d.trim());
  if (!m) return undefined;
  const unit = UNITS[m[2] ?? ''];
  return unit === undefined ? undefined : Number(m[1]) * unit;
}
