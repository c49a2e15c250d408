import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LinkOptions, Transport } from '../../src/amqp/transport.js';
import type { MemoryBroker } from '../../src/memory/broker.js';
import { memory } from '../../src/memory/transport.js';
import { ConfigError, connect, CredentialsError, inspectBroker, type ConnectOptions } from '../../src/index.js';

const SECRET = 'Unit-Secret-7f3a9c21e8-long-enough';
const dir = mkdtempSync(join(tmpdir(), 'warren-credentials-'));
let files = 0;
function secretFile(contents: string): string {
  const path = join(dir, `secret-${++files}`);
  writeFileSync(path, contents);
  return path;
}

/** The in-memory transport, recording the URL and login of every connection attempt. */
function recording(): { transport: Transport; broker: MemoryBroker; attempts: { url: string; login: LinkOptions['login'] }[] } {
  const inner = memory();
  const attempts: { url: string; login: LinkOptions['login'] }[] = [];
  const transport: Transport = {
    name: 'recording',
    connect(url, options) {
      attempts.push({ url, login: options.login });
      return inner.connect(url, options);
    },
  };
  return { transport, broker: inner.broker, attempts };
}

const closing: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((w) => w.close()));
});

async function rejection(options: ConnectOptions): Promise<unknown> {
  return connect(options).then(
    (w) => {
      closing.push(w);
      return new Error('connect() resolved');
    },
    (e: unknown) => e,
  );
}

/** Every text an error carries: message, stack, causes, JSON. */
function texts(err: unknown): string {
  const out: string[] = [JSON.stringify(err)];
  for (let e = err; e instanceof Error; e = e.cause) out.push(e.message, e.stack ?? '');
  return out.join('\n');
}

describe('the credentials option', () => {
  it('gives the login apart from the URL: the transport gets it, and a URL without userinfo', async () => {
    expect.hasAssertions();
    const { transport, attempts } = recording();
    const w = await connect({ urls: ['amqp://billing@rabbit:5672/shop'], credentials: { passwordFile: secretFile(`${SECRET}\n`) }, transport });
    closing.push(w);
    expect(attempts).toEqual([{ url: 'amqp://rabbit:5672/shop', login: { username: 'billing', password: SECRET } }]);
    // health() shows the URL as given (the user, never a password).
    expect(w.health().connections.publish.url).toBe('amqp://billing@rabbit:5672/shop');
  });

  it('reads the files at each connection attempt: a rotated secret is used on reconnect', async () => {
    expect.hasAssertions();
    const { transport, broker, attempts } = recording();
    const passwordFile = secretFile('first-password\r\n');
    const usernameFile = secretFile('svc-user\n\n');
    const w = await connect({ urls: ['amqp://rabbit'], credentials: { usernameFile, passwordFile }, transport, reconnect: { initialDelay: 1, maxDelay: 1 } });
    closing.push(w);
    writeFileSync(passwordFile, 'second-password\n');
    const reconnected = new Promise((resolve) => w.once('connected', resolve));
    broker.dropConnections();
    await reconnected;
    expect(attempts.map((a) => a.login)).toEqual([
      { username: 'svc-user', password: 'first-password' },
      { username: 'svc-user', password: 'second-password' },
    ]);
  });

  it.each([
    ['the password in the URL and in passwordFile', { urls: [`amqp://u:${SECRET}@rabbit`], credentials: { passwordFile: '/run/secrets/pw' } }, 'the password is given twice'],
    ['the user name in the URL and in credentials', { urls: ['amqp://u@rabbit'], credentials: { username: 'v', password: SECRET } }, 'the user name is given twice'],
    ['password and passwordFile', { urls: ['amqp://rabbit'], credentials: { username: 'u', password: SECRET, passwordFile: '/x' } }, 'give password or passwordFile, not both'],
    ['username and usernameFile', { urls: ['amqp://rabbit'], credentials: { username: 'u', usernameFile: '/x', password: SECRET } }, 'give username or usernameFile, not both'],
    ['a password and no user name anywhere', { urls: ['amqp://rabbit'], credentials: { password: SECRET } }, 'a password is given without a user name'],
    ['an empty password', { urls: ['amqp://u@rabbit'], credentials: { password: '' } }, 'credentials.password: empty'],
    ['a misspelt key', { urls: ['amqp://u@rabbit'], credentials: { passwrd: SECRET } as never }, 'Unrecognized key: "passwrd"'],
    ['credentials that are not an object', { urls: ['amqp://u@rabbit'], credentials: SECRET as never }, 'credentials: Invalid input'],
    ['a management password twice', { urls: ['amqp://rabbit'], managementUrl: `http://m:${SECRET}@rabbit:15672`, managementCredentials: { password: SECRET } }, 'managementCredentials: the password is given twice'],
  ] as [string, ConnectOptions, string][])('refuses %s with a ConfigError that does not show it', async (_what, options, problem) => {
    expect.hasAssertions();
    const err = await rejection({ ...options, transport: memory() });
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(problem);
    expect(texts(err)).not.toContain(SECRET);
  });

  it('a password given where its file path belongs (no directory in it, no such file) is not shown as a path', async () => {
    expect.hasAssertions();
    const { transport } = recording();
    const err = await rejection({ urls: ['amqp://u@rabbit'], credentials: { passwordFile: SECRET }, transport });
    expect(err).toMatchObject({ code: 'CREDENTIALS_UNREADABLE', path: '***' });
    expect((err as Error).message).toMatch(/a name with no '\/', \d+ characters, not shown in case it is the password itself/);
    expect(texts(err)).not.toContain(SECRET);
  });

  it('a file that cannot be read or is empty fails connect() at once with CredentialsError naming the file, never its contents', async () => {
    expect.hasAssertions();
    const { transport, attempts } = recording();
    const missing = join(dir, 'no-such-secret');
    const err = await rejection({ urls: ['amqp://u@rabbit'], credentials: { passwordFile: missing }, transport });
    expect(err).toBeInstanceOf(CredentialsError);
    expect(err).toMatchObject({ code: 'CREDENTIALS_UNREADABLE', path: missing });
    expect((err as Error).message).toContain(`'${missing}' (ENOENT)`);
    const empty = secretFile('\n');
    const err2 = await rejection({ urls: ['amqp://rabbit'], credentials: { username: 'u', passwordFile: empty }, transport });
    expect(err2).toBeInstanceOf(CredentialsError);
    expect((err2 as Error).message).toContain(`'${empty}' is empty`);
    // A directory (what a secret volume is) names the path and the reason, not what is in it.
    const err3 = await rejection({ urls: ['amqp://rabbit'], credentials: { username: 'u', passwordFile: dir }, transport });
    expect((err3 as Error).message).toContain('(EISDIR)');
    expect(attempts).toEqual([]);
  });
});

describe('a transport error that quotes the password', () => {
  it('is cleaned in the disconnected event, the log, and the diagnostics channel: message, stack and cause', async () => {
    expect.hasAssertions();
    const inner = memory();
    const links: { emit(event: 'close', err: Error): void }[] = [];
    const transport: Transport = {
      name: 'quoting',
      async connect(url, options) {
        const link = await inner.connect(url, options);
        links.push(link as unknown as { emit(event: 'close', err: Error): void });
        return link;
      },
    };
    const { pino } = await import('pino');
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (l: string) => void lines.push(l) });
    const seen: unknown[] = [];
    const diagnostics = await import('node:diagnostics_channel');
    const onState = (m: unknown): void => void seen.push(m);
    diagnostics.subscribe('warren:connection', onState);
    try {
      const w = await connect({ urls: ['amqp://u@rabbit'], credentials: { passwordFile: secretFile(SECRET) }, transport, logger });
      closing.push(w);
      const disconnected = new Promise<unknown>((resolve) => w.once('disconnected', ({ error }) => resolve(error)));
      const reconnected = new Promise((resolve) => w.once('connected', resolve));
      links[0]?.emit('close', new Error(`socket to amqp://u:${SECRET}@rabbit reset`, { cause: new Error(`inner ${encodeURIComponent(SECRET)}`) }));
      const error = await disconnected;
      await reconnected;
      expect((error as Error).message).toBe('socket to amqp://u:***@rabbit reset');
      expect((error as Error).cause).toMatchObject({ message: 'inner ***' });
      const all = [texts(error), ...lines, JSON.stringify(seen)].join('\n');
      expect(all).toContain('reset');
      expect(all).not.toContain(SECRET);
      expect(all).not.toContain(encodeURIComponent(SECRET));
    } finally {
      diagnostics.unsubscribe('warren:connection', onState);
    }
  });
});

describe('the management API login', () => {
  let server: http.Server | undefined;
  afterEach(() => server?.close());

  /** A management API stand-in: records each request's Authorization header and answers an empty list. */
  async function fakeApi(): Promise<{ url: string; logins: string[] }> {
    const logins: string[] = [];
    server = http.createServer((req, res) => {
      const auth = req.headers.authorization;
      logins.push(auth === undefined ? '(none)' : Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString());
      res.setHeader('content-type', 'application/json');
      res.end('[]');
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, logins };
  }

  it('takes credentials beside the URL, reading the password file at each request', async () => {
    expect.hasAssertions();
    const api = await fakeApi();
    const passwordFile = secretFile('one\n');
    await inspectBroker({ managementUrl: api.url.replace('//', '//monitor@'), credentials: { passwordFile } });
    writeFileSync(passwordFile, 'two');
    await inspectBroker({ managementUrl: api.url, credentials: { username: 'ops', passwordFile } });
    expect(api.logins).toEqual([...Array(3).fill('monitor:one'), ...Array(3).fill('ops:two')]);
  });

  it('keeps the URL login when given no credentials, and sends none when there is none', async () => {
    expect.hasAssertions();
    const api = await fakeApi();
    await inspectBroker({ managementUrl: api.url.replace('//', '//guest:p%40ss@') });
    await inspectBroker({ managementUrl: api.url });
    expect(api.logins).toEqual([...Array(3).fill('guest:p@ss'), ...Array(3).fill('(none)')]);
  });

  it('an unreadable password file is a CredentialsError naming it', async () => {
    expect.hasAssertions();
    const api = await fakeApi();
    const missing = join(dir, 'missing-management-secret');
    const err = await inspectBroker({ managementUrl: api.url, credentials: { username: 'ops', passwordFile: missing } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialsError);
    expect((err as CredentialsError).path).toBe(missing);
    expect(api.logins).toEqual([]);
  });
});
