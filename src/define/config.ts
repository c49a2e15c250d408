import { z } from 'zod';
import { ConfigError } from '../support/errors.js';
import { toMs } from './duration.js';

/** A zod schema for a Duration (`250`, `'10s'`, `'1m'`), output in milliseconds. */
export const durationMs = z
  .union([z.number(), z.string()])
  .transform((v, ctx) => {
    const ms = toMs(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `'${String(v)}' is not a duration (use ms as a number, or '500ms', '10s', '1m', '1h')` });
      return z.NEVER;
    }
    return ms;
  });

/** Formats zod issues as `path: message` lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`);
}

/**
 * Parses `input` with `schema`, adding any problems (prefixed with `at`) to `problems` instead of
 * throwing, so a caller can go on checking the rest and report everything at once.
 */
export function collect<S extends z.ZodType>(schema: S, input: unknown, at: string, problems: string[]): z.output<S> | undefined {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  for (const line of formatIssues(result.error.issues)) problems.push(at === '' ? line : line.startsWith('(root)') ? `${at}${line.slice(6)}` : `${at}.${line}`);
  return undefined;
}

/**
 * Parses `input` with `schema` once, at the edge; every problem is reported in one ConfigError.
 */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, where: string): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ConfigError(where, formatIssues(result.error.issues));
  return result.data;
}
