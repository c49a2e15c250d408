import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { isApp, redactUrl, type App } from '../index.js';
import { UsageError } from './exit.js';

/** Options every command that talks to the broker takes. */
export interface ConnectionFlags {
  url?: string;
  managementUrl?: string;
}

/** Where the command connects: `--url`, else AMQP_URL, else the app's `connect.urls`, else a local broker. */
export interface Target {
  urls: string[];
  managementUrl: string;
  vhost: string;
  /** The passwords in those URLs: never printed. */
  secrets: string[];
}

const LOCAL = 'amqp://guest:guest@localhost:5672';

export function resolveTarget(flags: ConnectionFlags, app?: App): Target {
  const given = flags.url ?? process.env['AMQP_URL'];
  const listed = given?.split(',').map((u) => u.trim()).filter((u) => u !== '') ?? [];
  const urls = listed.length > 0 ? listed : (app?.connect.urls ?? [LOCAL]);
  const first = urls[0] ?? LOCAL;
  // Shown in an error: without its password, even when a missing scheme makes `user:` look like one.
  const shown = redactUrl(first).replace(/^[^/]*@/, '***@');
  let amqp: URL;
  try {
    amqp = new URL(first);
  } catch {
    throw new UsageError(`'${shown}' is not a URL: give --url (or AMQP_URL) as amqp://user:password@host:5672/vhost`);
  }
  if (amqp.protocol !== 'amqp:' && amqp.protocol !== 'amqps:') {
    throw new UsageError(`'${shown}' is not an amqp:// or amqps:// URL: give --url (or AMQP_URL) as amqp://user:password@host:5672/vhost`);
  }
  const managementUrl = flags.managementUrl ?? process.env['RABBITMQ_MANAGEMENT_URL'] ?? app?.connect.managementUrl ?? managementUrlFor(amqp);
  const secrets = [...urls, managementUrl].flatMap((u) => {
    try {
      // As written in the URL (any escaping), decoded, and escaped again: redact() must find each.
      const raw = new URL(u).password;
      const p = decodeURIComponent(raw);
      return p !== '' ? [...new Set([raw, p, encodeURIComponent(p)])] : [];
    } catch {
      return [];
    }
  });
  return { urls, managementUrl, vhost: decodeURIComponent(amqp.pathname.slice(1)) || '/', secrets };
}

/** The management API beside an AMQP broker: same host and credentials, port 15672 (15671 with TLS). */
function managementUrlFor(amqp: URL): string {
  const m = new URL(amqp.protocol === 'amqps:' ? 'https://localhost:15671' : 'http://localhost:15672');
  m.hostname = amqp.hostname;
  m.username = amqp.username;
  m.password = amqp.password;
  return m.toString().replace(/\/$/, '');
}

/**
 * Loads the app module: `export default defineApp(…)`. TypeScript loads without a build step
 * (through tsx); JavaScript as it is.
 */
export async function loadApp(path: string | undefined): Promise<App> {
  const given = path ?? process.env['WARREN_APP'];
  if (given === undefined || given === '') throw new UsageError('give the app module: warren <command> ./app.ts (or --app ./app.ts, or WARREN_APP)');
  const file = resolve(given);
  if (!existsSync(file)) throw new UsageError(`no app module at ${file}`);
  let mod: Record<string, unknown>;
  try {
    // Registered for the whole process (not tsx's scoped tsImport), so the app's `import 'warren'`
    // is the very module this command uses: one copy of its classes and channels.
    if (/\.[mc]?tsx?$/.test(file)) (await import('tsx/esm/api')).register();
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    // The module's own failure (a ConfigError from defineApp, a syntax error): the user's to fix.
    throw new UsageError(`loading ${given} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const inner = mod['default'] as Record<string, unknown> | undefined;
  const app = [inner, inner?.['default'], mod['app']].find(isApp);
  if (app === undefined) throw new UsageError(`${given} does not export an app: end it with \`export default defineApp({ name, topology, messages, consumers })\``);
  return app;
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

/** Hides every secret in a text that is about to be printed. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***');
  return out;
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
