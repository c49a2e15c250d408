/**
 * Every failure warren reports is a `WarrenError` with a stable string `code`.
 * Match on `err.code` (or `instanceof`), never on message text.
 */

export type WarrenErrorCode =
  | 'CONFIG_INVALID'
  | 'VALIDATION_FAILED'
  | 'MESSAGE_TOO_LARGE'
  | 'CONNECTION_FAILED'
  | 'ACCESS_REFUSED'
  | 'PERMISSION_REFUSED'
  | 'TLS_FAILED'
  | 'CLOSED'
  | 'TOPOLOGY_MISMATCH'
  | 'TOPOLOGY_FAILED'
  | 'PUBLISH_NACKED'
  | 'UNROUTABLE'
  | 'PUBLISH_TIMEOUT'
  | 'PUBLISH_BUFFER_FULL'
  | 'PUBLISH_FAILED'
  | 'CONSUME_FAILED'
  | 'DECODE_FAILED'
  | 'UNSUPPORTED_CONTENT_ENCODING'
  | 'NON_RETRYABLE'
  | 'MANAGEMENT_FAILED'
  | 'NOT_MODELLED'
  | 'NOT_SETTLED'
  | 'CREDENTIALS_UNREADABLE';

export interface WarrenErrorOptions {
  cause?: unknown;
}

export class WarrenError extends Error {
  readonly code: WarrenErrorCode;

  constructor(code: WarrenErrorCode, message: string, options: WarrenErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** The string `code` of an error, by shape: also a WarrenError of another copy of warren (an app loaded by the `warren` command), whose class is not this one. */
export function errorCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** An option passed to warren is wrong. `problems` lists every one of them, not only the first. */
export class ConfigError extends WarrenError {
  readonly problems: readonly string[];

  constructor(where: string, problems: readonly string[]) {
    super('CONFIG_INVALID', `Invalid ${where}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/** One problem zod found in a payload: where in the payload, and what. */
export interface ValidationIssue {
  path: readonly PropertyKey[];
  message: string;
  code: string;
}

/** A payload does not match its message's schema. Nothing was sent (or, on receipt, the message was dead-lettered). */
export class ValidationError extends WarrenError {
  readonly messageName: string;
  readonly issues: readonly ValidationIssue[];

  constructor(messageName: string, issues: readonly ValidationIssue[], options: WarrenErrorOptions = {}) {
    const summary = issues
      .slice(0, 5)
      .map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
      .join('; ');
    // Issues under `headers` are about what was to be sent with the payload, not the payload.
    const headers = issues.length > 0 && issues.every((i) => i.path[0] === 'headers');
    super(
      'VALIDATION_FAILED',
      headers ? `Headers for message '${messageName}' cannot be sent: ${summary}` : `Payload for message '${messageName}' does not match its schema: ${summary}`,
      options,
    );
    this.messageName = messageName;
    this.issues = issues;
  }
}

/** The encoded body is larger than `maxMessageBytes`. Nothing was sent. */
export class MessageTooLargeError extends WarrenError {
  readonly bytes: number;
  readonly limit: number;

  /** `received`: a delivered message over the consumer's limit (it was dead-lettered), rather than a publish refused; `what` says how big. */
  constructor(messageName: string, bytes: number, limit: number, received?: { what: string }) {
    super(
      'MESSAGE_TOO_LARGE',
      received !== undefined
        ? `A message for '${messageName}' is ${received.what}, over the consumer's ${limit}-byte limit (maxMessageBytes); ` +
            'it was not decoded. Raise the consumer\'s maxMessageBytes if such messages are expected.'
        : `Message '${messageName}' is ${bytes} bytes, over the ${limit}-byte limit (maxMessageBytes). ` +
            'Send a reference to the data (e.g. an object-store key) instead, or raise maxMessageBytes.',
    );
    this.bytes = bytes;
    this.limit = limit;
  }
}

/**
 * A received body could not be decoded: not JSON, not UTF-8, a content type other than JSON
 * (`DECODE_FAILED`), or compressed with a `content-encoding` warren does not decode
 * (`UNSUPPORTED_CONTENT_ENCODING`).
 */
export class DecodeError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions & { code?: 'DECODE_FAILED' | 'UNSUPPORTED_CONTENT_ENCODING' } = {}) {
    super(options.code ?? 'DECODE_FAILED', message, options);
  }
}

/** No connection could be made to any of the configured URLs. */
export class ConnectionError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('CONNECTION_FAILED', message, options);
  }
}

/** The broker refused the credentials or the vhost (AMQP 403). Retrying will not help until the config changes. */
export class AccessRefusedError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('ACCESS_REFUSED', message, options);
  }
}

/** A RabbitMQ permission: what a user may do to an exchange or queue, each a regex of names per vhost. */
export type Permission = 'configure' | 'write' | 'read';

/** What the broker refused, read from its 403 text (see amqp/reply-codes.ts accessRefusal). */
export interface Refusal {
  /** The permission refused; undefined when the broker did not say (RabbitMQ before 4.0) and the operation needs more than one on this resource. */
  readonly permission: Permission | undefined;
  readonly resource: 'exchange' | 'queue';
  /** The name to grant on: `amq.default` for the default exchange (''), which warren publishes retry and dead-letter copies through. */
  readonly name: string;
  readonly vhost: string;
  readonly user: string;
}

/**
 * The user lacks a permission (AMQP 403 on a channel): `permission` (configure / write / read) on
 * the `resource` named `entity` in `vhost`. `operation` says what warren was doing and every
 * permission that operation needs. Retrying does not help until the user's permissions change.
 */
export class PermissionError extends WarrenError {
  readonly permission: Permission;
  readonly resource: 'exchange' | 'queue';
  readonly entity: string;
  readonly vhost: string;
  readonly user: string;
  readonly operation: string;

  /** Permissions that may have been refused instead (the broker did not say which): named in the message too. */
  readonly alternatives: readonly Permission[];

  /** `permission`: the one refused (from the broker, or the first the operation needs on this resource). `needs`: everything the operation needs, e.g. "configure and read on queue 'q', write on exchange 'amq.default'". */
  constructor(refusal: Refusal & { permission: Permission }, operation: string, needs: string, options: WarrenErrorOptions & { alternatives?: readonly Permission[] } = {}) {
    const { permission, resource, name, vhost, user } = refusal;
    const alternatives = options.alternatives ?? [];
    const which = alternatives.length > 0 ? `${permission} (or ${alternatives.join(' or ')}: RabbitMQ before 4.0 does not say which)` : permission;
    const defaultExchange = name === 'amq.default' ? " ('amq.default' is the default exchange, '', which retry and dead-letter copies go through)" : '';
    super(
      'PERMISSION_REFUSED',
      `RabbitMQ refused ${which} permission on ${resource} '${name}' in vhost '${vhost}' to user '${user}'${defaultExchange}, ` +
        `while ${operation} (which needs ${needs}). Grant it: make the ${permission} regex of user '${user}' on vhost '${vhost}' match '${name}' ` +
        `(rabbitmqctl set_permissions -p '${vhost}' '${user}' <configure> <write> <read> sets all three at once; keep the other two). ` +
        'See "Least privilege" in the README.',
      options,
    );
    this.permission = permission;
    this.resource = resource;
    this.entity = name;
    this.vhost = vhost;
    this.user = user;
    this.operation = operation;
    this.alternatives = alternatives;
  }
}

/**
 * A credentials file (`credentials.usernameFile` / `passwordFile`) cannot be read or is empty. The
 * message and `path` name the file, never its contents. At connect() it fails at once; on a
 * reconnect the attempt fails and is retried (the file is read again each time).
 */
export class CredentialsError extends WarrenError {
  readonly path: string;

  constructor(message: string, options: WarrenErrorOptions & { path: string }) {
    super('CREDENTIALS_UNREADABLE', message, options);
    this.path = options.path;
  }
}

/** Which part of a TLS connection failed: `TlsError.reason`. */
export type TlsFailureReason =
  | 'untrusted-certificate'
  | 'hostname-mismatch'
  | 'certificate-expired'
  | 'certificate-not-yet-valid'
  | 'client-certificate-refused'
  | 'protocol-version'
  | 'not-tls'
  | 'tls-required'
  | 'key-passphrase'
  | 'key-mismatch'
  | 'unreadable-tls-material'
  | 'handshake-failed';

/** What went wrong and what to do, by reason. */
const tlsAdvice: Record<TlsFailureReason, string> = {
  'untrusted-certificate':
    "the broker's certificate is not signed by a CA this client trusts. Give the CA that signed it (the whole chain up to the root) as tls.ca " +
    '(to the warren command: NODE_EXTRA_CA_CERTS=<its PEM file>); do not turn tls.rejectUnauthorized off to get past this',
  'hostname-mismatch':
    "the broker's certificate is not issued for the host name this client connected to (or tls.servername). Connect with a name in its " +
    'subjectAltName, set tls.servername to one, or reissue the certificate with this name',
  'certificate-expired': "the broker's certificate has expired. Renew it on the broker (then the connection comes back by itself)",
  'certificate-not-yet-valid': "the broker's certificate is not valid yet. Check the clocks of this machine and of the broker, or the certificate's start date",
  'client-certificate-refused':
    "the broker refused this client's certificate (or wanted one and got none). Give tls.cert and tls.key (or tls.pfx) signed by a CA " +
    "the broker trusts (its ssl_options.cacertfile), not expired",
  'protocol-version':
    'this client and the broker share no TLS version. warren asks for tls.minVersion (TLS 1.2 by default); enable TLS 1.2 or 1.3 on the broker (ssl_options.versions)',
  'not-tls': "the broker did not answer in TLS: this port is probably a plain AMQP listener (5672). Use the broker's TLS port (usually 5671) with amqps://",
  'tls-required': "this port is a TLS listener, and the URL is amqp://. Use amqps:// (and give tls.ca if the broker's CA is not a public one)",
  'key-passphrase': 'the client key could not be decrypted: tls.passphrase is wrong, or missing for an encrypted key',
  'key-mismatch': 'tls.cert and tls.key do not belong together: give the key the certificate was issued for',
  'unreadable-tls-material': 'a certificate or key in the TLS options could not be read: give PEM text (or a Buffer of it), or a PKCS#12 tls.pfx',
  'handshake-failed': 'the TLS handshake failed. Check the TLS settings of the broker (ssl_options) and of this client (tls)',
};

/**
 * A TLS connection to the broker failed for a reason that retrying will not fix: connect() rejects
 * with it at once; on a reconnect it is logged and retried with backoff (a renewed certificate
 * lets it through). `reason` says which failure; `tlsCode` is Node's or OpenSSL's code (e.g.
 * `CERT_HAS_EXPIRED`, `ERR_TLS_CERT_ALTNAME_INVALID`), when there is one.
 */
export class TlsError extends WarrenError {
  readonly reason: TlsFailureReason;
  readonly tlsCode: string | undefined;

  /** `url`: the broker's URL, password redacted; `detail`: the TLS library's own text. */
  constructor(reason: TlsFailureReason, url: string, options: WarrenErrorOptions & { tlsCode?: string | undefined; detail?: string | undefined } = {}) {
    const code = options.tlsCode === undefined ? '' : ` (${options.tlsCode})`;
    const detail = options.detail === undefined || options.detail === '' ? '' : ` [${options.detail}]`;
    super('TLS_FAILED', `TLS connection to ${url} failed${code}: ${tlsAdvice[reason]}.${detail}`, options);
    this.reason = reason;
    this.tlsCode = options.tlsCode;
  }
}

/** The operation was attempted on, or cut short by, a closed warren client or consumer. */
export class ClosedError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('CLOSED', message, options);
  }
}

/** One argument whose declared value differs from what the broker has. */
export interface ArgumentDifference {
  argument: string;
  declared: unknown;
  actual: unknown;
}

/** One queue or exchange that exists on the broker with other properties than declared. */
export interface Mismatch {
  readonly kind: 'queue' | 'exchange';
  readonly entity: string;
  readonly differences: readonly ArgumentDifference[];
  /** The broker's own text (it names one differing argument). */
  readonly brokerMessage: string;
}

function describeMismatch(m: Mismatch): string {
  const detail =
    m.differences.length > 0 ? m.differences.map((d) => `${d.argument}: ${d.declared === undefined ? 'not declared' : `declared ${JSON.stringify(d.declared)}`}, broker has ${d.actual === undefined ? 'none' : JSON.stringify(d.actual)}`).join('; ') : m.brokerMessage;
  return `the ${m.kind} '${m.entity}' (${detail})`;
}

/**
 * Queues or exchanges exist on the broker with other properties than declared (AMQP 406).
 * `mismatches` lists every one (the queues you declared before the ones warren generates, such
 * as `.dlq`); `kind`, `entity`, `differences` and `brokerMessage` are the first's. warren does not
 * delete or change them: change the declaration, or delete them on the broker.
 */
export class TopologyMismatchError extends WarrenError {
  readonly kind: 'queue' | 'exchange';
  readonly entity: string;
  readonly differences: readonly ArgumentDifference[];
  readonly brokerMessage: string;
  readonly mismatches: readonly Mismatch[];

  constructor(mismatches: readonly [Mismatch, ...Mismatch[]], options: WarrenErrorOptions = {}) {
    const [first] = mismatches;
    const what = mismatches.length === 1 ? `The ${first.kind} '${first.entity}' exists` : `${mismatches.length} queues or exchanges exist`;
    super(
      'TOPOLOGY_MISMATCH',
      `${what} on the broker with other properties than declared: ${mismatches.map(describeMismatch).join('; ')}. ` +
        `Change the declaration to match, or delete ${mismatches.length === 1 ? `the ${first.kind}` : 'them'} on the broker so warren can re-create ${mismatches.length === 1 ? 'it' : 'them'}.`,
      options,
    );
    this.kind = first.kind;
    this.entity = first.entity;
    this.differences = first.differences;
    this.brokerMessage = first.brokerMessage;
    this.mismatches = mismatches;
  }
}

/** Declaring or checking topology failed for a reason other than a mismatch or a missing permission (e.g. a missing exchange, a wait queue not declared beforehand). */
export class TopologyError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('TOPOLOGY_FAILED', message, options);
  }
}

interface PublishTarget {
  messageId: string;
  exchange: string;
  routingKey: string;
}

function target(t: PublishTarget): string {
  return `message ${t.messageId} to exchange '${t.exchange}' with routing key '${t.routingKey}'`;
}

/** The broker refused the message (basic.nack): e.g. a queue at max-length with overflow reject-publish. */
export class PublishNackedError extends WarrenError {
  readonly messageId: string;

  constructor(t: PublishTarget) {
    super(
      'PUBLISH_NACKED',
      `The broker refused ${target(t)} (basic.nack). A queue it routes to may be full (max-length with ` +
        'overflow reject-publish) or unavailable; the message was not stored.',
    );
    this.messageId = t.messageId;
  }
}

/** A mandatory message matched no queue and the broker returned it (basic.return). */
export class UnroutableError extends WarrenError {
  readonly messageId: string;
  readonly replyCode: number;
  readonly replyText: string;

  constructor(t: PublishTarget, replyCode: number, replyText: string) {
    super(
      'UNROUTABLE',
      `No queue is bound to receive ${target(t)}: the broker returned it (${replyCode} ${replyText}). ` +
        'Declare a binding for this routing key, or publish with mandatory: false if dropping it is intended.',
    );
    this.messageId = t.messageId;
    this.replyCode = replyCode;
    this.replyText = replyText;
  }
}

/**
 * No confirm came within the deadline. The outcome is unknown: the message may still be
 * delivered. Its messageId lets consumers drop a duplicate if the caller publishes it again.
 */
export class PublishTimeoutError extends WarrenError {
  readonly messageId: string;
  readonly timeoutMs: number;
  readonly sent: boolean;

  constructor(t: PublishTarget, timeoutMs: number, sent: boolean) {
    super(
      'PUBLISH_TIMEOUT',
      sent
        ? `No confirm for ${target(t)} within ${timeoutMs} ms. It was sent, so it may still be delivered; ` +
            'retry with the same messageId if consumers deduplicate.'
        : `Could not send ${target(t)} within ${timeoutMs} ms (the broker is unreachable or blocked); it was not sent.`,
    );
    this.messageId = t.messageId;
    this.timeoutMs = timeoutMs;
    this.sent = sent;
  }
}

/** The publish buffer (messages waiting while disconnected or blocked) is full. Nothing was sent. */
export class PublishBufferFullError extends WarrenError {
  readonly messageId: string;

  /** `waitedMs`: with publisher.whenFull 'wait', how long it waited for room before giving up. */
  constructor(t: PublishTarget, limit: string, waitedMs?: number) {
    super(
      'PUBLISH_BUFFER_FULL',
      `Cannot buffer ${target(t)}: ${limit} are already waiting for the broker` +
        (waitedMs === undefined ? '. ' : `, and no room freed up within its ${waitedMs} ms deadline. `) +
        'Slow down, or raise publisher.maxBufferedMessages / maxBufferedBytes.',
    );
    this.messageId = t.messageId;
  }
}

/** The broker closed the publishing channel because of this message (e.g. its exchange does not exist). */
export class PublishError extends WarrenError {
  readonly messageId: string;
  readonly replyCode: number | undefined;

  constructor(t: PublishTarget, reason: string, replyCode: number | undefined, options: WarrenErrorOptions = {}) {
    super('PUBLISH_FAILED', `The broker refused ${target(t)}: ${reason}`, options);
    this.messageId = t.messageId;
    this.replyCode = replyCode;
  }
}

/** A consumer could not attach to its queue. */
export class ConsumeError extends WarrenError {
  readonly queue: string;

  constructor(queue: string, message: string, options: WarrenErrorOptions = {}) {
    super('CONSUME_FAILED', message, options);
    this.queue = queue;
  }
}

/** The message of any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Throw this from a handler for a failure that retrying cannot fix (a declined card, a missing
 * record): the message goes straight to the dead-letter queue.
 */
export class NonRetryableError extends WarrenError {
  constructor(message: string, options: WarrenErrorOptions = {}) {
    super('NON_RETRYABLE', message, options);
  }
}

/** RabbitMQ's management HTTP API could not be reached, refused the credentials, or answered with an error. */
export class ManagementError extends WarrenError {
  /** The HTTP status, when the API answered. */
  readonly status: number | undefined;

  constructor(message: string, options: WarrenErrorOptions & { status?: number } = {}) {
    super('MANAGEMENT_FAILED', message, options);
    this.status = options.status;
  }
}

/**
 * The in-memory transport (`warren/testing`) was asked for something it does not model (a stream
 * queue, a priority queue, an exchange plugin, …). It refuses rather than pretend: test that part
 * against a real broker.
 */
export class NotModelledError extends WarrenError {
  constructor(message: string) {
    super('NOT_MODELLED', message);
  }
}

/** A test waited for the in-memory broker to settle, and deliveries were still in flight when its time ran out. */
export class NotSettledError extends WarrenError {
  constructor(message: string) {
    super('NOT_SETTLED', message);
  }
}
