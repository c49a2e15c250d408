// connect()'s `tls` and `credentials.mechanism` options: what is refused up front (a ConfigError
// before any socket is opened) and what reaches the transport.
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { connect, type ConnectOptions, type Link, type LinkOptions, type Warren } from '../../src/index.js';
import { configError } from '../helpers/config-error.js';
import { ScriptedTransport } from '../helpers/scripted-transport.js';

const clients: Warren[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(clients.splice(0).map((w) => w.close()));
});

const tlsUrl = 'amqps://app:s3cr3t@mq.example:5671';
/** EXTERNAL's URL: the certificate names the user, so no login in it. */
const externalUrl = 'amqps://mq.example:5671';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const passphrase = 'pp-never-shown-41c2';

/** A scripted transport that keeps the LinkOptions of each connect(). */
class RecordingTransport extends ScriptedTransport {
  readonly options: LinkOptions[] = [];
  override connect(url: string, options: LinkOptions): Promise<Link> {
    this.options.push(options);
    return super.connect(url, options);
  }
}

async function linkOptions(options: ConnectOptions, logger = pino({ level: 'silent' })): Promise<LinkOptions> {
  const transport = new RecordingTransport({ autoConfirm: true });
  const warren = await connect({ ...options, transport, logger });
  clients.push(warren);
  const first = transport.options[0];
  if (first === undefined) throw new Error('the transport was never asked to connect');
  return first;
}

describe('tls and credentials options', () => {
  it.each<[string, ConnectOptions, RegExp]>([
    ['tls with an amqp:// URL', { urls: ['amqp://mq:5672'], tls: { ca: PEM } }, /urls\.0: tls is given, but this URL is amqp:\/\/ \(no TLS\); use amqps:\/\//],
    ['tls with one amqp:// URL among amqps:// ones', { urls: [tlsUrl, 'amqp://mq2:5672'], tls: {} }, /^urls\.1: tls is given/],
    ['EXTERNAL with an amqp:// URL', { urls: ['amqp://mq:5672'], credentials: { mechanism: 'EXTERNAL' }, socketOptions: { cert: PEM, key: PEM } }, /urls\.0: .*EXTERNAL.*needs TLS: use amqps:\/\//],
    ['EXTERNAL without a client certificate', { urls: [tlsUrl], credentials: { mechanism: 'EXTERNAL' }, tls: { ca: PEM } }, /credentials\.mechanism: 'EXTERNAL' .*give tls\.cert and tls\.key \(or tls\.pfx\)/],
    ['EXTERNAL with a password', { urls: [tlsUrl], credentials: { mechanism: 'EXTERNAL', username: 'svc', passwordFile: '/run/secrets/pw' }, tls: { ca: PEM, cert: PEM, key: PEM } }, /credentials: mechanism 'EXTERNAL' logs in as the client certificate's user; remove username, passwordFile/],
    ['EXTERNAL with a login in the URL', { urls: [tlsUrl], credentials: { mechanism: 'EXTERNAL' }, tls: { ca: PEM, cert: PEM, key: PEM } }, /urls\.0: credentials\.mechanism 'EXTERNAL' .*remove the user name and password from the URL/],
    ['a file path given as tls.ca', { urls: [tlsUrl], tls: { ca: '/etc/rabbitmq/ca.pem' } }, /tls\.ca: tls\.ca looks like a file path: give the file's contents, e\.g\. readFileSync\('\/etc\/rabbitmq\/ca\.pem'\)/],
    ['a tls.ca with no PEM block', { urls: [tlsUrl], tls: { ca: [PEM, Buffer.from('not a certificate')] } }, /tls\.ca: tls\.ca holds no PEM block/],
    ['an unknown mechanism', { urls: [tlsUrl], credentials: { mechanism: 'AMQPLAIN' } } as unknown as ConnectOptions, /credentials\.mechanism: must be 'PLAIN' .* or 'EXTERNAL'/],
    ['a key without its certificate', { urls: [tlsUrl], tls: { key: PEM } }, /tls\.cert: tls\.key is given without tls\.cert/],
    ['a certificate without its key', { urls: [tlsUrl], tls: { cert: PEM } }, /tls\.key: tls\.cert is given without tls\.key/],
    ['TLS 1.1 as the minimum', { urls: [tlsUrl], tls: { minVersion: 'TLSv1.1' } } as unknown as ConnectOptions, /tls\.minVersion: must be 'TLSv1\.2' or 'TLSv1\.3'/],
    ['rejectUnauthorized given as a string', { urls: [tlsUrl], tls: { rejectUnauthorized: 'false' } } as unknown as ConnectOptions, /tls\.rejectUnauthorized/],
    ['a CA that is neither text nor a Buffer', { urls: [tlsUrl], tls: { ca: 42 } } as unknown as ConnectOptions, /tls\.ca: must be PEM text or a Buffer/],
    ['an unknown tls option', { urls: [tlsUrl], tls: { checkServerIdentity: false } } as unknown as ConnectOptions, /tls: Unrecognized key/],
    ['a TLS setting in socketOptions as well as tls', { urls: [tlsUrl], tls: { ca: PEM }, socketOptions: { rejectUnauthorized: false } }, /socketOptions\.rejectUnauthorized: with tls given, TLS settings go in tls only; move it to tls\.rejectUnauthorized/],
  ])('refuses %s with a ConfigError before any connection', async (_what, options, problem) => {
    expect.hasAssertions();
    const err = await configError(options);
    expect(err.problems.some((p) => problem.test(p)), err.message).toBe(true);
  });

  it('never puts a passphrase into a ConfigError', async () => {
    expect.hasAssertions();
    for (const options of [
      { urls: ['amqp://mq:5672'], tls: { cert: PEM, key: PEM, passphrase } },
      { urls: [tlsUrl], tls: { cert: PEM, key: PEM, passphrase, minVersion: 'SSLv3' } },
      { urls: [tlsUrl], tls: { key: PEM, passphrase: [passphrase] } },
      { urls: [tlsUrl], tls: { cert: PEM, key: PEM, passphrase }, socketOptions: { passphrase } },
    ] as unknown as ConnectOptions[]) {
      const err = await configError(options);
      expect(JSON.stringify([err.message, err.problems, err.stack])).not.toContain(passphrase);
    }
  });

  it('passes no TLS options but the defaults for an amqps:// URL without tls: the broker is checked against the public CAs, TLS 1.2 or later', async () => {
    expect.hasAssertions();
    expect(await linkOptions({ urls: [tlsUrl] })).toMatchObject({ tls: { rejectUnauthorized: true, minVersion: 'TLSv1.2' }, mechanism: 'PLAIN' });
  });

  it('passes tls and the EXTERNAL mechanism down to the transport', async () => {
    expect.hasAssertions();
    const options = await linkOptions({
      urls: [externalUrl],
      tls: { ca: PEM, cert: PEM, key: Buffer.from('key'), passphrase, servername: 'mq.internal', minVersion: 'TLSv1.3' },
      credentials: { mechanism: 'EXTERNAL' },
    });
    expect(options.tls).toEqual({ ca: PEM, cert: PEM, key: Buffer.from('key'), passphrase, servername: 'mq.internal', rejectUnauthorized: true, minVersion: 'TLSv1.3' });
    expect(options.mechanism).toBe('EXTERNAL');
  });

  it('keeps TLS settings given in socketOptions (without tls) working, EXTERNAL included', async () => {
    expect.hasAssertions();
    const options = await linkOptions({ urls: [externalUrl], socketOptions: { ca: PEM, cert: PEM, key: PEM, keepAlive: true }, credentials: { mechanism: 'EXTERNAL' } });
    expect(options.socketOptions).toEqual({ ca: PEM, cert: PEM, key: PEM, keepAlive: true });
    expect(options.mechanism).toBe('EXTERNAL');
  });

  it('says so in a warning when certificate checks are turned off, in tls or in socketOptions: a log line and a process warning', async () => {
    expect.hasAssertions();
    const emitted = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    for (const options of [{ tls: { rejectUnauthorized: false } }, { socketOptions: { rejectUnauthorized: false } }, { tls: { rejectUnauthorized: false, ca: PEM } }]) {
      emitted.mockClear();
      const lines: string[] = [];
      const link = await linkOptions({ urls: [tlsUrl], ...options }, pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }));
      expect(link.tls.rejectUnauthorized && link.socketOptions.rejectUnauthorized !== false).toBe(false);
      const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((r) => r.level === 40);
      expect(warnings.map((w) => w.msg)).toEqual([expect.stringMatching(/^TLS certificate checks are off \(rejectUnauthorized: false\)/)]);
      // The advice fits: with a ca given, turning the checks back on is what is left to do.
      expect(warnings[0]?.msg).toMatch('ca' in (options.tls ?? {}) ? /Turn them back on/ : /as tls\.ca instead/);
      expect(emitted).toHaveBeenCalledWith(warnings[0]?.msg, { code: 'WARREN_TLS_UNVERIFIED' });
    }
  });
});
