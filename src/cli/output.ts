/** Plain-text tables and numbers for the terminal; JSON for scripts. */

export type Row = readonly (string | number)[];

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(header: Row, rows: readonly Row[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || /^(-?\d+(\.\d+)?|-)$/.test(String(r[i]))));
  return all
    .map((r) =>
      r
        .map((cell, i) => (numeric[i] === true ? String(cell).padStart(widths[i] ?? 0) : String(cell).padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** One decimal for rates. */
export function fixed(n: number): string {
  return n.toFixed(1);
}

/** A value in one line, at most `max` characters. */
export function short(value: unknown, max = 120): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}
