import type { Logger } from 'pino';
import { connect, redactSecrets, redactUrl, type App, type ConnectOptions, type Warren } from '../index.js';
import { UsageError } from './exit.js';

/** Options every command that talks to the broker takes. */
export interface ConnectionFlags {
  url?: string;
  managementUrl?: string;
}

/** Where the command connects. */
export interface Target {
  urls: string[];
  managementUrl: string;
  vhost: string;
  /** The passwords in those URLs: never printed. */
  secrets: string[];
}

const LOCAL = 'amqp://guest:guest@localhost:5672';

/** Every password a command has seen, so that nothing it prints can carry one (see main.ts). */
const seen = new Set<string>();

/**
 * Hides every password the command has seen (and `extra`) in a text about to be printed: where it
 * stands in a URL's userinfo always; anywhere else when it is long enough not to be a common word
 * (a password `e` must not turn every `e` of a message into `***`).
 */
export function redact(text: string, extra: readonly string[] = []): string {
  const secrets = [...new Set([...seen, ...extra])].filter((s) => s !== '');
  const inUrls = secrets.reduce((out, s) => out.split(`:${s}@`).join(':***@'), text);
  return redactSecrets(
    inUrls,
    secrets.filter((s) => s.length >= 8),
  );
}

/** The password as written in the URL (any escaping), decoded, and escaped again: redact() must find each. */
function passwordsOf(url: string): string[] {
  try {
    const raw = new URL(url).password;
    const p = decodeURIComponent(raw);
    return p !== '' ? [...new Set([raw, p, encodeURIComponent(p)])] : [];
  } catch {
    return [];
  }
}

/** A URL checked to be of one of `protocols`; `where` names the flag or variable it came from. */
function checked(url: string, protocols: readonly string[], where: string, example: string): URL {
  // Shown in an error: without its password, even when a missing scheme makes `user:` look like one.
  const shown = redactUrl(url).replace(/^[^/]*@/, '***@');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`'${shown}' is not a URL: give ${where} as ${example}`);
  }
  if (!protocols.includes(u.protocol)) throw new UsageError(`'${shown}' is not a ${protocols.map((p) => p + '//').join(' or ')} URL: give ${where} as ${example}`);
  return u;
}

/**
 * Broker URLs: `--url`, else AMQP_URL, else the app's `connect.urls`, else a local broker. The
 * management API: `--management-url`, else RABBITMQ_MANAGEMENT_URL, else the app's (only when
 * the broker URLs are the app's too: never another broker's API), else the broker's host on
 * port 15672 with the same credentials.
 */
export function resolveTarget(flags: ConnectionFlags, app?: App): Target {
  const fromFlag = flags.url !== undefined;
  const given = flags.url ?? process.env['AMQP_URL'];
  const listed = given?.split(',').map((u) => u.trim()).filter((u) => u !== '') ?? [];
  const fromApp = listed.length === 0 && app?.connect.urls !== undefined && app.connect.urls.length > 0;
  const urls = listed.length > 0 ? listed : fromApp ? [...(app?.connect.urls ?? [])] : [LOCAL];
  const amqpWhere = listed.length > 0 ? (fromFlag ? '--url' : 'AMQP_URL') : "the app's connect.urls";
  for (const u of urls) for (const p of passwordsOf(u)) seen.add(p);
  const parsed = urls.map((u) => checked(u, ['amqp:', 'amqps:'], amqpWhere, 'amqp://user:password@host:5672/vhost'));
  const amqp = parsed[0] as URL;
  const managementGiven = flags.managementUrl ?? process.env['RABBITMQ_MANAGEMENT_URL'] ?? (fromApp ? app?.connect.managementUrl : undefined);
  const managementUrl = managementGiven ?? managementUrlFor(amqp);
  for (const p of passwordsOf(managementUrl)) seen.add(p);
  const managementWhere = flags.managementUrl !== undefined ? '--management-url' : 'RABBITMQ_MANAGEMENT_URL';
  checked(managementUrl, ['http:', 'https:'], managementWhere, 'http://user:password@host:15672');
  return { urls, managementUrl, vhost: decodeURIComponent(amqp.pathname.slice(1)) || '/', secrets: [...urls, managementUrl].flatMap(passwordsOf) };
}

/** The management API beside an AMQP broker: same host and credentials, port 15672 (15671 with TLS). */
function managementUrlFor(amqp: URL): string {
  const m = new URL(amqp.protocol === 'amqps:' ? 'https://localhost:15671' : 'http://localhost:15672');
  m.hostname = amqp.hostname;
  m.username = amqp.username;
  m.password = amqp.password;
  return m.toString().replace(/\/$/, '');
}

/** Connects as the app does (its connect options, the target's URLs), named `name`, with what the command overrides. */
export function connectApp(app: App | undefined, target: Target, name: string, logger: Logger, overrides: Partial<ConnectOptions> = {}): Promise<Warren> {
  return connect({ ...app?.connect, urls: target.urls, managementUrl: target.managementUrl, name, logger, ...overrides });
}

/** Runs `fn` with the client, then closes it; a failure of `fn` is the one reported, not a failed close after it. */
export async function closing<T>(warren: Warren, fn: (warren: Warren) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(warren);
  } catch (err) {
    await warren.close().catch(() => undefined);
    throw err;
  }
  await warren.close();
  return result;
}
