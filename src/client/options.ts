import { z } from 'zod';
import { TLS_OPTION_NAMES } from '../amqp/tls.js';
import type { Pem, SocketOptions, Transport } from '../amqp/transport.js';
import { durationMs } from '../define/config.js';
import type { Duration } from '../define/duration.js';
import { retryPolicySchema, type RetryPolicyInput } from '../define/retry-policy.js';
import type { MessageContract } from '../define/message.js';
import type { Topology } from '../define/topology.js';
import type { Logger } from '../support/logger.js';
import { credentialsProblems, type Credentials, type ManagementCredentials } from '../support/credentials.js';

const MiB = 1024 * 1024;

/** The URL's user name, password and vhost are valid percent-encoding (decodeURIComponent would throw a URIError later). */
function decodes(u: URL): boolean {
  try {
    for (const part of [u.username, u.password, u.pathname]) decodeURIComponent(part);
    return true;
  } catch {
    return false;
  }
}

/** A `frameMax` URL parameter RabbitMQ 4.1+ accepts: absent, 0 (the broker's own), or at least 8192 bytes. */
function frameMaxOk(value: string | null): boolean {
  if (value === null) return true;
  const n = Number(value);
  return Number.isInteger(n) && (n === 0 || n >= 8192);
}

const secretText = z.string().min(1, 'empty: leave it out, or give the value');
const fileName = z.string().min(1, 'empty: give the path of the file');
const managementCredentialsSchema = z.strictObject({
  username: secretText.optional(),
  password: secretText.optional(),
  usernameFile: fileName.optional(),
  passwordFile: fileName.optional(),
});
const credentialsSchema = managementCredentialsSchema.extend({
  mechanism: z.enum(['PLAIN', 'EXTERNAL'], { message: "must be 'PLAIN' (user name and password) or 'EXTERNAL' (the client certificate)" }).default('PLAIN'),
});

const pemPart = z.union([z.string(), z.instanceof(Buffer)], { message: 'must be PEM text or a Buffer' });
const pem = z.union([pemPart, z.array(pemPart)], { message: 'must be PEM text or a Buffer, or an array of them' });

/**
 * Why a `tls.ca` value is not PEM text, or undefined when every part holds a PEM block. A value that looks like a file
 * path gets the hint to pass the file's contents.
 */
function notPem(value: string | Buffer | (string | Buffer)[] | undefined, field: string): string | undefined {
  for (const part of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
    const text = typeof part === 'string' ? part : part.toString('latin1');
    if (text.includes('-----BEGIN ')) continue;
    const pathLike = typeof part === 'string' && !text.includes('\n') && /^(\/|\.{1,2}\/|[A-Za-z]:\\)|\.(pem|crt|cer|key)$/.test(text.trim());
    return pathLike
      ? `tls.${field} looks like a file path: give the file's contents, e.g. readFileSync('${text.trim()}')`
      : `tls.${field} holds no PEM block (-----BEGIN …-----): give the PEM text or a Buffer of it`;
  }
  return undefined;
}

const tlsSchema = z
  .strictObject({
    ca: pem.optional(),
    cert: pem.optional(),
    key: pem.optional(),
    pfx: pem.optional(),
    passphrase: z.string().optional(),
    servername: z.string().min(1).optional(),
    rejectUnauthorized: z.boolean().default(true),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3'], { message: "must be 'TLSv1.2' or 'TLSv1.3' (older versions are broken)" }).default('TLSv1.2'),
  })
  .superRefine((t, ctx) => {
    // A cert or key that is not PEM fails at connect() (TlsError, unreadable-tls-material); a ca
    // that is not would be taken by Node as trusting nothing, and read as an untrusted broker.
    const caProblem = notPem(t.ca, 'ca');
    if (caProblem !== undefined) ctx.addIssue({ code: 'custom', path: ['ca'], message: caProblem });
    if (t.key !== undefined && t.cert === undefined) ctx.addIssue({ code: 'custom', path: ['cert'], message: 'tls.key is given without tls.cert: give the client certificate with its key' });
    if (t.cert !== undefined && t.key === undefined) ctx.addIssue({ code: 'custom', path: ['key'], message: 'tls.cert is given without tls.key: give the key of the client certificate' });
  });

export const optionsSchema = z.strictObject({
  urls: z
    .array(
      z
        .string()
        .refine((u) => /^amqps?:\/\//.test(u) && URL.canParse(u), {
          message: 'must be an amqp:// or amqps:// URL, e.g. amqp://user:pass@localhost:5672/vhost (escape @ : / % in the user name, password and vhost as %40 %3A %2F %25)',
          abort: true,
        })
        .refine((u) => decodes(new URL(u)), {
          message: "has a '%' that is not an escape in its user name, password or vhost: write a % itself as %25 (and @ : / as %40 %3A %2F)",
          abort: true,
        })
        .refine((u) => frameMaxOk(new URL(u).searchParams.get('frameMax')), {
          message: 'frameMax must be at least 8192 (RabbitMQ 4.1 refuses smaller frames) or 0 for the broker\'s own; leave it out for 131072',
        }),
    )
    .min(1, 'give at least one broker URL'),
  name: z.string().min(1).default('warren'),
  heartbeat: durationMs.default(10_000),
  connectTimeout: durationMs.default(10_000),
  initialConnectTimeout: durationMs.default(30_000),
  closeTimeout: durationMs.default(30_000),
  reconnect: z
    .strictObject({
      initialDelay: durationMs.default(100),
      maxDelay: durationMs.default(30_000),
      factor: z.number().min(1).default(2),
    })
    .prefault({}),
  managementUrl: z
    .string()
    .refine((u) => /^https?:\/\//.test(u) && URL.canParse(u), { message: 'must be an http(s):// URL of the management API' })
    .optional(),
  credentials: credentialsSchema.optional(),
  managementCredentials: managementCredentialsSchema.optional(),
  declare: z.boolean().default(true),
  retry: retryPolicySchema.optional(),
  publisher: z
    .strictObject({
      maxInFlight: z.number().int().min(1).default(1000),
      timeout: durationMs.default(30_000),
      maxBufferedMessages: z.number().int().min(1).default(50_000),
      maxBufferedBytes: z.number().int().min(1).default(128 * MiB),
      maxMessageBytes: z.number().int().min(1).default(16 * MiB),
      whenFull: z.enum(['reject', 'wait']).default('reject'),
    })
    .prefault({}),
  tls: tlsSchema.optional(),
}).superRefine((o, ctx) => {
  // Each of the user name and the password comes from one place: the URL or the credentials option.
  const problems = new Set<string>();
  if (o.credentials !== undefined && o.credentials.mechanism === 'PLAIN') {
    o.urls.forEach((url, i) => credentialsProblems(o.credentials ?? {}, url, 'credentials', `urls.${i}`).forEach((p) => problems.add(p)));
  }
  if (o.managementCredentials !== undefined && o.managementUrl !== undefined) {
    credentialsProblems(o.managementCredentials, o.managementUrl, 'managementCredentials', 'managementUrl').forEach((p) => problems.add(p));
  }
  if (o.credentials?.mechanism === 'EXTERNAL') {
    const given = (['username', 'password', 'usernameFile', 'passwordFile'] as const).filter((k) => o.credentials?.[k] !== undefined);
    if (given.length > 0) problems.add(`credentials: mechanism 'EXTERNAL' logs in as the client certificate's user; remove ${given.join(', ')}`);
    o.urls.forEach((url, i) => {
      const u = new URL(url);
      if (u.username !== '' || u.password !== '') {
        problems.add(`urls.${i}: credentials.mechanism 'EXTERNAL' logs in as the client certificate's user; remove the user name and password from the URL`);
      }
    });
  }
  for (const message of problems) ctx.addIssue({ code: 'custom', message });
});

/** Only the names are read (never the values: a passphrase must not reach an error message). */
type SocketOptionNames = Readonly<Record<string, unknown>>;

/**
 * What is wrong with TLS and login taken together: `tls` with an amqp:// URL, EXTERNAL without
 * TLS or a client certificate, a TLS setting in both `tls` and `socketOptions`. Reads the raw
 * options (anything a JavaScript caller passes); the shapes are the schema's to check.
 */
export function securityProblems(options: { urls?: unknown; tls?: unknown; credentials?: unknown }, socketOptions: SocketOptionNames): string[] {
  const problems: string[] = [];
  const urls = Array.isArray(options.urls) ? options.urls.filter((u): u is string => typeof u === 'string') : [];
  const plain = urls.map((u, i) => [u, i] as const).filter(([u]) => u.startsWith('amqp://'));
  const tls = typeof options.tls === 'object' && options.tls !== null ? (options.tls as Record<string, unknown>) : undefined;
  const mechanism = typeof options.credentials === 'object' && options.credentials !== null ? (options.credentials as { mechanism?: unknown }).mechanism : undefined;
  for (const [, i] of plain) {
    if (tls !== undefined) problems.push(`urls.${i}: tls is given, but this URL is amqp:// (no TLS); use amqps:// and the broker's TLS port (usually 5671)`);
    else if (mechanism === 'EXTERNAL') problems.push(`urls.${i}: credentials.mechanism 'EXTERNAL' logs in with a client certificate, which needs TLS: use amqps://`);
  }
  if (tls !== undefined) {
    for (const name of TLS_OPTION_NAMES) {
      if (socketOptions[name] !== undefined) problems.push(`socketOptions.${name}: with tls given, TLS settings go in tls only; move it to tls.${name}`);
    }
  }
  const has = (name: string): boolean => tls?.[name] !== undefined || socketOptions[name] !== undefined;
  if (mechanism === 'EXTERNAL' && !has('cert') && !has('pfx')) {
    problems.push("credentials.mechanism: 'EXTERNAL' logs in as the client certificate's user: give tls.cert and tls.key (or tls.pfx)");
  }
  return problems;
}

export interface ConnectOptions {
  /**
   * One or more broker URLs (a cluster's nodes), tried in turn. The login goes in the URL or in
   * `credentials`. Required, but with the in-memory transport (`warren/testing`'s `memory()`), which has none.
   */
  urls?: string[];
  /**
   * The login, instead of writing it into the URLs: a user name and password, each given as a
   * value or as a file (`usernameFile`, `passwordFile`: e.g. a Kubernetes secret mounted as a
   * file), read at each connection attempt, so a rotated secret is picked up on reconnect.
   * What it leaves out comes from the URL (e.g. `amqp://billing@rabbit` with `passwordFile`);
   * the same field in both is a ConfigError. An unreadable or empty file fails with CredentialsError.
   */
  credentials?: Credentials;
  /** Names this service's connections in the management UI (`<name>:publish`, `<name>:consume`) and is sent as app-id. Default 'warren'. */
  name?: string;
  /** Exchanges, queues and bindings asserted on every (re)connect (unless `declare` is false). */
  topology?: Topology;
  /**
   * `false`: declare nothing — the topology and the consumers' retry wait queues are declared by
   * someone else (a deploy step running `warren topology apply <app>` as a user with configure
   * permission), and this client's user needs no configure permission. warren still reads the
   * topology (dead-letter queues, queue types), and checks that a consumer's queue and its wait
   * queues exist when it attaches. Default true.
   */
  declare?: boolean;
  /**
   * The contracts this service publishes. connect() checks each against the topology and fails
   * with a ConfigError naming any whose exchange it does not declare (rather than a
   * PUBLISH_FAILED at the first publish). Leave out a contract whose exchange another service declares.
   */
  messages?: readonly MessageContract[];
  /** A pino logger. Default: silent. */
  logger?: Logger;
  /** Heartbeat interval; a dead peer is detected after about two. Default 10 s. */
  heartbeat?: Duration;
  /** Deadline for one connection attempt (TCP + handshake). Default 10 s. */
  connectTimeout?: Duration;
  /** How long `connect()` keeps trying before it rejects with ConnectionError. Default 30 s. */
  initialConnectTimeout?: Duration;
  /** How long `close()` waits for unconfirmed publishes (running handlers: each consumer's stopTimeoutMs). Default 30 s. */
  closeTimeout?: Duration;
  /** Reconnect backoff: exponential with full jitter. Defaults 100 ms, 30 s, ×2. */
  reconnect?: { initialDelay?: Duration; maxDelay?: Duration; factor?: number };
  /** The management HTTP API (e.g. http://guest:guest@localhost:15672), used only to name the differing arguments of a topology mismatch. */
  managementUrl?: string;
  /**
   * The management API's login, as `credentials` (files read at each request). Default: the
   * user in `managementUrl`; if it has none, `credentials` (with the first URL's user name when
   * they give none).
   */
  managementCredentials?: ManagementCredentials;
  publisher?: {
    /** Published and unconfirmed messages, at most. Default 1000. */
    maxInFlight?: number;
    /** A publish not confirmed within this rejects with PublishTimeoutError. Default 30 s. */
    timeout?: Duration;
    /** Messages waiting to be sent (while disconnected or blocked), at most; more reject with PublishBufferFullError. Default 50 000. */
    maxBufferedMessages?: number;
    /** Body bytes waiting to be sent, at most. Default 128 MiB. */
    maxBufferedBytes?: number;
    /** Largest body accepted; larger rejects with MessageTooLargeError. Default 16 MiB. */
    maxMessageBytes?: number;
    /** A publish that finds the buffer full: 'reject' at once with PublishBufferFullError (default), or 'wait' for room until its `timeout`, then PublishBufferFullError. */
    whenFull?: 'reject' | 'wait';
  };
  /** The retry policy of consumers that have none of their own (see defineConsumer's `retry`). Default: none. */
  retry?: RetryPolicyInput;
  /**
   * TLS for `amqps://` URLs (given with an amqp:// URL it is a ConfigError). Without it, an
   * amqps:// URL checks the broker's certificate against Node's public CAs, TLS 1.2 or later.
   */
  tls?: {
    /** The CA (or chain) that signed the broker's certificate, PEM. Default: Node's public CAs. */
    ca?: Pem | undefined;
    /** This client's certificate, PEM: for a broker that verifies clients, and for EXTERNAL login. */
    cert?: Pem | undefined;
    /** The client certificate's private key, PEM (encrypted: give `passphrase`). */
    key?: Pem | undefined;
    /** Certificate and key in one PKCS#12 bundle, instead of `cert` and `key`. */
    pfx?: Pem | undefined;
    /** Decrypts `key` or `pfx`. Never logged, nor put in an error or event. */
    passphrase?: string | undefined;
    /** The name the broker's certificate must carry (and sent as SNI). Default: the URL's host. */
    servername?: string | undefined;
    /** Check the broker's certificate: its CA, its name, its dates. Default true; false says so in a warning at connect(). */
    rejectUnauthorized?: boolean;
    /** Default 'TLSv1.2'. */
    minVersion?: 'TLSv1.2' | 'TLSv1.3';
  };
  /** Extra socket options (keep-alive, client properties, …). TCP_NODELAY is on. TLS settings go in `tls`. */
  socketOptions?: SocketOptions;
  /**
   * How warren reaches the broker. Default: AMQP 0-9-1 over TCP. The seam an in-memory transport
   * plugs into (see "Architecture" in the README); nothing above it changes.
   */
  transport?: Transport;
}

export type Settings = z.output<typeof optionsSchema>;
