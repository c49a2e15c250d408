// The pass rules every chaos scenario is held to, and the figures table `npm run chaos` prints.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import type { Figures } from './workload.js';

export const RESULTS_DIR = path.resolve(import.meta.dirname, 'results');
export const FIGURES_FILE = path.join(RESULTS_DIR, 'figures.jsonl');

export interface Row extends Figures {
  title: string;
  broken: string[];
  /** The RabbitMQ version the scenario ran on, e.g. `3.10.8` or `4.0.5`. */
  rabbitmq: string;
}

export interface RuleOptions {
  /** Publishing and consuming must both resume after the fault (default true). */
  expectRecovery?: boolean;
}

/** The rules that `f` breaks (empty: it passes). L, H and X are 0, D is bounded, every failure is typed. */
export function brokenRules(f: Figures, { expectRecovery = true }: RuleOptions = {}): string[] {
  const broken: string[] = [];
  if (f.L !== 0) broken.push(`L=${f.L} confirmed messages were never consumed`);
  if (f.H !== 0) broken.push(`H=${f.H} publishes never settled`);
  if (f.X !== 0) broken.push(`X=${f.X} consumed messages were never published`);
  if (f.untyped !== 0) broken.push(`${f.untyped} publishes failed with an error that is not a WarrenError`);
  if (f.unhandled !== 0) broken.push(`${f.unhandled} unhandled promise rejections`);
  if (f.D > f.duplicateBound) broken.push(`D=${f.D} duplicates, above the bound ${f.duplicateBound}`);
  if (f.P !== f.C + f.F + f.H) broken.push(`P=${f.P} is not C+F+H=${f.C + f.F + f.H}`);
  if (expectRecovery && f.recoveryMs === null) broken.push('publishing or consuming never resumed after the fault');
  return broken;
}

/** Appends a scenario's figures for the table printed after the run. */
export function record(title: string, f: Figures, broken: string[], rabbitmq: string): void {
  const row: Row = { ...f, title, broken, rabbitmq };
  appendFileSync(FIGURES_FILE, JSON.stringify(row) + '\n');
}

const fmtMs = (ms: number | null): string => (ms === null ? '—' : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

/** A markdown table (readable in a terminal too) with the notes and broken rules under it. */
export function formatTable(rows: Row[]): string {
  const head = ['scenario', 'queue', 'P', 'C', 'F', 'H', 'U', 'D', 'L', 'X', 'recovery', 'result'];
  const body = rows.map((r) => [
    r.title,
    r.queueType,
    String(r.P),
    String(r.C),
    String(r.F),
    String(r.H),
    String(r.U),
    String(r.D),
    String(r.L),
    String(r.X),
    fmtMs(r.recoveryMs),
    r.broken.length === 0 ? 'pass' : 'FAIL',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]?.length ?? 0)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const out = [line(head), `|${widths.map((w, i) => (i < 2 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)];
  const notes = rows.flatMap((r) => {
    const failures = Object.entries(r.failures).map(([code, n]) => `${n} ${code}`);
    const items = [
      ...(failures.length > 0 ? [`F: ${failures.join(', ')}`] : []),
      ...r.notes,
      ...r.broken.map((b) => `BROKEN: ${b}`),
    ];
    return items.length === 0 ? [] : [`- ${r.title} (${r.queueType}): ${items.join('; ')}`];
  });
  return [...out, '', ...notes].join('\n');
}
