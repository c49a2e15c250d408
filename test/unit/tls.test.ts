// TLS without a broker: which failure an error from Node's TLS layer is (src/amqp/tls.ts), what
// TlsError says, and what the connection does with one (refused at once by connect(); logged as
// an error and retried with backoff on a reconnect). Against a real TLS node: test/security.
import net from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { checkTlsMaterial, speaksTls, tlsFailure } from '../../src/amqp/tls.js';
import { connect, TlsError, WarrenError, type TlsFailureReason, type Warren, type WarrenEvents } from '../../src/index.js';
import { ScriptedTransport } from '../helpers/scripted-transport.js';

/** An error as Node's TLS layer raises it: a message and a string `code` (OpenSSL's errors also a short `reason`). */
function nodeError(code: string, message: string, reason?: string): Error {
  return Object.assign(new Error(message), { code }, reason === undefined ? {} : { reason, library: 'SSL routines' });
}

describe('tlsFailure(): which TLS failure an error is', () => {
  it.each<[string, TlsFailureReason]>([
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'untrusted-certificate'],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'untrusted-certificate'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'untrusted-certificate'],
    ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'untrusted-certificate'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'hostname-mismatch'],
    ['CERT_HAS_EXPIRED', 'certificate-expired'],
    ['CERT_NOT_YET_VALID', 'certificate-not-yet-valid'],
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'client-certificate-refused'],
    ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'client-certificate-refused'],
    ['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'client-certificate-refused'],
    ['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'protocol-version'],
    ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'protocol-version'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'not-tls'],
    ['ERR_SSL_PACKET_LENGTH_TOO_LONG', 'not-tls'],
    ['ERR_OSSL_BAD_DECRYPT', 'key-passphrase'],
    ['ERR_OSSL_X509_KEY_VALUES_MISMATCH', 'key-mismatch'],
    ['ERR_OSSL_PEM_NO_START_LINE', 'unreadable-tls-material'],
    ['ERR_OSSL_UNSUPPORTED', 'unreadable-tls-material'],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'handshake-failed'],
  ])('%s is %s', (code, reason) => {
    expect(tlsFailure(nodeError(code, 'from Node'))).toMatchObject({ reason, tlsCode: code });
  });

  it.each([
    ['a refused TCP connection', nodeError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5671')],
    ['a reset', nodeError('ECONNRESET', 'Client network socket disconnected before secure TLS connection was established')],
    ['a login the broker refused', Object.assign(new Error('Handshake terminated by server: 403 (ACCESS-REFUSED)'), { code: 403 })],
    ['a plain error', new Error('Socket closed abruptly during opening handshake')],
    ['not an error', 'CERT_HAS_EXPIRED'],
  ])('%s is not a TLS failure', (_what, err) => {
    expect(tlsFailure(err)).toBeUndefined();
  });

  it("keeps OpenSSL's short reason, and Node's whole text for a name mismatch (it lists the names the certificate has)", () => {
    const openssl = nodeError('ERR_SSL_WRONG_VERSION_NUMBER', '80ACAAAF467F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../ssl3_record.c:350:\n', 'wrong version number');
    expect(tlsFailure(openssl)?.detail).toBe('wrong version number');
    const altnames = "Hostname/IP does not match certificate's altnames: Host: mq.example. is not in the cert's altnames: DNS:localhost";
    expect(tlsFailure(Object.assign(nodeError('ERR_TLS_CERT_ALTNAME_INVALID', altnames), { reason: 'Host: mq.example. is not in the cert' }))?.detail).toBe(altnames);
  });
});

describe('checkTlsMaterial(): the TLS options read before connecting', () => {
  it.each<[string, Record<string, unknown>, TlsFailureReason]>([
    ['a key that is not PEM', { cert: 'not a certificate', key: 'not a key' }, 'unreadable-tls-material'],
    ['a PKCS#12 bundle that is not one (Node gives no code)', { pfx: Buffer.from('not a bundle') }, 'unreadable-tls-material'],
  ])('refuses %s as %s', (_what, options, reason) => {
    let thrown: unknown;
    try {
      checkTlsMaterial(options);
    } catch (err) {
      thrown = err;
    }
    expect(tlsFailure(thrown)).toMatchObject({ reason });
  });

  it('takes what Node reads without complaint', () => {
    expect(() => checkTlsMaterial({ rejectUnauthorized: true, minVersion: 'TLSv1.2' })).not.toThrow();
  });

  it('reads a message without a code as a TLS failure only when it came from reading the options', () => {
    expect(tlsFailure(new Error('mac verify failure'))).toBeUndefined();
  });
});

describe('TlsError', () => {
  it('has code TLS_FAILED and says which failure, with the TLS code, and what to do', () => {
    const err = new TlsError('certificate-expired', 'amqps://app:***@mq:5671', { tlsCode: 'CERT_HAS_EXPIRED', detail: 'certificate has expired' });
    expect(err).toBeInstanceOf(WarrenError);
    expect(err).toMatchObject({ code: 'TLS_FAILED', reason: 'certificate-expired', tlsCode: 'CERT_HAS_EXPIRED', name: 'TlsError' });
    expect(err.message).toBe(
      "TLS connection to amqps://app:***@mq:5671 failed (CERT_HAS_EXPIRED): the broker's certificate has expired. Renew it on the broker " +
        '(then the connection comes back by itself). [certificate has expired]',
    );
  });
});

describe('speaksTls()', () => {
  it('is false for a port that answers in plain text, and for a closed port', async () => {
    expect.hasAssertions();
    // What RabbitMQ's plain listener answers to bytes that are not AMQP's header.
    const server = net.createServer((s) => s.resume().end('AMQP\x00\x00\x09\x01'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      expect(await speaksTls('127.0.0.1', port, 2000)).toBe(false);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(await speaksTls('127.0.0.1', port, 2000)).toBe(false);
  });
});

describe('a TLS failure on the connection', () => {
  const clients: Warren[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((w) => w.close()));
  });

  function capture() {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
    return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
  }

  it('fails connect() at once with TLS_FAILED: one attempt, no retry until initialConnectTimeout', async () => {
    expect.hasAssertions();
    const transport = new ScriptedTransport();
    transport.failNext('connect', nodeError('CERT_HAS_EXPIRED', 'certificate has expired'));
    const started = Date.now();
    const err: unknown = await connect({ urls: ['amqps://app:pw-9c1e@mq:5671'], transport, initialConnectTimeout: '30s' }).then(
      () => new Error('connect() resolved'),
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(TlsError);
    expect(err).toMatchObject({ code: 'TLS_FAILED', reason: 'certificate-expired', tlsCode: 'CERT_HAS_EXPIRED' });
    expect((err as Error).message).toContain('amqps://app:***@mq:5671');
    expect(transport.of('failed')).toHaveLength(1);
  });

  it("with several URLs, one node's TLS refusal moves on to the next URL at once; refused by every one, connect() fails with the first refusal", async () => {
    expect.hasAssertions();
    const transport = new ScriptedTransport();
    transport.failNext('connect', nodeError('CERT_HAS_EXPIRED', 'certificate has expired'));
    const warren = await connect({ urls: ['amqps://mq-0:5671', 'amqps://mq-1:5671'], transport, initialConnectTimeout: '30s' });
    try {
      expect(warren.health().connections.publish.url).toBe('amqps://mq-1:5671');
    } finally {
      await warren.close();
    }
    const all = new ScriptedTransport();
    all.failNext('connect', nodeError('CERT_HAS_EXPIRED', 'certificate has expired'));
    all.failNext('connect', nodeError('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"));
    const started = Date.now();
    const err: unknown = await connect({ urls: ['amqps://mq-0:5671', 'amqps://mq-1:5671'], transport: all, initialConnectTimeout: '30s' }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err).toMatchObject({ code: 'TLS_FAILED', reason: 'certificate-expired' });
    expect(all.of('failed')).toHaveLength(2);
  });

  it('keeps a passphrase out of the error, its cause and the log, wherever the TLS layer put it', async () => {
    expect.hasAssertions();
    const passphrase = 'pp-3b7d1e';
    const { logger, lines } = capture();
    const transport = new ScriptedTransport();
    transport.failNext('connect', nodeError('ERR_OSSL_BAD_DECRYPT', `bad decrypt (${passphrase})`, `bad decrypt ${passphrase}`));
    const err: unknown = await connect({ urls: ['amqps://mq:5671'], transport, logger, tls: { cert: 'C', key: 'K', passphrase } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TLS_FAILED', reason: 'key-passphrase' });
    const seen = JSON.stringify([(err as Error).message, (err as Error).stack, String((err as Error).cause), lines]);
    expect(seen).toContain('bad decrypt');
    expect(seen).not.toContain(passphrase);
  });

  it('on a reconnect, logs each TLS refusal as an error with its code, backs off, and connects once it is fixed', async () => {
    expect.hasAssertions();
    const { logger, records } = capture();
    const transport = new ScriptedTransport({ autoConfirm: true });
    const warren = await connect({ urls: ['amqps://mq:5671'], transport, logger, reconnect: { initialDelay: 20, maxDelay: 40 } });
    clients.push(warren);
    const reconnecting: WarrenEvents['reconnecting'][0][] = [];
    warren.on('reconnecting', (info) => reconnecting.push(info));
    for (let i = 0; i < 3; i++) transport.failNext('connect', nodeError('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"));
    const before = transport.links.length;
    const dropped = Date.now();
    transport.link('publish').drop();
    await transport.waitFor(() => transport.links.length === before + 1 && warren.state === 'open', 'the connection back after three TLS refusals');
    expect(reconnecting.map((r) => [r.attempt, (r.error as TlsError).reason])).toEqual([
      [1, 'hostname-mismatch'],
      [2, 'hostname-mismatch'],
      [3, 'hostname-mismatch'],
    ]);
    // The reconnect backoff (full jitter under 20, 40, 40 ms) was waited out between the attempts.
    expect(reconnecting.map((r) => r.delayMs < [20, 40, 40][r.attempt - 1]!)).toEqual([true, true, true]);
    expect(Date.now() - dropped).toBeGreaterThanOrEqual(reconnecting.reduce((sum, r) => sum + r.delayMs, 0));
    const refusals = records().filter((r) => r.msg === 'TLS connection refused; retrying with backoff until it is fixed');
    expect(refusals.map((r) => [r.level, r.code, r.reason, r.tlsCode])).toEqual([
      [50, 'TLS_FAILED', 'hostname-mismatch', 'ERR_TLS_CERT_ALTNAME_INVALID'],
      [20, 'TLS_FAILED', 'hostname-mismatch', 'ERR_TLS_CERT_ALTNAME_INVALID'],
      [20, 'TLS_FAILED', 'hostname-mismatch', 'ERR_TLS_CERT_ALTNAME_INVALID'],
    ]);
    expect(warren.state).toBe('open');
  });
});

describe('an EXTERNAL login the broker refuses', () => {
  const external = { urls: ['amqps://mq:5671'], tls: { cert: 'C', key: 'K' }, credentials: { mechanism: 'EXTERNAL' as const } };

  it.each([
    [
      'a certificate that names no user of the broker (403)',
      'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL."',
      "refused the EXTERNAL login (403 ACCESS_REFUSED). It takes the user name from the client certificate (the broker's ssl_cert_login_from",
    ],
    [
      'a broker without the EXTERNAL mechanism',
      'SASL mechanism EXTERNAL is not provided by the server',
      'does not offer the EXTERNAL login mechanism. Enable the rabbitmq_auth_mechanism_ssl plugin and list EXTERNAL in auth_mechanisms',
    ],
  ])('fails connect() at once with ACCESS_REFUSED for %s, saying what to check', async (_what, amqplibText, says) => {
    expect.hasAssertions();
    const transport = new ScriptedTransport();
    transport.failNext('connect', new Error(amqplibText));
    const err: unknown = await connect({ ...external, transport }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ACCESS_REFUSED', name: 'AccessRefusedError' });
    expect((err as Error).message).toContain(says);
    expect(transport.of('failed')).toHaveLength(1);
  });
});
