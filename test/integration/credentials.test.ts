// The credentials audit: a password must never show in a log line, an error (message, stack,
// cause chain, JSON), an event, a diagnostics-channel message, health(), the metrics or the CLI's
// output — across failed logins, a reconnect storm, a failing management API and the CLI's errors.
import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AccessRefusedError,
  connect,
  defineApp,
  defineConsumer,
  defineTopology,
  diffApp,
  inspectBroker,
  ManagementError,
  TopologyMismatchError,
  WarrenChannel,
  type Warren,
  type WarrenEvents,
} from '../../src/index.js';
import { registerMetrics } from '../../src/metrics/index.js';
import { brokerUrls, cleanupTracked, memoryLogger, track, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';
import { cliEnv, fixtureApp, fixtureNames, warren as cli } from '../helpers/cli.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { closeClients, pingSetup, trackClient } from '../helpers/warren.js';

/** Distinctive, long, and with characters a URL must escape. */
const LONG = `Lng-${randomBytes(8).toString('hex')}-p@ss:w/rd%x`;
/** Short: found only if it leaks, not by chance in other text. */
const SHORT = 'q7#Z';

const live = new URL(brokerUrls().amqpUrl);
const USER = decodeURIComponent(live.username) || 'guest';
const PASSWORD = decodeURIComponent(live.password) || 'guest';

const dir = mkdtempSync(join(tmpdir(), 'warren-audit-'));
let files = 0;
function secretFile(contents: string): string {
  const path = join(dir, `secret-${++files}`);
  writeFileSync(path, contents);
  return path;
}

/** The broker URL with `password` (and the live user), on another port if given. */
function urlWith(password: string | undefined, port?: number): string {
  const u = new URL(brokerUrls().amqpUrl);
  u.username = password === undefined ? '' : USER;
  u.password = password === undefined ? '' : encodeURIComponent(password);
  if (port !== undefined) u.port = String(port);
  return u.toString();
}

/** The management URL with `password`, or with no userinfo. */
function managementWith(password: string | undefined): string {
  const u = new URL(brokerUrls().managementUrl);
  u.username = password === undefined ? '' : USER;
  u.password = password === undefined ? '' : encodeURIComponent(password);
  return u.toString();
}

/** Every form a secret could leak in: as is, URL-encoded, and inside a basic-auth header. */
function forms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), Buffer.from(`${USER}:${secret}`).toString('base64')];
}

/**
 * Everything a user could see: log lines (a pino logger writing to an array), each error's
 * message, stack, cause chain, JSON and inspect() output, every event of the clients it watches,
 * every diagnostics-channel message, and what `snapshot()` is given (health(), metrics).
 */
class Capture {
  readonly log = memoryLogger('trace');
  readonly #texts: string[] = [];
  readonly #unsubscribe: (() => void)[] = [];
  counts = { errors: 0, events: 0, channelMessages: 0 };

  constructor() {
    for (const name of [WarrenChannel.connection, WarrenChannel.consumer, WarrenChannel.retry, WarrenChannel.deadLetter]) {
      const fn = (message: unknown): void => {
        this.counts.channelMessages += 1;
        this.#add(message);
      };
      diagnostics.subscribe(name, fn);
      this.#unsubscribe.push(() => diagnostics.unsubscribe(name, fn));
    }
    for (const name of [WarrenChannel.publish, WarrenChannel.consume]) {
      const tc = diagnostics.tracingChannel(name);
      const fn = (message: unknown): void => {
        this.counts.channelMessages += 1;
        this.#add(message);
      };
      const handlers = { start: fn, end: fn, asyncStart: fn, asyncEnd: fn, error: fn };
      tc.subscribe(handlers);
      this.#unsubscribe.push(() => tc.unsubscribe(handlers));
    }
  }

  /** Records every event `warren` emits. */
  watch(warren: Warren): Warren {
    const names: (keyof WarrenEvents)[] = ['state', 'connected', 'disconnected', 'reconnecting', 'blocked', 'unblocked', 'consumer', 'error'];
    for (const name of names) {
      warren.on(name, (...args: unknown[]) => {
        this.counts.events += 1;
        this.#add(args);
      });
    }
    return warren;
  }

  error(err: unknown): unknown {
    this.counts.errors += 1;
    this.#add(err);
    return err;
  }

  snapshot(value: unknown): void {
    this.#add(value);
  }

  #add(value: unknown): void {
    this.#texts.push(inspect(value, { depth: 10 }));
    try {
      this.#texts.push(JSON.stringify(value) ?? '');
    } catch {
      // circular: inspect() has it
    }
    for (const v of Array.isArray(value) ? value : [value]) {
      const item: unknown = typeof v === 'object' && v !== null && 'error' in v ? (v as { error: unknown }).error : v;
      for (let e = item; e instanceof Error; e = e.cause) this.#texts.push(e.message, e.stack ?? '', JSON.stringify(e));
    }
  }

  /** The texts holding any form of any secret (none, we expect). */
  leaks(...secrets: string[]): string[] {
    const all = [...this.log.lines, ...this.#texts];
    return all.filter((t) => secrets.flatMap(forms).some((f) => t.includes(f)));
  }

  close(): void {
    for (const u of this.#unsubscribe.splice(0)) u();
  }
}

let capture: Capture | undefined;
const proxies: TcpProxy[] = [];
afterEach(async () => {
  capture?.close();
  capture = undefined;
  await closeClients();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  await cleanupTracked();
});

function newCapture(): Capture {
  capture = new Capture();
  return capture;
}

describe('credentials never leak', () => {
  it('a failed login with the password in the URL (long and short): refused at once, nothing shows it', async () => {
    expect.hasAssertions();
    const c = newCapture();
    for (const secret of [LONG, SHORT]) {
      const err = c.error(await connect({ urls: [urlWith(secret)], logger: c.log.logger, name: uniqueName('audit') }).catch((e: unknown) => e));
      expect(err).toBeInstanceOf(AccessRefusedError);
      expect((err as Error).message).toContain(`${USER}:***@`);
    }
    expect(c.log.lines.length).toBeGreaterThan(0);
    expect(c.leaks(LONG, SHORT)).toEqual([]);
    // The control: the search finds each form of a secret where there is one.
    const control = new Capture();
    control.log.logger.info({ url: urlWith(LONG), auth: forms(SHORT)[2] }, 'leaky');
    control.error(new Error('outer', { cause: new Error(`inner ${SHORT}`) }));
    expect(control.leaks(LONG)).toHaveLength(1);
    // The log line (its basic-auth form), and the cause: its message, stack, and the error's inspect().
    expect(control.leaks(SHORT)).toEqual(expect.arrayContaining([expect.stringContaining('leaky'), `inner ${SHORT}`, expect.stringContaining('[cause]')]));
    control.close();
  });

  it('a failed login with the password in credentials, as a value and as a file', async () => {
    expect.hasAssertions();
    const c = newCapture();
    const attempts = [
      { username: USER, password: LONG },
      { username: USER, passwordFile: secretFile(`${LONG}\n`) },
      { usernameFile: secretFile(USER), passwordFile: secretFile(SHORT) },
    ];
    for (const credentials of attempts) {
      const err = c.error(await connect({ urls: [urlWith(undefined)], credentials, logger: c.log.logger, name: uniqueName('audit') }).catch((e: unknown) => e));
      expect(err).toBeInstanceOf(AccessRefusedError);
      expect((err as Error).message).toContain('(credentials, and the URL)');
    }
    expect(c.leaks(LONG, SHORT)).toEqual([]);
  });

  it('a reconnect storm: a rotated secret that is refused, a broker that looks down, a second URL with a password that never answers', async () => {
    expect.hasAssertions();
    const c = newCapture();
    const proxy = await startTcpProxy(brokerUrls().amqpUrl);
    proxies.push(proxy);
    const passwordFile = secretFile(`${PASSWORD}\n`);
    const registry = new Registry();
    const metrics = registerMetrics(registry);
    const s = pingSetup({ deadLetter: true });
    const w = c.watch(
      trackClient(
        await connect({
          urls: [stripLogin(proxy.url)],
          credentials: { username: USER, passwordFile },
          topology: s.topology,
          logger: c.log.logger,
          name: uniqueName('audit'),
          reconnect: { initialDelay: 10, maxDelay: 100 },
        }),
      ),
    );
    metrics.track(w);
    let handled = 0;
    await w.consume(defineConsumer({ queue: s.queue, message: s.message, handle: () => void (handled += 1) }));
    const refusals = (): number => c.log.records().filter((r) => r['msg'] === 'connection attempt failed; retrying' && JSON.stringify(r).includes('ACCESS_REFUSED')).length;

    for (const secret of [LONG, SHORT, LONG]) {
      // The secret is rotated to one the broker refuses, and the connections drop: every reconnect is refused.
      writeFileSync(passwordFile, `${secret}\n`);
      const before = refusals();
      proxy.cut();
      await waitFor(() => refusals() >= before + 4, 'refused reconnects');
      c.snapshot(w.health());
      // Rotated back: the next attempt reads the file again and gets in.
      writeFileSync(passwordFile, PASSWORD);
      await waitFor(() => w.health().ok, 'reconnected, consumer re-attached');
    }
    await w.publish(s.message, { id: 'after-storm', n: 1 });
    await waitFor(() => handled === 1, 'the message through the reconnected client');
    c.snapshot(w.health());
    c.snapshot(await registry.metrics());
    metrics.close();
    expect(c.counts.events).toBeGreaterThan(10);
    expect(c.counts.channelMessages).toBeGreaterThan(10);

    // Passwords in URLs: a second URL whose port never answers, tried while the proxy refuses.
    const c2 = newCapture();
    c.close();
    const proxy2 = await startTcpProxy(brokerUrls().amqpUrl);
    proxies.push(proxy2);
    const w2 = c2.watch(
      trackClient(
        await connect({ urls: [proxy2.url, urlWith(LONG, 1)], logger: c2.log.logger, name: uniqueName('audit'), reconnect: { initialDelay: 10, maxDelay: 50 } }),
      ),
    );
    proxy2.refusing = true;
    proxy2.cut();
    const onDeadUrl = (): Record<string, unknown>[] => c2.log.records().filter((r) => /:1\/?$/.test(String(r['url'])));
    await waitFor(() => onDeadUrl().length >= 3, 'attempts on the dead URL');
    c2.snapshot(w2.health());
    proxy2.refusing = false;
    await waitFor(() => w2.health().ok, 'reconnected');
    // The URL is logged, its password as ***.
    expect(onDeadUrl()[0]?.['url']).toBe(`amqp://${USER}:***@127.0.0.1:1`);
    expect([...c.leaks(LONG, SHORT), ...c2.leaks(LONG)]).toEqual([]);
  });

  it('a management API whose password fails: the mismatch is reported without its explanation, and nothing shows the password', async () => {
    expect.hasAssertions();
    const c = newCapture();
    const q = track.queue(uniqueName('q'));
    await withRawChannel(async (ch) => void (await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 5 } })));
    const topology = defineTopology({ queues: { [q]: { maxLength: 10 } } });
    const base = { urls: [brokerUrls().amqpUrl], topology, logger: c.log.logger, name: uniqueName('audit') };
    for (const management of [
      { managementUrl: managementWith(LONG) },
      { managementUrl: managementWith(undefined), managementCredentials: { username: USER, passwordFile: secretFile(LONG) } },
    ]) {
      const err = c.error(await connect({ ...base, ...management }).catch((e: unknown) => e));
      expect(err).toBeInstanceOf(TopologyMismatchError);
      // The API refused: the broker's own text names the argument, not its value on the broker.
      expect((err as TopologyMismatchError).differences).toEqual([expect.objectContaining({ argument: 'x-max-length', declared: 10 })]);
    }
    // The control: with `credentials` the API logs in as the broker's user, and finds the value.
    const explained = c.error(
      await connect({ ...base, urls: [urlWith(undefined)], credentials: { username: USER, passwordFile: secretFile(PASSWORD) }, managementUrl: managementWith(undefined) }).catch(
        (e: unknown) => e,
      ),
    );
    expect((explained as TopologyMismatchError).differences).toEqual([{ argument: 'x-max-length', declared: 10, actual: 5 }]);

    const app = defineApp({ name: uniqueName('audit'), topology });
    for (const call of [
      () => inspectBroker({ managementUrl: managementWith(LONG) }),
      () => inspectBroker({ managementUrl: managementWith(undefined), credentials: { username: USER, passwordFile: secretFile(SHORT) } }),
      () => diffApp(app, { managementUrl: managementWith(LONG) }),
    ]) {
      const err = c.error(await call().catch((e: unknown) => e));
      expect(err).toBeInstanceOf(ManagementError);
      expect(err).toMatchObject({ status: 401 });
    }
    // An API that does not answer: its URL (with the password) must not show either.
    const u = new URL(managementWith(LONG));
    u.port = '1';
    expect(c.error(await inspectBroker({ managementUrl: u.toString() }).catch((e: unknown) => e))).toBeInstanceOf(ManagementError);
    expect(c.leaks(LONG, SHORT)).toEqual([]);
  });

  it('the warren command: refused logins, a failing management API, debug stacks and trace logs never print the password', async () => {
    expect.hasAssertions();
    const name = fixtureNames('audit');
    const fromFile = cliEnv(name, { AMQP_URL: urlWith(undefined), RABBITMQ_MANAGEMENT_URL: managementWith(undefined), WARREN_USERNAME: USER, WARREN_PASSWORD_FILE: secretFile(`${LONG}\n`), WARREN_DEBUG: '1' });
    const fromEnv = { ...fromFile, WARREN_PASSWORD: SHORT, WARREN_PASSWORD_FILE: '' };
    const inUrls = cliEnv(name, { AMQP_URL: urlWith(LONG), RABBITMQ_MANAGEMENT_URL: managementWith(SHORT), WARREN_DEBUG: '1' });
    const job = JSON.stringify({ id: 'x' });
    const outputs: string[] = [];
    for (const env of [fromFile, fromEnv, inUrls]) {
      const publish = await cli(['publish', 'job.created', '--app', fixtureApp, '--data', job], env);
      expect(publish.code).toBe(1);
      expect(publish.stderr).toContain('[ACCESS_REFUSED]');
      const inspectRun = await cli(['inspect'], env);
      expect(inspectRun.code).toBe(1);
      expect(inspectRun.stderr).toContain('[MANAGEMENT_FAILED]');
      const diff = await cli(['topology', 'diff', fixtureApp], env);
      expect(diff.code).toBe(1);
      const run = await cli(['run', fixtureApp, '--log-level', 'trace'], env);
      expect(run.code).toBe(1);
      outputs.push(...[publish, inspectRun, diff, run].map((r) => r.stdout + r.stderr));
    }
    // The same password on the command line's other path, --password-file.
    const flag = await cli(['publish', 'job.created', '--app', fixtureApp, '--data', job, '--username', USER, '--password-file', secretFile(LONG)], cliEnv(name, { AMQP_URL: urlWith(undefined) }));
    expect(flag.stderr).toContain('[ACCESS_REFUSED]');
    // Given twice: a usage error that names where, not what.
    const twice = await cli(['inspect'], { ...inUrls, WARREN_PASSWORD: LONG });
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('the password is given twice, in AMQP_URL and by WARREN_PASSWORD');
    outputs.push(flag.stdout + flag.stderr, twice.stdout + twice.stderr);
    expect(outputs.filter((o) => [LONG, SHORT].flatMap(forms).some((f) => o.includes(f)))).toEqual([]);
  });

  it('the warren command logs in with WARREN_USERNAME and WARREN_PASSWORD_FILE, the management API too', async () => {
    expect.hasAssertions();
    const name = fixtureNames('login');
    // The management URL without a login (the one beside the broker is derived so too: see the unit tests).
    const env = cliEnv(name, { AMQP_URL: urlWith(undefined), RABBITMQ_MANAGEMENT_URL: managementWith(undefined), WARREN_USERNAME: USER, WARREN_PASSWORD_FILE: secretFile(`${PASSWORD}\n`) });
    const publish = await cli(['publish', 'job.created', '--app', fixtureApp, '--data', JSON.stringify({ id: 'ok' })], env);
    expect(publish.stderr).toBe('');
    expect(publish.code).toBe(0);
    // The management API, with the same login.
    const diff = await cli(['topology', 'diff', fixtureApp, '--json'], env);
    expect(diff.stderr).toBe('');
    expect([0, 3]).toContain(diff.code);
    expect(JSON.parse(diff.stdout)).toHaveProperty('inSync');
  });
});

function stripLogin(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString();
}
