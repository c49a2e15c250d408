import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { resolveTarget, redact, type ConnectionFlags } from '../../src/cli/target.js';
import { signalExitCode, UsageError } from '../../src/cli/exit.js';
import { table } from '../../src/cli/output.js';
import { readiness, serveProbes, type Readiness } from '../../src/cli/probes.js';
import { selectConsumers } from '../../src/cli/run.js';
import { defineApp, defineConsumer, defineMessage, redactSecrets, type App, type AppConnectOptions, type ConnectionState, type ConsumerHealth, type Health } from '../../src/index.js';

const Ping = defineMessage({ name: 'ping', exchange: '', routingKey: 'pings', schema: z.object({ n: z.number() }) });
const handle = (): void => undefined;

/** An app with three consumers: `fast` (prefetch 10, concurrency 5), `slow` (prefetch 4, concurrency 2) and `audit` (defaults: 10, 1). */
function billing(): App {
  return defineApp({
    name: 'billing',
    consumers: [
      defineConsumer({ queue: 'pings', name: 'fast', message: Ping, prefetch: 10, concurrency: 5, handle }),
      defineConsumer({ queue: 'pings', name: 'slow', message: Ping, prefetch: 4, concurrency: 2, handle }),
      defineConsumer({ queue: 'audit', message: Ping, handle }),
    ],
  });
}

/** The UsageError `fn` throws (fails the test if it throws nothing, or something else). */
function usageErrorOf(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('expected a UsageError; nothing was thrown');
}

describe('selectConsumers (warren run --only / --prefetch / --concurrency)', () => {
  it('starts every consumer of the app as defined when given no flags', () => {
    expect(selectConsumers(billing(), {}).map((c) => [c.name, c.prefetch, c.concurrency])).toEqual([
      ['fast', 10, 5],
      ['slow', 4, 2],
      ['audit', 10, 1],
    ]);
  });

  it.each<[string, string, string[]]>([
    ['one name', 'slow', ['slow']],
    ['names in any order (the app’s order kept)', 'audit,fast', ['fast', 'audit']],
    ['names with spaces and a trailing comma', ' slow , audit ,', ['slow', 'audit']],
  ])('--only picks consumers by %s', (_case, only, names) => {
    expect(selectConsumers(billing(), { only }).map((c) => c.name)).toEqual(names);
  });

  it('--only with a name the app lacks is a usage error naming it and listing the app’s consumers', () => {
    const err = usageErrorOf(() => selectConsumers(billing(), { only: 'fast,refunds' }));
    expect(err.message).toContain("'refunds'");
    expect(err.message).not.toContain("'fast'");
    expect(err.message).toContain('fast, slow, audit');
    expect(err.message).toContain("'billing'");
  });

  it('keeps the rest of each consumer as defined', () => {
    const [fast] = selectConsumers(billing(), { only: 'fast', prefetch: 20 });
    const original = billing().consumers[0];
    expect(fast).toMatchObject({ name: 'fast', queue: 'pings', ackMode: original?.ackMode, stopTimeoutMs: original?.stopTimeoutMs });
    expect(fast?.message).toBe(Ping);
    expect(fast?.handle).toBe(handle);
  });

  it.each<[string, { prefetch?: number; concurrency?: number }, [string, number, number][]]>([
    ['--prefetch above every prefetch keeps each concurrency', { prefetch: 50 }, [['fast', 50, 5], ['slow', 50, 2], ['audit', 50, 1]]],
    ['--prefetch below a concurrency caps that concurrency at it', { prefetch: 3 }, [['fast', 3, 3], ['slow', 3, 2], ['audit', 3, 1]]],
    ['--prefetch and --concurrency set both', { prefetch: 8, concurrency: 8 }, [['fast', 8, 8], ['slow', 8, 8], ['audit', 8, 8]]],
  ])('%s', (_case, flags, expected) => {
    expect(selectConsumers(billing(), flags).map((c) => [c.name, c.prefetch, c.concurrency])).toEqual(expected);
  });

  it('--concurrency alone applies where each prefetch allows it', () => {
    expect(selectConsumers(billing(), { only: 'fast,audit', concurrency: 10 }).map((c) => [c.name, c.prefetch, c.concurrency])).toEqual([
      ['fast', 10, 10],
      ['audit', 10, 10],
    ]);
  });

  it.each<[string, { only?: string; prefetch?: number; concurrency?: number }, string]>([
    ['--concurrency above a consumer’s prefetch', { concurrency: 5 }, "'slow'"],
    ['--concurrency above --prefetch', { prefetch: 2, concurrency: 3 }, "'fast'"],
  ])('%s is a usage error', (_case, flags, naming) => {
    const err = usageErrorOf(() => selectConsumers(billing(), flags));
    expect(err.message).toContain(naming);
    expect(err.message).toContain('--prefetch');
  });

  it('an app without consumers is a usage error', () => {
    expect(usageErrorOf(() => selectConsumers(defineApp({ name: 'quiet' }), {})).message).toContain("'quiet' has no consumers");
    expect(usageErrorOf(() => selectConsumers(defineApp({ name: 'quiet' }), { only: 'fast' })).message).toContain('(it has: none)');
  });

  it('does not change the app’s consumers', () => {
    const app = billing();
    selectConsumers(app, { prefetch: 1 });
    expect(app.consumers.map((c) => [c.prefetch, c.concurrency])).toEqual([
      [10, 5],
      [4, 2],
      [10, 1],
    ]);
  });
});

/** A consumer's health: attached and idle, with `overrides`. */
function consumerHealth(name: string, overrides: Partial<ConsumerHealth> = {}): ConsumerHealth {
  return {
    name,
    queue: name,
    attached: true,
    since: new Date(0),
    consumerTag: `amq.ctag-${name}`,
    inFlight: 0,
    unsettled: 0,
    oldestUnsettledMs: undefined,
    stalled: false,
    reason: undefined,
    delivered: 0,
    acked: 0,
    retried: 0,
    requeued: 0,
    rejected: 0,
    deadLettered: { invalid: 0, 'non-retryable': 0, 'retries-exhausted': 0, 'handler-failed': 0, handler: 0, 'retry-failed': 0 },
    ...overrides,
  };
}

/** warren.health() of a client whose connections are in these states, with these consumers. */
function health(publish: ConnectionState, consume: ConnectionState | undefined, consumers: ConsumerHealth[] = [], blocked = false): Health {
  const connection = (state: ConnectionState): Health['connections']['publish'] => ({ state, since: new Date(0), url: 'amqp://app:***@mq:5672' });
  return {
    ok: false, // readiness decides from the parts, not from this
    blocked,
    connections: { publish: connection(publish), consume: consume === undefined ? undefined : connection(consume) },
    consumers,
    publisher: { inFlight: 0, buffered: 0, bufferedBytes: 0, waitingForRoom: 0, published: 0, confirmed: 0, nacked: 0, returned: 0, timedOut: 0, failed: 0 },
  };
}

describe('readiness (/readyz)', () => {
  it.each<[string, Health, string[]]>([
    ['both connections open, every consumer attached', health('open', 'open', [consumerHealth('a'), consumerHealth('b')]), []],
    ['a publisher only (no consume connection)', health('open', undefined), []],
    ['the publish connection reconnecting', health('connecting', 'open'), ['publish connection connecting']],
    ['the consume connection closed', health('open', 'closed', [consumerHealth('a')]), ['consume connection closed']],
    ['blocked by a resource alarm: one reason, the alarm', health('blocked', 'open', [], true), ['blocked by a broker resource alarm']],
    ['a consumer detached', health('open', 'open', [consumerHealth('a'), consumerHealth('b', { attached: false, reason: 'channel closed' })]), ['consumer b not attached']],
    ['a consumer stalled', health('open', 'open', [consumerHealth('a', { stalled: true })]), ['consumer a stalled']],
    ['a consumer detached while stalled (detached says it)', health('open', 'open', [consumerHealth('a', { attached: false, stalled: true })]), ['consumer a not attached']],
    [
      'everything wrong at once',
      health('closing', 'connecting', [consumerHealth('a', { attached: false }), consumerHealth('b', { stalled: true })], true),
      ['publish connection closing', 'consume connection connecting', 'blocked by a broker resource alarm', 'consumer a not attached', 'consumer b stalled'],
    ],
  ])('%s', (_case, h, reasons) => {
    expect(readiness(h)).toEqual({ ready: reasons.length === 0, reasons });
  });
});

/** A port free right now: listen on port 0, note the port, close. */
async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve, reject) => probe.close((err) => (err ? reject(err) : resolve())));
  return port;
}

describe('serveProbes', () => {
  let server: Server | undefined;
  let state: Readiness = { ready: true, reasons: [] };
  let base = '';
  beforeEach(async () => {
    state = { ready: true, reasons: [] };
    const port = await freePort();
    server = await serveProbes(port, '127.0.0.1', () => state);
    base = `http://127.0.0.1:${port}`;
  });
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  async function get(path: string, method = 'GET'): Promise<{ status: number; body: unknown }> {
    const res = await fetch(base + path, { method });
    return { status: res.status, body: method === 'HEAD' ? undefined : await res.json() };
  }

  it('/healthz answers 200 alive, ready or not', async () => {
    expect.hasAssertions();
    expect(await get('/healthz')).toEqual({ status: 200, body: { status: 'alive' } });
    state = { ready: false, reasons: ['starting'] };
    expect(await get('/healthz')).toEqual({ status: 200, body: { status: 'alive' } });
  });

  it('/readyz answers 200 when ready and 503 with every reason when not, asking each time', async () => {
    expect.hasAssertions();
    expect(await get('/readyz')).toEqual({ status: 200, body: { ready: true, reasons: [] } });
    state = { ready: false, reasons: ['consume connection connecting', 'consumer billing not attached'] };
    expect(await get('/readyz?verbose=1')).toEqual({ status: 503, body: { ready: false, reasons: ['consume connection connecting', 'consumer billing not attached'] } });
  });

  it('answers JSON that no cache keeps', async () => {
    expect.hasAssertions();
    const res = await fetch(`${base}/readyz`);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('answers 404 to another path and 405 to another method', async () => {
    expect.hasAssertions();
    const notFound = await get('/metrics');
    expect(notFound.status).toBe(404);
    expect(JSON.stringify(notFound.body)).toContain('/readyz');
    expect((await get('/readyz', 'POST')).status).toBe(405);
    expect((await get('/healthz', 'HEAD')).status).toBe(200);
  });

  it('rejects when the port is taken', async () => {
    expect.hasAssertions();
    const port = Number(new URL(base).port);
    await expect(serveProbes(port, '127.0.0.1', () => state)).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('resolveTarget', () => {
  const saved = { AMQP_URL: process.env['AMQP_URL'], RABBITMQ_MANAGEMENT_URL: process.env['RABBITMQ_MANAGEMENT_URL'] };
  const setEnv = (name: keyof typeof saved, value: string | undefined): void => {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  };
  beforeEach(() => {
    setEnv('AMQP_URL', undefined);
    setEnv('RABBITMQ_MANAGEMENT_URL', undefined);
  });
  afterEach(() => {
    setEnv('AMQP_URL', saved.AMQP_URL);
    setEnv('RABBITMQ_MANAGEMENT_URL', saved.RABBITMQ_MANAGEMENT_URL);
  });

  const appWith = (connect: AppConnectOptions): App => defineApp({ name: 'billing', connect });

  it.each<[string, ConnectionFlags, string | undefined, AppConnectOptions | undefined, string[]]>([
    ['--url first', { url: 'amqp://flag:5672' }, 'amqp://env:5672', { urls: ['amqp://app:5672'] }, ['amqp://flag:5672']],
    ['then AMQP_URL', {}, 'amqp://env:5672', { urls: ['amqp://app:5672'] }, ['amqp://env:5672']],
    ['then the app’s connect.urls', {}, undefined, { urls: ['amqp://app-1:5672', 'amqp://app-2:5672'] }, ['amqp://app-1:5672', 'amqp://app-2:5672']],
    ['then a local broker', {}, undefined, undefined, ['amqp://guest:guest@localhost:5672']],
    ['an app without urls: a local broker', {}, undefined, { heartbeat: 10 }, ['amqp://guest:guest@localhost:5672']],
    ['an empty AMQP_URL counts as unset', {}, '', { urls: ['amqp://app:5672'] }, ['amqp://app:5672']],
    ['a comma-separated --url gives several', { url: 'amqp://a:5672, amqp://b:5672 ,amqp://c:5672' }, undefined, undefined, ['amqp://a:5672', 'amqp://b:5672', 'amqp://c:5672']],
    ['a comma-separated AMQP_URL gives several', {}, 'amqp://a:5672,amqp://b:5672', undefined, ['amqp://a:5672', 'amqp://b:5672']],
  ])('urls: %s', (_case, flags, env, connect, urls) => {
    setEnv('AMQP_URL', env);
    expect(resolveTarget(flags, connect === undefined ? undefined : appWith(connect)).urls).toEqual(urls);
  });

  it.each<[string, string]>([
    ['amqp://mq:5672', '/'],
    ['amqp://mq:5672/', '/'],
    ['amqp://mq:5672/%2F', '/'],
    ['amqp://mq:5672/prod', 'prod'],
    ['amqp://mq:5672/prod%2Feu', 'prod/eu'],
    ['amqps://mq:5671/billing%20eu?heartbeat=10', 'billing eu'],
  ])('the vhost of %s is %s', (url, vhost) => {
    expect(resolveTarget({ url }).vhost).toBe(vhost);
  });

  it('takes the vhost from the first URL', () => {
    expect(resolveTarget({ url: 'amqp://a:5672/one,amqp://b:5672/two' }).vhost).toBe('one');
  });

  it.each<[string, ConnectionFlags, string | undefined, AppConnectOptions | undefined, string]>([
    ['--management-url first', { managementUrl: 'http://flag:15672' }, 'http://env:15672', { managementUrl: 'http://app:15672' }, 'http://flag:15672'],
    ['then RABBITMQ_MANAGEMENT_URL', {}, 'http://env:15672', { managementUrl: 'http://app:15672' }, 'http://env:15672'],
    ['then the app’s connect.managementUrl, with its urls', {}, undefined, { urls: ['amqp://mq.internal:5672'], managementUrl: 'http://app:15672' }, 'http://app:15672'],
    ['but not the app’s beside another broker (--url): that broker’s', { url: 'amqp://staging:5672' }, undefined, { urls: ['amqp://prod:5672'], managementUrl: 'http://prod:15672' }, 'http://staging:15672'],
    ['then beside the AMQP broker', {}, undefined, { urls: ['amqp://app:pw@mq.internal:5672/prod'] }, 'http://app:pw@mq.internal:15672'],
  ])('management URL: %s', (_case, flags, env, connect, managementUrl) => {
    setEnv('RABBITMQ_MANAGEMENT_URL', env);
    expect(resolveTarget(flags, connect === undefined ? undefined : appWith(connect)).managementUrl).toBe(managementUrl);
  });

  it.each<[string, string]>([
    ['amqp://guest:guest@localhost:5672', 'http://guest:guest@localhost:15672'],
    ['amqp://mq.internal', 'http://mq.internal:15672'],
    ['amqp://app@mq.internal:5673/prod', 'http://app@mq.internal:15672'],
    ['amqps://app:s3cret@mq.example:5671/prod', 'https://app:s3cret@mq.example:15671'],
    ['amqp://app:p%40ss@10.0.0.7:5672', 'http://app:p%40ss@10.0.0.7:15672'],
  ])('derives the management API of %s: %s', (url, managementUrl) => {
    expect(resolveTarget({ url }).managementUrl).toBe(managementUrl);
  });

  it('derives the management API from the first of several URLs', () => {
    expect(resolveTarget({ url: 'amqp://u:one@a:5672,amqp://u:two@b:5672' }).managementUrl).toBe('http://u:one@a:15672');
  });

  it('lists the password of every URL and of the management URL as a secret, decoded and encoded', () => {
    const target = resolveTarget({ url: 'amqp://app:p%40ss@a:5672,amqp://app:other@b:5672', managementUrl: 'http://ops:mgmt-pw@a:15672' });
    expect(target.secrets).toEqual(expect.arrayContaining(['p@ss', 'p%40ss', 'other', 'mgmt-pw']));
    expect(resolveTarget({ url: 'amqp://mq:5672' }).secrets).toEqual([]);
  });

  it.each<[string]>([['http://app:s3cret@mq:15672'], ['mqtt://app:s3cret@mq:1883'], ['amqp://app:s3cret@mq:notaport'], ['amqp://app:s3cret@[mq']])(
    'refuses %s as a usage error without printing the password',
    (url) => {
      const err = usageErrorOf(() => resolveTarget({ url }));
      expect(err.message).toContain('amqp://');
      expect(err.message).not.toContain('s3cret');
    },
  );

  it('refuses a bad AMQP_URL too, naming the variable', () => {
    setEnv('AMQP_URL', 'http://app:s3cret@mq:15672');
    const err = usageErrorOf(() => resolveTarget({}));
    expect(err.message).toContain('AMQP_URL');
    expect(err.message).not.toContain('s3cret');
  });

  // A URL given without its scheme parses as scheme `app:`; the error must not quote the password
  // (main.ts then has no secrets to hide: resolveTarget threw).
  it('refuses a URL without its scheme without printing the password', () => {
    expect(usageErrorOf(() => resolveTarget({ url: 'app:s3cret@mq:5672' })).message).not.toContain('s3cret');
  });

  // A password written with escapes other than encodeURIComponent's (%21 for '!') is hidden as written.
  it('hides a password as it was written in the URL', () => {
    const url = 'amqp://app:s3cret%21@mq:5672';
    expect(redact(`cannot connect to ${url}`, resolveTarget({ url }).secrets)).not.toContain('s3cret');
  });
});

describe('resolveTarget: the login', () => {
  const names = ['AMQP_URL', 'RABBITMQ_MANAGEMENT_URL', 'WARREN_USERNAME', 'WARREN_PASSWORD', 'WARREN_PASSWORD_FILE'] as const;
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  const env = (values: Partial<Record<(typeof names)[number], string>>): void => {
    for (const n of names) {
      const v = values[n];
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
  };
  afterEach(() => env(saved));
  const secretFile = (contents: string): string => {
    const path = join(mkdtempSync(join(tmpdir(), 'warren-cli-')), 'password');
    writeFileSync(path, contents);
    return path;
  };

  it('takes WARREN_USERNAME and WARREN_PASSWORD_FILE, for the broker and the management API beside it', () => {
    const passwordFile = secretFile('from-file-password\n');
    env({ AMQP_URL: 'amqp://mq.internal:5672/shop', WARREN_USERNAME: 'billing', WARREN_PASSWORD_FILE: passwordFile });
    const t = resolveTarget({});
    expect(t).toMatchObject({ urls: ['amqp://mq.internal:5672/shop'], credentials: { username: 'billing', passwordFile }, managementUrl: 'http://mq.internal:15672', managementCredentials: { username: 'billing', passwordFile } });
    // The password read from the file is hidden in what the command prints.
    expect(redact('failed with from-file-password')).toBe('failed with ***');
  });

  it('--username and --password-file come before the environment; the default broker is then given no login of its own', () => {
    const passwordFile = secretFile('pw');
    env({ WARREN_USERNAME: 'env-user', WARREN_PASSWORD_FILE: '/elsewhere' });
    expect(resolveTarget({ username: 'ops', passwordFile })).toMatchObject({ urls: ['amqp://localhost:5672'], credentials: { username: 'ops', passwordFile } });
  });

  it("WARREN_PASSWORD with the URL's user; the management API logs in as that user too, unless its URL has its own login", () => {
    env({ AMQP_URL: 'amqp://app@mq:5672', WARREN_PASSWORD: 'env-password' });
    expect(resolveTarget({})).toMatchObject({ credentials: { password: 'env-password' }, managementUrl: 'http://mq:15672', managementCredentials: { password: 'env-password', username: 'app' } });
    expect(resolveTarget({ managementUrl: 'http://ops:mgmt@mq:15672' }).managementCredentials).toBeUndefined();
    expect(resolveTarget({ managementUrl: 'http://mq:15672' }).managementCredentials).toEqual({ password: 'env-password', username: 'app' });
  });

  it("without any on the command line, the app's connect.credentials and managementCredentials", () => {
    const app = defineApp({ name: 'billing', connect: { urls: ['amqp://billing@mq:5672'], credentials: { passwordFile: '/run/pw' }, managementUrl: 'http://mq:15672', managementCredentials: { username: 'm', password: 'mp' } } });
    expect(resolveTarget({}, app)).toMatchObject({ credentials: { passwordFile: '/run/pw' }, managementCredentials: { username: 'm', password: 'mp' } });
    env({ WARREN_USERNAME: 'ops', WARREN_PASSWORD: 'x', AMQP_URL: 'amqp://mq:5672' });
    expect(resolveTarget({}, app).credentials).toEqual({ username: 'ops', password: 'x' });
  });

  it.each<[string, Partial<Record<(typeof names)[number], string>>, ConnectionFlags, string]>([
    ['a password in the URL and in WARREN_PASSWORD', { AMQP_URL: 'amqp://u:url-s3cret@mq', WARREN_PASSWORD: 'env-s3cret' }, {}, 'the password is given twice, in AMQP_URL and by WARREN_PASSWORD'],
    ['a password in --url and --password-file', {}, { url: 'amqp://u:url-s3cret@mq', passwordFile: '/pw' }, 'the password is given twice, in --url and by --password-file'],
    ['a user in the URL and --username', {}, { url: 'amqp://u@mq', username: 'v' }, 'the user name is given twice'],
    ['a password and no user name', { WARREN_PASSWORD: 'env-s3cret' }, { url: 'amqp://mq' }, 'WARREN_PASSWORD needs a user name: give --username, WARREN_USERNAME, or the user in --url'],
    ['WARREN_PASSWORD and WARREN_PASSWORD_FILE', { WARREN_PASSWORD: 'env-s3cret', WARREN_PASSWORD_FILE: '/pw' }, {}, 'the password is given twice, by WARREN_PASSWORD and WARREN_PASSWORD_FILE'],
  ])('refuses %s as a usage error that shows neither', (_case, values, flags, text) => {
    env(values);
    const err = usageErrorOf(() => resolveTarget(flags));
    expect(err.message).toContain(text);
    expect(err.message).not.toMatch(/s3cret/);
  });
});

describe('redact', () => {
  it('hides a password resolveTarget has seen, without being given it', () => {
    resolveTarget({ url: 'amqp://app:seen-by-resolve-7@mq:5672' });
    expect(redact('refused amqp://app:seen-by-resolve-7@mq')).toBe('refused amqp://app:***@mq');
  });

  it.each<[string, string, string[], string]>([
    ['every occurrence of each secret', 'pw=hunter2 again hunter2, and s3cret', ['hunter2', 's3cret'], 'pw=*** again ***, and ***'],
    ['an encoded form given as a secret', 'amqp://app:p%40ss@mq', ['p@ss', 'p%40ss'], 'amqp://app:***@mq'],
    ['nothing for no secrets', 'amqp://app:never-seen-pw@mq', [], 'amqp://app:never-seen-pw@mq'],
    ['nothing for an empty secret', 'amqp://app:never-seen-pw@mq', [''], 'amqp://app:never-seen-pw@mq'],
  ])('redactSecrets hides %s', (_case, text, secrets, shown) => {
    expect(redactSecrets(text, secrets)).toBe(shown);
  });
});

describe('table', () => {
  it('pads each column to its widest cell, two spaces apart, without trailing spaces', () => {
    expect(
      table(
        ['QUEUE', 'STATE'],
        [
          ['billing.orders', 'running'],
          ['dlq', 'idle'],
        ],
      ).split('\n'),
    ).toEqual(['QUEUE           STATE', 'billing.orders  running', 'dlq             idle']);
  });

  it('right-aligns a column whose cells are all numbers (or numeric text, or -), the header too', () => {
    expect(
      table(
        ['QUEUE', 'MESSAGES', 'RATE', 'NOTE'],
        [
          ['billing.orders', 12_345, '1.5', 'x'],
          ['audit', 7, '-', 'a longer note'],
        ],
      ).split('\n'),
    ).toEqual(['QUEUE           MESSAGES  RATE  NOTE', 'billing.orders     12345   1.5  x', 'audit                  7     -  a longer note']);
  });

  it('left-aligns a column with any text in it', () => {
    expect(table(['NAME', 'COUNT'], [['a', 1], ['b', 'many']]).split('\n')).toEqual(['NAME  COUNT', 'a     1', 'b     many']);
  });

  it('is its header alone without rows', () => {
    expect(table(['NAME', 'COUNT'], [])).toBe('NAME  COUNT');
  });
});

describe('exit codes', () => {
  it.each<['SIGINT' | 'SIGTERM', number]>([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ])('a second %s exits with %i, as a shell reports it', (signal, code) => {
    expect(signalExitCode(signal)).toBe(code);
  });
});

