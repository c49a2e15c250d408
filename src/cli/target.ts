import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { connect, redactSecrets, redactUrl, type App, type ConnectOptions, type Credentials, type ManagementCredentials, type Warren } from '../index.js';
import { UsageError } from './exit.js';

/** Options every command that talks to the broker takes. */
export interface ConnectionFlags {
  url?: string;
  managementUrl?: string;
  username?: string;
  passwordFile?: string;
}

/** Where the command connects. */
export interface Target {
  urls: string[];
  managementUrl: string;
  vhost: string;
  /** The login apart from the URLs: from the command line and environment, else the app's `connect.credentials`. */
  credentials: Credentials | undefined;
  /** The management API's login apart from its URL (see resolveTarget). */
  managementCredentials: ManagementCredentials | undefined;
  /** The passwords in those URLs and credentials: never printed. */
  secrets: string[];
}

const LOCAL = 'amqp://guest:guest@localhost:5672';
const LOCAL_NO_LOGIN = 'amqp://localhost:5672';

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

/**
 * The login from the command line and environment: `--username` / WARREN_USERNAME, and the
 * password from `--password-file` / WARREN_PASSWORD_FILE or WARREN_PASSWORD (never a flag: a
 * command line is visible to every user of the machine in `ps`). Undefined when none is given.
 */
function commandLineCredentials(flags: ConnectionFlags): Credentials | undefined {
  const env = (name: string): string | undefined => (process.env[name] !== undefined && process.env[name] !== '' ? process.env[name] : undefined);
  const username = flags.username ?? env('WARREN_USERNAME');
  const passwordFile = flags.passwordFile ?? env('WARREN_PASSWORD_FILE');
  const password = env('WARREN_PASSWORD');
  if (password !== undefined && passwordFile !== undefined) {
    throw new UsageError(`the password is given twice, by WARREN_PASSWORD and ${flags.passwordFile !== undefined ? '--password-file' : 'WARREN_PASSWORD_FILE'}: give one`);
  }
  if (username === undefined && password === undefined && passwordFile === undefined) return undefined;
  return { ...(username !== undefined ? { username } : {}), ...(password !== undefined ? { password } : {}), ...(passwordFile !== undefined ? { passwordFile } : {}) };
}

/** The password of `credentials` (read from its file, when it can be), for redaction only: connect() reads the file itself, and reports a file it cannot read. */
function passwordOf(credentials: Credentials | ManagementCredentials | undefined): string[] {
  if (credentials?.password !== undefined) return [credentials.password];
  if (credentials?.passwordFile === undefined) return [];
  try {
    const p = readFileSync(credentials.passwordFile, 'utf8').replace(/[\r\n]+$/, '');
    return p !== '' ? [p, encodeURIComponent(p)] : [];
  } catch {
    return [];
  }
}

/** The command line's login against a URL's: each of the user name and the password from one place. */
function checkAgainst(url: URL, credentials: Credentials, where: string): void {
  const passwordFrom = credentials.passwordFile !== undefined ? '--password-file / WARREN_PASSWORD_FILE' : 'WARREN_PASSWORD';
  if ((credentials.password !== undefined || credentials.passwordFile !== undefined) && url.password !== '') {
    throw new UsageError(`the password is given twice, in ${where} and by ${passwordFrom}: remove it from the URL (amqp://user@host)`);
  }
  if (credentials.username !== undefined && url.username !== '') throw new UsageError(`the user name is given twice, in ${where} and by --username / WARREN_USERNAME: give one`);
  if (credentials.username === undefined && url.username === '' && (credentials.password !== undefined || credentials.passwordFile !== undefined)) {
    throw new UsageError(`${passwordFrom} needs a user name: give --username, WARREN_USERNAME, or the user in ${where} (amqp://user@host)`);
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
 * login: the URL's, with `--username` / WARREN_USERNAME and `--password-file` / WARREN_PASSWORD_FILE
 * / WARREN_PASSWORD beside it; else the app's `connect.credentials`. The management API:
 * `--management-url`, else RABBITMQ_MANAGEMENT_URL, else the app's (only when the broker URLs
 * are the app's too: never another broker's API), else the broker's host on port 15672; it logs
 * in as its URL says, else (no userinfo in it) with the broker's login.
 */
export function resolveTarget(flags: ConnectionFlags, app?: App): Target {
  const fromFlag = flags.url !== undefined;
  const given = flags.url ?? process.env['AMQP_URL'];
  const listed = given?.split(',').map((u) => u.trim()).filter((u) => u !== '') ?? [];
  const fromApp = listed.length === 0 && app?.connect.urls !== undefined && app.connect.urls.length > 0;
  const commandLine = commandLineCredentials(flags);
  const credentials = commandLine ?? app?.connect.credentials;
  const urls = listed.length > 0 ? listed : fromApp ? [...(app?.connect.urls ?? [])] : [credentials !== undefined ? LOCAL_NO_LOGIN : LOCAL];
  const amqpWhere = listed.length > 0 ? (fromFlag ? '--url' : 'AMQP_URL') : fromApp ? "the app's connect.urls" : 'the default URL';
  for (const u of urls) for (const p of passwordsOf(u)) seen.add(p);
  for (const p of passwordOf(credentials)) seen.add(p);
  const parsed = urls.map((u) => checked(u, ['amqp:', 'amqps:'], amqpWhere, 'amqp://user:password@host:5672/vhost'));
  if (commandLine !== undefined) for (const u of parsed) checkAgainst(u, commandLine, amqpWhere);
  const amqp = parsed[0] as URL;
  const appManagement = fromApp && flags.managementUrl === undefined && process.env['RABBITMQ_MANAGEMENT_URL'] === undefined ? app?.connect.managementUrl : undefined;
  const managementGiven = flags.managementUrl ?? process.env['RABBITMQ_MANAGEMENT_URL'] ?? appManagement;
  const managementUrl = managementGiven ?? managementUrlFor(amqp, credentials === undefined);
  const managementCredentials =
    appManagement !== undefined && app?.connect.managementCredentials !== undefined ? app.connect.managementCredentials : managementLoginFor(managementUrl, credentials, amqp);
  for (const p of [...passwordsOf(managementUrl), ...passwordOf(managementCredentials)]) seen.add(p);
  const managementWhere = flags.managementUrl !== undefined ? '--management-url' : 'RABBITMQ_MANAGEMENT_URL';
  checked(managementUrl, ['http:', 'https:'], managementWhere, 'http://user:password@host:15672');
  return {
    urls,
    managementUrl,
    vhost: decodeURIComponent(amqp.pathname.slice(1)) || '/',
    credentials,
    managementCredentials,
    secrets: [...[...urls, managementUrl].flatMap(passwordsOf), ...passwordOf(credentials), ...passwordOf(managementCredentials)],
  };
}

/** The management API beside an AMQP broker: same host (and the URL's login, `withLogin`), port 15672 (15671 with TLS). */
function managementUrlFor(amqp: URL, withLogin: boolean): string {
  const m = new URL(amqp.protocol === 'amqps:' ? 'https://localhost:15671' : 'http://localhost:15672');
  m.hostname = amqp.hostname;
  if (withLogin) {
    m.username = amqp.username;
    m.password = amqp.password;
  }
  return m.toString().replace(/\/$/, '');
}

/** A management URL without userinfo logs in with the broker's login: `credentials`, with the AMQP URL's user name when they give none. */
function managementLoginFor(managementUrl: string, credentials: Credentials | undefined, amqp: URL): ManagementCredentials | undefined {
  if (credentials === undefined || credentials.mechanism === 'EXTERNAL') return undefined;
  try {
    const m = new URL(managementUrl);
    if (m.username !== '' || m.password !== '') return undefined;
  } catch {
    return undefined; // checked() reports it
  }
  const login: ManagementCredentials = { ...credentials };
  delete (login as Credentials).mechanism;
  const named = login.username !== undefined || login.usernameFile !== undefined;
  return named || amqp.username === '' ? login : { ...login, username: decodeURIComponent(amqp.username) };
}

/** Connects as the app does (its connect options, the target's URLs and logins), named `name`, with what the command overrides. */
export function connectApp(app: App | undefined, target: Target, name: string, logger: Logger, overrides: Partial<ConnectOptions> = {}): Promise<Warren> {
  // The target's logins replace the app's: they were chosen with the URLs.
  const options = { ...app?.connect };
  delete options.credentials;
  delete options.managementCredentials;
  return connect({
    ...options,
    urls: target.urls,
    managementUrl: target.managementUrl,
    ...(target.credentials !== undefined ? { credentials: target.credentials } : {}),
    ...(target.managementCredentials !== undefined ? { managementCredentials: target.managementCredentials } : {}),
    name,
    logger,
    ...overrides,
  });
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
