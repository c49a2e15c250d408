// TLS against a RabbitMQ node of the test's own (node 8: AMQP 5688, TLS 5698, management 15688),
// with certificates the test makes with openssl: what a trusted CA, an unknown CA, a wrong name,
// an expired certificate, a client certificate (EXTERNAL) and an encrypted key do, as a user of
// connect() sees it. Every log line, error, `warren:connection` event and warren event is
// captured, and none may hold the key's passphrase or a password. `npm run test:security`; needs
// the rabbitmq-server package (and openssl). It never touches the shared broker on 5672.
import diagnostics from 'node:diagnostics_channel';
import { existsSync, readdirSync } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  AccessRefusedError,
  ConfigError,
  connect,
  defineConsumer,
  defineMessage,
  defineTopology,
  TlsError,
  WarrenChannel,
  type ConnectOptions,
  type TlsFailureReason,
  type Warren,
  type WarrenEvents,
} from '../../src/index.js';
import { waitFor } from '../helpers/broker.js';
import { makeCertificates, opensslProblem, type Issued, type TestCertificates } from '../helpers/certs.js';
import { nodeSupportProblem, RabbitNode } from '../helpers/rabbit-node.js';

const NODE_INDEX = 8;
const TLS_PORT = 5698;
const CLIENT_USER = 'tls-client';
/** A PLAIN user of the node whose password must never show. */
const APP_USER = 'tls-app';
const APP_PASSWORD = `pw-${Math.random().toString(36).slice(2, 10)}`;
const tlsUrl = (host = '127.0.0.1', port = TLS_PORT): string => `amqps://${APP_USER}:${APP_PASSWORD}@${host}:${port}`;

function setupProblem(): string | undefined {
  const node = nodeSupportProblem();
  if (node !== undefined) {
    return (
      'The security suite (npm run test:security) starts its own RabbitMQ node with a TLS listener (127.0.0.1:5688, TLS 5698) ' +
      `and needs the rabbitmq-server package on this machine: on Debian/Ubuntu \`sudo apt-get install rabbitmq-server\`. (${node})`
    );
  }
  const plugins = readdirSync('/usr/lib/rabbitmq/lib', { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() && existsSync(path.join('/usr/lib/rabbitmq/lib', d.name, 'plugins')) ? readdirSync(path.join('/usr/lib/rabbitmq/lib', d.name, 'plugins')) : [],
  );
  if (!plugins.some((p) => p.startsWith('rabbitmq_auth_mechanism_ssl'))) {
    return 'The security suite needs the rabbitmq_auth_mechanism_ssl plugin (part of the rabbitmq-server package) for EXTERNAL login; it is not installed here.';
  }
  return opensslProblem();
}

let certs: TestCertificates;
let node: RabbitNode;

/** Serves `cert` on the node's TLS listener from the next connection on (Erlang's PEM cache is cleared). */
async function serve(cert: Issued): Promise<void> {
  await copyFile(cert.certFile, path.join(certs.dir, 'live.pem'));
  await copyFile(cert.keyFile, path.join(certs.dir, 'live.key'));
  await node.mustCtl(['eval', 'ssl:clear_pem_cache().']);
}

beforeAll(async () => {
  const problem = setupProblem();
  if (problem !== undefined) throw new Error(problem);
  certs = await makeCertificates(path.join(os.tmpdir(), `warren-tls-${process.pid}`), CLIENT_USER);
  await copyFile(certs.server.certFile, path.join(certs.dir, 'live.pem'));
  await copyFile(certs.server.keyFile, path.join(certs.dir, 'live.key'));
  node = await new RabbitNode(NODE_INDEX).create({
    plugins: ['rabbitmq_auth_mechanism_ssl'],
    extraConfig: [
      `listeners.ssl.default = 127.0.0.1:${TLS_PORT}`,
      `ssl_options.cacertfile = ${certs.ca.certFile}`,
      `ssl_options.certfile = ${path.join(certs.dir, 'live.pem')}`,
      `ssl_options.keyfile = ${path.join(certs.dir, 'live.key')}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = false',
      'auth_mechanisms.1 = PLAIN',
      'auth_mechanisms.2 = AMQPLAIN',
      'auth_mechanisms.3 = EXTERNAL',
      'ssl_cert_login_from = common_name',
    ],
  });
  await node.mustCtl(['add_user', APP_USER, APP_PASSWORD]);
  await node.mustCtl(['set_permissions', '-p', '/', APP_USER, '.*', '.*', '.*']);
  // EXTERNAL's user: no password at all, only the certificate.
  await node.mustCtl(['add_user', CLIENT_USER, `unused-${Math.random()}`]);
  await node.mustCtl(['clear_password', CLIENT_USER]);
  await node.mustCtl(['set_permissions', '-p', '/', CLIENT_USER, '.*', '.*', '.*']);
}, 180_000);

afterAll(async () => {
  await node?.destroy();
  if (certs !== undefined) await rm(certs.dir, { recursive: true, force: true });
});

// ---- everything a user could see, captured --------------------------------------------------

const seen: string[] = [];
const show = (v: unknown): string => inspect(v, { depth: 12, breakLength: Infinity, showHidden: false });
const onConnectionEvent = (event: unknown): void => void seen.push(show(event));
diagnostics.subscribe(WarrenChannel.connection, onConnectionEvent);
const clients: Warren[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((w) => w.close()));
  const secrets = [certs?.passphrase, APP_PASSWORD].filter((s): s is string => s !== undefined);
  // What the test captured must hold no secret: log lines, errors (with stack and causes), events.
  expect(seen.filter((text) => secrets.some((s) => text.includes(s)))).toEqual([]);
  seen.length = 0;
});
afterAll(() => diagnostics.unsubscribe(WarrenChannel.connection, onConnectionEvent));

function capturingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void (lines.push(line), seen.push(line)) });
  return { logger, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const EVENTS: (keyof WarrenEvents)[] = ['state', 'connected', 'disconnected', 'reconnecting', 'blocked', 'unblocked', 'consumer', 'error'];

/** connect(), with every event of the client captured; closed after the test. */
async function open(options: ConnectOptions): Promise<Warren> {
  const warren = await connect({ name: 'tls-test', initialConnectTimeout: '20s', ...options });
  clients.push(warren);
  for (const event of EVENTS) warren.on(event, (...args: unknown[]) => void seen.push(`${event} ${show(args)}`));
  return warren;
}

/** connect()'s rejection (captured), and how long it took. */
async function refusal(options: ConnectOptions): Promise<{ err: Error; ms: number; retries: number }> {
  const { logger, records } = capturingLogger();
  const started = Date.now();
  const err = await open({ logger, ...options }).then(
    () => new Error('connect() resolved'),
    (e: unknown) => e as Error,
  );
  const ms = Date.now() - started;
  seen.push(show(err), String(err.stack));
  return { err, ms, retries: records().filter((r) => r.msg === 'connection attempt failed; retrying').length };
}

/** A loopback relay to the TLS listener that counts the connections made through it. */
async function countingRelay(): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(TLS_PORT, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

interface BrokerConnection {
  user: string;
  ssl: boolean;
  ssl_protocol: string | null;
  auth_mechanism: string;
  client_properties: { connection_name?: string };
}

const topology = defineTopology({ queues: { 'tls.pings': {} } });
const Ping = defineMessage({ name: 'tls.ping', exchange: '', routingKey: 'tls.pings', schema: z.object({ n: z.number() }) });

async function roundTrip(warren: Warren): Promise<number> {
  const got = new Promise<number>((resolve) => {
    void warren.consume(defineConsumer({ queue: 'tls.pings', message: Ping, handle: async (p) => resolve(p.n) }));
  });
  await warren.publish(Ping, { n: 42 });
  return got;
}

/** The expected rejection: a TlsError with this reason and code, at once. */
function expectTlsRefusal(r: { err: Error; ms: number; retries: number }, reason: TlsFailureReason, tlsCode: string | undefined): void {
  expect(r.err).toBeInstanceOf(TlsError);
  expect(r.err).toMatchObject({ code: 'TLS_FAILED', reason, tlsCode });
  // initialConnectTimeout is 20 s: refused on the first attempt, not after retrying until then.
  expect(r.ms).toBeLessThan(2000);
  expect(r.retries).toBe(0);
}

describe('TLS to a test-owned RabbitMQ node', () => {
  it('connects with the CA that signed the broker certificate, by IP and by name, and publishes and consumes over TLS', async () => {
    expect.hasAssertions();
    const { logger } = capturingLogger();
    for (const host of ['127.0.0.1', 'localhost']) {
      const warren = await open({ urls: [tlsUrl(host)], tls: { ca: certs.ca.cert }, topology, logger, name: `tls-${host}` });
      expect(await roundTrip(warren)).toBe(42);
      const conn = await waitFor(
        async () => (await node.management.json<BrokerConnection[]>('/api/connections'))?.find((c) => c.client_properties.connection_name === `tls-${host}:publish`),
        'the publish connection in the management API',
      );
      expect(conn).toMatchObject({ user: APP_USER, ssl: true, ssl_protocol: expect.stringMatching(/^tlsv1\.[23]$/) as unknown });
      await warren.close();
    }
  });

  it('refuses a broker certificate from a CA it was not given, at once: one attempt, no retry', async () => {
    expect.hasAssertions();
    const relay = await countingRelay();
    try {
      const r = await refusal({ urls: [tlsUrl('127.0.0.1', relay.port)], tls: { ca: certs.otherCa.cert } });
      expectTlsRefusal(r, 'untrusted-certificate', 'SELF_SIGNED_CERT_IN_CHAIN');
      expect(r.err.message).toContain('not signed by a CA this client trusts');
      expect(r.err.message).toContain(`amqps://${APP_USER}:***@127.0.0.1:${relay.port}`);
      expect(relay.accepted()).toBe(1);
    } finally {
      await relay.close();
    }
  });

  it("refuses a broker certificate not issued for the name connected to (tls.servername), naming the certificate's names", async () => {
    expect.hasAssertions();
    const r = await refusal({ urls: [tlsUrl()], tls: { ca: certs.ca.cert, servername: 'mq.example.org' } });
    expectTlsRefusal(r, 'hostname-mismatch', 'ERR_TLS_CERT_ALTNAME_INVALID');
    expect(r.err.message).toContain("Host: mq.example.org. is not in the cert's altnames: DNS:localhost, IP Address:127.0.0.1");
  });

  it('refuses an expired broker certificate', async () => {
    expect.hasAssertions();
    await serve(certs.expiredServer);
    try {
      const r = await refusal({ urls: [tlsUrl()], tls: { ca: certs.ca.cert } });
      expectTlsRefusal(r, 'certificate-expired', 'CERT_HAS_EXPIRED');
      expect(r.err.message).toContain("the broker's certificate has expired");
    } finally {
      await serve(certs.server);
    }
  });

  it('on a reconnect to an expired certificate, logs the TLS refusal as an error, backs off, and comes back once the certificate is renewed', async () => {
    expect.hasAssertions();
    const { logger, records } = capturingLogger();
    const warren = await open({ urls: [tlsUrl()], tls: { ca: certs.ca.cert }, logger, reconnect: { initialDelay: 100, maxDelay: 400 } });
    const refused: { attempt: number; reason: string; delayMs: number }[] = [];
    warren.on('reconnecting', (info) => refused.push({ attempt: info.attempt, reason: (info.error as TlsError).reason, delayMs: info.delayMs }));
    await serve(certs.expiredServer);
    try {
      await node.mustCtl(['close_all_connections', 'certificate rotation test']);
      await waitFor(() => refused.length >= 3, 'three refused reconnects');
    } finally {
      await serve(certs.server);
    }
    await waitFor(() => warren.state === 'open', 'the connection back with the renewed certificate');
    // Confirmed, and dropped (routed nowhere): other tests read tls.pings.
    await warren.publish(Ping, { n: 1 }, { routingKey: 'tls.nowhere', mandatory: false });
    expect(refused.slice(0, 3).map((r) => [r.attempt, r.reason])).toEqual([
      [1, 'certificate-expired'],
      [2, 'certificate-expired'],
      [3, 'certificate-expired'],
    ]);
    expect(refused.every((r) => r.delayMs < 400)).toBe(true);
    const first = records().find((r) => r.msg === 'TLS connection refused; retrying with backoff until it is fixed');
    expect(first).toMatchObject({ level: 50, code: 'TLS_FAILED', reason: 'certificate-expired', tlsCode: 'CERT_HAS_EXPIRED', attempt: 1 });
  });

  it('refuses amqps:// against the plain AMQP port, and amqp:// against the TLS port, saying which to use', async () => {
    expect.hasAssertions();
    const toPlain = await refusal({ urls: [`amqps://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${node.amqpPort}`], tls: { ca: certs.ca.cert } });
    expectTlsRefusal(toPlain, 'not-tls', 'ERR_SSL_WRONG_VERSION_NUMBER');
    expect(toPlain.err.message).toContain('probably a plain AMQP listener');
    const toTls = await refusal({ urls: [`amqp://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${TLS_PORT}`] });
    expectTlsRefusal(toTls, 'tls-required', undefined);
    expect(toTls.err.message).toContain('this port is a TLS listener, and the URL is amqp://. Use amqps://');
  });
});

describe('client certificates', () => {
  it('logs in with EXTERNAL as the user the certificate names (its CN)', async () => {
    expect.hasAssertions();
    const warren = await open({
      urls: [`amqps://127.0.0.1:${TLS_PORT}`],
      tls: { ca: certs.ca.cert, cert: certs.client.cert, key: certs.client.key },
      credentials: { mechanism: 'EXTERNAL' },
      topology,
      name: 'tls-external',
    });
    expect(await roundTrip(warren)).toBe(42);
    const conn = await waitFor(
      async () => (await node.management.json<BrokerConnection[]>('/api/connections'))?.find((c) => c.client_properties.connection_name === 'tls-external:publish'),
      'the EXTERNAL connection in the management API',
    );
    expect(conn).toMatchObject({ user: CLIENT_USER, auth_mechanism: 'EXTERNAL', ssl: true });
  });

  it('refuses EXTERNAL without a client certificate before connecting, and one whose CN is no user of the broker with ACCESS_REFUSED', async () => {
    expect.hasAssertions();
    const none = await refusal({ urls: [`amqps://127.0.0.1:${TLS_PORT}`], tls: { ca: certs.ca.cert }, credentials: { mechanism: 'EXTERNAL' } });
    expect(none.err).toBeInstanceOf(ConfigError);
    expect(none.err.message).toContain("'EXTERNAL' logs in as the client certificate's user: give tls.cert and tls.key (or tls.pfx)");
    const stranger = await refusal({
      urls: [`amqps://127.0.0.1:${TLS_PORT}`],
      tls: { ca: certs.ca.cert, cert: certs.strangerClient.cert, key: certs.strangerClient.key },
      credentials: { mechanism: 'EXTERNAL' },
    });
    expect(stranger.err).toBeInstanceOf(AccessRefusedError);
    expect(stranger.err.message).toContain('refused the EXTERNAL login (403 ACCESS_REFUSED)');
    expect(stranger.ms).toBeLessThan(2000);
    expect(stranger.retries).toBe(0);
  });

  it('is refused by the broker when its CA is not one the broker trusts', async () => {
    expect.hasAssertions();
    const r = await refusal({ urls: [tlsUrl()], tls: { ca: certs.ca.cert, cert: certs.untrustedClient.cert, key: certs.untrustedClient.key } });
    expectTlsRefusal(r, 'client-certificate-refused', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA');
    expect(r.err.message).toContain("the broker refused this client's certificate");
  });

  it('decrypts an encrypted key with the right passphrase, and says the passphrase is wrong otherwise', async () => {
    expect.hasAssertions();
    const { logger } = capturingLogger();
    const warren = await open({
      urls: [`amqps://127.0.0.1:${TLS_PORT}`],
      tls: { ca: certs.ca.cert, cert: certs.client.cert, key: certs.encryptedClientKey, passphrase: certs.passphrase },
      credentials: { mechanism: 'EXTERNAL' },
      logger,
    });
    expect(warren.state).toBe('open');
    for (const passphrase of [`wrong-${Math.random().toString(36).slice(2)}`, undefined]) {
      const r = await refusal({
        urls: [`amqps://127.0.0.1:${TLS_PORT}`],
        tls: { ca: certs.ca.cert, cert: certs.client.cert, key: certs.encryptedClientKey, ...(passphrase === undefined ? {} : { passphrase }) },
        credentials: { mechanism: 'EXTERNAL' },
      });
      expectTlsRefusal(r, 'key-passphrase', 'ERR_OSSL_BAD_DECRYPT');
      expect(r.err.message).toContain('tls.passphrase is wrong, or missing for an encrypted key');
      if (passphrase !== undefined) expect(seen.join('\n')).not.toContain(passphrase);
    }
  });

  it('takes the certificate and key as a PKCS#12 bundle (tls.pfx), and says the passphrase is wrong otherwise', async () => {
    expect.hasAssertions();
    const external = { urls: [`amqps://127.0.0.1:${TLS_PORT}`], credentials: { mechanism: 'EXTERNAL' as const } };
    const warren = await open({ ...external, tls: { ca: certs.ca.cert, pfx: certs.clientPfx, passphrase: certs.passphrase } });
    expect(warren.state).toBe('open');
    const wrong = `wrong-${Math.random().toString(36).slice(2)}`;
    const r = await refusal({ ...external, tls: { ca: certs.ca.cert, pfx: certs.clientPfx, passphrase: wrong } });
    expectTlsRefusal(r, 'key-passphrase', undefined);
    expect(r.err.message).toContain('tls.passphrase is wrong');
    expect(seen.join('\n')).not.toContain(wrong);
  });
});
