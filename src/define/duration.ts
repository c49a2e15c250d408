const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration in ms, or a string such as `'250ms'`, `'10s'`, `'1m'`, `'1h'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h'}`;

/** Converts a Duration to milliseconds; undefined for a malformed one. */
export function toMs(d: number | string): number | undefined {
  if (typeof d === 'number') return Number.isFinite(d) && d >= 0 ? d : undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d.trim());
  if (!m) return undefined;
  const unit = UNITS[m[2] ?? ''];
  return unit === undefined ? undefined : Number(m[1]) * unit;
}
