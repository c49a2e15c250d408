/**
 * TLS for the transport: the socket options `tls` becomes, what Node's and OpenSSL's TLS errors
 * mean (which failure, so connect() can say what to do), and a probe for amqp:// against a TLS
 * port. The only place that knows those error codes.
 */
import tls from 'node:tls';
import { errorCode, type TlsFailureReason } from '../support/errors.js';
import type { SocketOptions, TlsOptions } from './transport.js';

/** The names of `tls`'s options: socketOptions may not hold any of them when `tls` is given. */
export const TLS_OPTION_NAMES = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'servername', 'rejectUnauthorized', 'minVersion'] as const;

/** `tls` as Node's tls.connect() takes it: only what was given, plus the two defaults. */
export function tlsSocketOptions(options: TlsOptions): SocketOptions {
  const out: SocketOptions = { rejectUnauthorized: options.rejectUnauthorized, minVersion: options.minVersion };
  if (options.ca !== undefined) out.ca = options.ca;
  if (options.cert !== undefined) out.cert = options.cert;
  if (options.key !== undefined) out.key = options.key;
  if (options.pfx !== undefined) out.pfx = options.pfx;
  if (options.passphrase !== undefined) out.passphrase = options.passphrase;
  if (options.servername !== undefined) out.servername = options.servername;
  return out;
}

/** Certificate verification codes (OpenSSL's X509_V_ERR_* names, as Node gives them) meaning "not signed by a CA we trust". */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'CERT_CHAIN_TOO_LONG',
  'PATH_LENGTH_EXCEEDED',
]);

/** Other X509 verification codes: a certificate problem of some other kind. */
const OTHER_VERIFY = new Set(['ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD', 'UNABLE_TO_GET_CRL', 'CRL_HAS_EXPIRED', 'CRL_NOT_YET_VALID', 'CRL_SIGNATURE_FAILURE']);

/** TLS alerts the broker sends when it refuses the client's certificate (or wanted one). */
const CLIENT_CERT_ALERTS = new Set([
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
  'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR',
]);

const PROTOCOL_VERSION = new Set([
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
  'ERR_SSL_VERSION_TOO_LOW',
  'ERR_TLS_INVALID_PROTOCOL_VERSION',
]);

/** What a plain (non-TLS) server's first bytes look like to OpenSSL. */
const NOT_TLS = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_UNKNOWN_PROTOCOL', 'ERR_SSL_HTTP_REQUEST', 'ERR_SSL_RECORD_LAYER_FAILURE']);

/** Reading the client's own key, certificate or bundle failed. */
const MATERIAL: Record<string, TlsFailureReason> = {
  ERR_OSSL_BAD_DECRYPT: 'key-passphrase',
  ERR_OSSL_EVP_BAD_DECRYPT: 'key-passphrase',
  ERR_OSSL_PEM_BAD_PASSWORD_READ: 'key-passphrase',
  ERR_OSSL_PKCS12_MAC_VERIFY_FAILURE: 'key-passphrase',
  ERR_OSSL_X509_KEY_VALUES_MISMATCH: 'key-mismatch',
  ERR_OSSL_SSL_KEY_VALUES_MISMATCH: 'key-mismatch',
};

/** Marks an error from reading the TLS options (see `checkTlsMaterial`). */
const MATERIAL_ERROR = Symbol('warren.tlsMaterial');

/**
 * Reads the certificates and keys of `options` (what the socket would do first) and throws what
 * reading them threw, marked so that `tlsFailure` knows it for a problem with them: Node raises
 * some of these (a PKCS#12 bundle's wrong passphrase: "mac verify failure") without a code.
 */
export function checkTlsMaterial(options: SocketOptions): void {
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { [MATERIAL_ERROR]: true });
  }
}

export interface TlsFailure {
  reason: TlsFailureReason;
  /** Node's or OpenSSL's code, when the error has one. */
  tlsCode: string | undefined;
  /** The TLS library's own words: OpenSSL's short reason ("wrong version number"), else the error's message. */
  detail: string;
}

/** Which TLS failure an error from a connection attempt is, or undefined when it is not one (a refused TCP connection, a login refused, …). */
export function tlsFailure(err: unknown): TlsFailure | undefined {
  const tlsCode = errorCode(err);
  const reason = (tlsCode === undefined ? undefined : reasonOf(tlsCode)) ?? materialReason(err);
  if (reason === undefined) return undefined;
  const openssl = (err as { reason?: unknown }).reason;
  const detail = reason !== 'hostname-mismatch' && typeof openssl === 'string' ? openssl : err instanceof Error ? err.message.trim() : '';
  return { reason, tlsCode, detail };
}

/** What a marked error from reading the TLS options (whatever its code) was about. */
function materialReason(err: unknown): TlsFailureReason | undefined {
  if (typeof err !== 'object' || err === null || !(MATERIAL_ERROR in err)) return undefined;
  return /mac verify failure|bad decrypt/i.test(err instanceof Error ? err.message : '') ? 'key-passphrase' : 'unreadable-tls-material';
}

function reasonOf(code: string): TlsFailureReason | undefined {
  if (UNTRUSTED.has(code)) return 'untrusted-certificate';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return 'hostname-mismatch';
  if (code === 'CERT_HAS_EXPIRED') return 'certificate-expired';
  if (code === 'CERT_NOT_YET_VALID') return 'certificate-not-yet-valid';
  if (CLIENT_CERT_ALERTS.has(code)) return 'client-certificate-refused';
  if (PROTOCOL_VERSION.has(code)) return 'protocol-version';
  if (NOT_TLS.has(code)) return 'not-tls';
  const material = MATERIAL[code];
  if (material !== undefined) return material;
  // Any other OpenSSL decoder or PEM error comes from reading the options, before any byte is sent.
  if (/^ERR_OSSL_(PEM|ASN1|DECODER|UNSUPPORTED|X509|PKCS12)/.test(code)) return 'unreadable-tls-material';
  if (OTHER_VERIFY.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return 'handshake-failed';
  return undefined;
}

/**
 * Whether `host:port` answers a TLS handshake: asked after an amqp:// attempt the server closed
 * before AMQP's own handshake, which is what a TLS listener does with plain AMQP. Resolves false on
 * anything else (a plain listener, a refusal, no answer within `timeoutMs`). Only the handshake is
 * made (the server's certificate is not checked: nothing is sent over it), then the socket closed.
 */
export function speaksTls(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false });
    const done = (answer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('secureConnect', () => done(true));
    // A TLS alert (e.g. "certificate required") is an answer in TLS too.
    socket.once('error', (err: unknown) => done(/ALERT/.test(errorCode(err) ?? '')));
  });
}
