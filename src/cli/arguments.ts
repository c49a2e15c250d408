import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { UsageError } from './exit.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** `--log-level` / LOG_LEVEL, checked: pino would otherwise fail with its own words. */
export function logLevel(value: string): string {
  if (!LEVELS.includes(value)) throw new UsageError(`log level '${value}' (--log-level or LOG_LEVEL) is not one of ${LEVELS.join(', ')}`);
  return value;
}

/**
 * pino: pretty on a terminal, JSON lines otherwise (for a log collector). `to` is the file
 * descriptor: 1 for `warren run`, whose output is its log; 2 for the other commands, whose
 * stdout is their result.
 */
export function makeLogger(level: string, to: 1 | 2): Logger {
  const tty = to === 1 ? process.stdout.isTTY : process.stderr.isTTY;
  if (tty) return pino({ level }, pretty({ colorize: true, sync: true, destination: to, ignore: 'pid,hostname', singleLine: true }));
  return pino({ level }, pino.destination({ dest: to, sync: true }));
}

export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} takes a whole number ≥ 1, not '${value}'`);
    return n;
  };
}

export function positiveNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} takes a number > 0, not '${value}'`);
    return n;
  };
}
