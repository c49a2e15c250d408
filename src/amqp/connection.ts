import { connectionChannel } from '../instrument/channels.js';
import { AccessRefusedError, ClosedError, ConnectionError, messageOf, TlsError, TopologyError, WarrenError } from '../support/errors.js';
import { TypedEmitter } from '../support/events.js';
import type { Logger } from '../support/logger.js';
import { readLogin, userinfoOf, withoutUserinfo, type CredentialSource } from '../support/credentials.js';
import { redactSecrets, redactUrl } from '../support/redact.js';
import { failureLevel } from '../support/throttle.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { closeWithin } from './close.js';
import { amqpCode, connectFailure } from './reply-codes.js';
import { tlsFailure } from './tls.js';
import type { AuthMechanism, Link, SocketOptions, TlsOptions, Transport } from './transport.js';

export type ConnectionRole = 'publish' | 'consume';

/**
 * - `connecting`: no usable connection; trying the URLs in turn (also after a loss).
 * - `open`: connected, topology asserted.
 * - `blocked`: connected, but the broker stopped reading from publishers (memory or disk alarm).
 * - `closing` / `closed`: `close()` was called; nothing reconnects.
 */
export type ConnectionState = 'connecting' | 'open' | 'blocked' | 'closing' | 'closed';

export interface ReconnectInfo {
  role: ConnectionRole;
  /** Consecutive failed attempts so far (1 after the first failure). */
  attempt: number;
  delayMs: number;
  /** The URL of the failed attempt, password redacted. */
  url: string;
  error: Error;
}

export interface ConnectionEvents {
  state: [state: ConnectionState, previous: ConnectionState];
  open: [link: Link, url: string];
  lost: [error: Error];
  reconnecting: [info: ReconnectInfo];
  blocked: [reason: string];
  unblocked: [];
}

export interface ConnectionManagerOptions {
  transport: Transport;
  role: ConnectionRole;
  urls: readonly string[];
  /** Shown in the management UI as the client-provided connection name, suffixed with the role. */
  name: string;
  heartbeatSeconds: number;
  connectTimeoutMs: number;
  /** How long `start()` keeps trying before it gives up. */
  initialConnectTimeoutMs: number;
  backoff: BackoffOptions;
  logger: Logger;
  socketOptions: SocketOptions;
  /** TLS for amqps:// URLs; its passphrase (and socketOptions') is kept out of every log line, error and event. */
  tls: TlsOptions;
  mechanism: AuthMechanism;
  /**
   * The login, apart from the URLs (files read at each attempt); what it leaves out comes from
   * the URL. Undefined: the URL's userinfo, as written.
   */
  credentials?: CredentialSource;
  /**
   * Runs on every new connection before it is announced as open (asserts the topology).
   * If it throws, the connection is closed and the attempt counts as failed; on the first
   * connection a WarrenError from it fails `start()` at once.
   */
  setup: (link: Link, context: { initial: boolean }) => Promise<void>;
}

/**
 * One AMQP connection that comes back: a state machine over connecting / open / blocked /
 * closing / closed. Every state change goes through `#setState`. warren keeps two, one to
 * publish and one to consume, so a blocked publisher cannot stall acks.
 */
export class ConnectionManager extends TypedEmitter<ConnectionEvents> {
  readonly role: ConnectionRole;
  readonly #opts: ConnectionManagerOptions;
  readonly #log: Logger;
  /** Every password this manager has used, as written and URL-encoded: removed from any text it logs or throws. */
  readonly #secrets = new Set<string>();
  #state: ConnectionState = 'connecting';
  #connection: Link | undefined;
  #reason: string | undefined;
  #urlIndex = 0;
  #currentUrl: string | undefined;
  #since = Date.now();
  #wakeSleep: (() => void) | undefined;
  #closePromise: Promise<void> | undefined;
  #openWaiters: { resolve: (c: Link) => void; reject: (e: Error) => void }[] = [];
  /** The user name of the last login attempt (not a secret), for a refusal's message. */
  #lastUser: string | undefined;

  constructor(options: ConnectionManagerOptions) {
    super();
    this.role = options.role;
    this.#opts = options;
    this.#log = options.logger.child({ component: 'connection', role: options.role });
    for (const u of options.urls) {
      try {
        this.#addSecret(new URL(u).password);
      } catch {
        // Not a URL: the options check refuses it before a manager is made.
      }
    }
    if (options.credentials?.password !== undefined) this.#addSecret(options.credentials.password);
    for (const passphrase of [options.tls.passphrase, options.socketOptions.passphrase]) {
      if (typeof passphrase === 'string' && passphrase !== '') this.#secrets.add(passphrase);
    }
  }

  #addSecret(password: string): void {
    if (password === '') return;
    let decoded = password;
    try {
      decoded = decodeURIComponent(password);
    } catch {
      // Not URL-encoded: as it is.
    }
    for (const s of [password, decoded, encodeURIComponent(decoded)]) this.#secrets.add(s);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** When the current state began. */
  get since(): Date {
    return new Date(this.#since);
  }

  /** The open connection, or undefined while connecting or closed. */
  get connection(): Link | undefined {
    return this.#connection;
  }

  /** The URL of the open connection, password redacted. */
  get url(): string | undefined {
    return this.#currentUrl;
  }

  get connectionName(): string {
    return `${this.#opts.name}:${this.role}`;
  }

  /** Makes the first connection. Rejects with AccessRefusedError at once, or ConnectionError after `initialConnectTimeoutMs`. */
  async start(): Promise<void> {
    await this.#connectLoop(true);
  }

  /** Resolves with the connection as soon as it is open; rejects with ClosedError if the manager closes first. */
  whenOpen(): Promise<Link> {
    if (this.#connection !== undefined) return Promise.resolve(this.#connection);
    if (this.#state === 'closing' || this.#state === 'closed') return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
  }

  /** Closes the connection and stops reconnecting. Idempotent: every call returns the same promise. */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.#setState('closing');
    this.#wakeSleep?.();
    const waiters = this.#openWaiters.splice(0);
    for (const w of waiters) w.reject(this.#closedError());
    const conn = this.#connection;
    this.#connection = undefined;
    if (conn !== undefined) await closeWithin(conn);
    this.#setState('closed');
  }

  #closedError(): ClosedError {
    return new ClosedError(`The ${this.role} connection '${this.connectionName}' is closed.`);
  }

  #isClosing(): boolean {
    return this.#state === 'closing' || this.#state === 'closed';
  }

  #setState(next: ConnectionState, reason?: string): void {
    const previous = this.#state;
    if (previous === next) return;
    this.#state = next;
    this.#since = Date.now();
    this.#reason = reason;
    if (connectionChannel.hasSubscribers) {
      connectionChannel.publish({ client: this.#opts.name, role: this.role, state: next, previous, url: this.#currentUrl, reason });
    }
    this.emit('state', next, previous);
  }

  /** Why the connection last left `open` (the error's text, or the broker's block reason), while it is not open. */
  get reason(): string | undefined {
    return this.#reason;
  }

  async #connectLoop(initial: boolean): Promise<void> {
    const started = Date.now();
    let attempt = 0;
    let lastError: Error | undefined;
    /** First connection: the URLs whose node refused TLS (certificates are per node), by index, with the first refusal. */
    const tlsRefused = new Map<number, TlsError>();
    for (;;) {
      if (this.#isClosing()) throw this.#closedError();
      const url = this.#opts.urls[this.#urlIndex] ?? '';
      const shownUrl = redactUrl(url);
      try {
        await this.#attempt(url, shownUrl, initial);
        if (attempt > 0 || !initial) {
          this.#log.info({ url: shownUrl, attempts: attempt + 1, downMs: Date.now() - started }, 'connection re-established');
        } else {
          this.#log.info({ url: shownUrl }, 'connected');
        }
        return;
      } catch (raw) {
        if (raw instanceof ClosedError && this.#isClosing()) throw raw;
        const err = this.#toError(raw, shownUrl);
        lastError = err;
        if (initial && err instanceof TlsError && this.#opts.urls.length > 1) {
          // One node's certificate (expired, misnamed, another CA) must not keep the service
          // from the others: try the next URL at once. Refused by every one: nothing to wait for.
          if (!tlsRefused.has(this.#urlIndex)) tlsRefused.set(this.#urlIndex, err);
          const [first] = tlsRefused.values();
          if (tlsRefused.size === this.#opts.urls.length && first !== undefined) throw first;
          this.#log.error({ url: shownUrl, err, code: err.code, reason: err.reason, tlsCode: err.tlsCode }, 'TLS connection refused by this node; trying the next URL');
          this.#urlIndex = (this.#urlIndex + 1) % this.#opts.urls.length;
          continue;
        }
        if (initial && !(err instanceof ConnectionError)) throw err; // access refused, topology mismatch: retrying cannot help
        attempt += 1;
        this.#urlIndex = (this.#urlIndex + 1) % this.#opts.urls.length;
        const delayMs = backoffDelay(attempt - 1, this.#opts.backoff);
        if (initial && Date.now() - started + delayMs > this.#opts.initialConnectTimeoutMs) {
          throw new ConnectionError(
            `Could not connect to RabbitMQ at ${this.#opts.urls.map(redactUrl).join(', ')} within ` +
              `${this.#opts.initialConnectTimeoutMs} ms (${attempt} attempts; last error: ${lastError.message}). ` +
              'Check that the broker is running, that the host and port in the URL are right, that nothing (a firewall, ' +
              'a TLS setting, amqp:// against an amqps:// port) is in the way, and that it answers within connectTimeout.',
            { cause: lastError },
          );
        }
        // A reconnect storm logs loudly once, then quietly, with a reminder every 20 attempts. A TLS
        // failure (a certificate expired or replaced under a running service) waits for someone
        // to fix it: an error, not a warning.
        const level = failureLevel(attempt);
        if (err instanceof TlsError) {
          const fields = { url: shownUrl, attempt, delayMs, err, code: err.code, reason: err.reason, tlsCode: err.tlsCode };
          this.#log[level === 'warn' ? 'error' : level](fields, 'TLS connection refused; retrying with backoff until it is fixed');
        } else {
          this.#log[level]({ url: shownUrl, attempt, delayMs, err }, 'connection attempt failed; retrying');
        }
        this.emit('reconnecting', { role: this.role, attempt, delayMs, url: shownUrl, error: err });
        await this.#sleep(delayMs);
      }
    }
  }

  async #attempt(url: string, shownUrl: string, initial: boolean): Promise<void> {
    const o = this.#opts;
    // Read at each attempt: a rotated secret file is used from the next reconnect on.
    const login = o.credentials !== undefined ? await readLogin(o.credentials, url) : undefined;
    if (login !== undefined) this.#addSecret(login.password);
    // amqplib logs in as guest when the URL names no user.
    this.#lastUser = login?.username ?? (userinfoOf(url).username || 'guest');
    const conn = await o.transport.connect(login !== undefined ? withoutUserinfo(url) : url, {
      connectionName: this.connectionName,
      heartbeatSeconds: o.heartbeatSeconds,
      connectTimeoutMs: o.connectTimeoutMs,
      socketOptions: o.socketOptions,
      tls: o.tls,
      mechanism: o.mechanism,
      logger: this.#log,
      ...(login !== undefined ? { login } : {}),
    });
    let lostDuringSetup: Error | undefined;
    const onSetupClose = (err?: Error): void => {
      lostDuringSetup = err ?? new Error('connection closed during setup');
    };
    conn.on('close', onSetupClose);
    try {
      if (this.#isClosing()) throw this.#closedError();
      await this.#opts.setup(conn, { initial });
      if (lostDuringSetup !== undefined) throw lostDuringSetup;
      if (this.#isClosing()) throw this.#closedError();
    } catch (err) {
      // Read before closeWithin below, whose own close would set it too. amqplib emits the
      // broker's connection.close before the rejections of the calls it ended reach us.
      const brokerClose = lostDuringSetup;
      await closeWithin(conn);
      // The broker closed the whole connection during setup (541 for a deprecated feature it
      // refuses, or a queue type whose feature flag is off): its words say why, while the
      // declaration's own error only says 'Channel ended'.
      if (brokerClose !== undefined && brokerClose !== err && amqpCode(brokerClose) !== undefined && err instanceof TopologyError) {
        const why = this.#clean(brokerClose);
        throw new TopologyError(`${err.message}. The broker closed the connection: ${why.message}`, { cause: why });
      }
      throw err;
    } finally {
      conn.off('close', onSetupClose);
    }
    this.#currentUrl = shownUrl;
    this.#adopt(conn);
  }

  #adopt(conn: Link): void {
    this.#connection = conn;
    conn.on('close', (err?: Error) => this.#onClose(conn, err));
    conn.on('blocked', (reason: string) => {
      if (conn !== this.#connection) return;
      this.#log.warn({ reason }, 'broker blocked this connection (resource alarm); publishes wait until it unblocks');
      this.#setState('blocked', reason);
      this.emit('blocked', reason);
    });
    conn.on('unblocked', () => {
      if (conn !== this.#connection) return;
      this.#log.info('broker unblocked this connection');
      this.#setState('open');
      this.emit('unblocked');
    });
    this.#setState('open');
    const waiters = this.#openWaiters.splice(0);
    for (const w of waiters) w.resolve(conn);
    this.emit('open', conn, this.#currentUrl ?? '');
  }

  #onClose(conn: Link, err: Error | undefined): void {
    if (conn !== this.#connection || this.#isClosing()) return;
    this.#connection = undefined;
    const error = this.#clean(err ?? new Error('connection closed by the broker'));
    this.#log.warn({ err: error }, 'connection lost; reconnecting');
    this.#setState('connecting', error.message);
    this.emit('lost', error);
    this.#connectLoop(false).catch((e: unknown) => {
      if (!(e instanceof ClosedError)) this.#log.error({ err: this.#clean(e) }, 'reconnect loop stopped unexpectedly');
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wakeSleep = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wakeSleep = done;
    });
  }

  /** Turns whatever the transport threw into a WarrenError whose text holds no secret. */
  #toError(err: unknown, shownUrl: string): Error {
    if (err instanceof WarrenError) return err;
    const text = redactSecrets(messageOf(err), [...this.#secrets]);
    const tls = tlsFailure(err);
    if (tls !== undefined) {
      // Node's TLS errors carry the peer's whole certificate: the cause keeps only name, code and text.
      const cause = Object.assign(new Error(text), { name: err instanceof Error ? err.name : 'Error', code: tls.tlsCode });
      return new TlsError(tls.reason, shownUrl, { tlsCode: tls.tlsCode, detail: redactSecrets(tls.detail, [...this.#secrets]), cause });
    }
    const failure = connectFailure(text);
    if (failure === 'mechanism-not-offered') {
      return new AccessRefusedError(
        `RabbitMQ at ${shownUrl} does not offer the ${this.#opts.mechanism} login mechanism. ` +
          (this.#opts.mechanism === 'EXTERNAL'
            ? 'Enable the rabbitmq_auth_mechanism_ssl plugin and list EXTERNAL in auth_mechanisms on the broker, or log in with a user name and password.'
            : 'Check auth_mechanisms on the broker.'),
        { cause: this.#clean(err) },
      );
    }
    if (failure === 'login-refused' && this.#opts.mechanism === 'EXTERNAL') {
      return new AccessRefusedError(
        `RabbitMQ at ${shownUrl} refused the EXTERNAL login (403 ACCESS_REFUSED). It takes the user name from the client ` +
          "certificate (the broker's ssl_cert_login_from: the subject's DN by default, or its common_name): give tls.cert and tls.key, " +
          'and check that a user of that name exists on the broker and may use the vhost.',
        { cause: this.#clean(err) },
      );
    }
    if (failure === 'login-refused') {
      return new AccessRefusedError(
        `RabbitMQ at ${shownUrl} refused the login of user '${this.#lastUser ?? 'guest'}' (403 ACCESS_REFUSED). ` +
          `Check the user name and password${this.#opts.credentials !== undefined ? ' (credentials, and the URL)' : ' in the URL'}, and that the user exists on this broker.`,
        { cause: this.#clean(err) },
      );
    }
    if (failure === 'vhost-refused') {
      return new AccessRefusedError(
        `RabbitMQ at ${shownUrl} refused to open the virtual host. Check that the vhost in the URL exists and that this user may use it.`,
        { cause: this.#clean(err) },
      );
    }
    return new ConnectionError(`Connecting to ${shownUrl} failed: ${text}`, { cause: this.#clean(err) });
  }

  /** An error safe to log or attach as a cause: its message, stack and causes have every password removed. */
  #clean(err: unknown, depth = 0): Error {
    const e = err instanceof Error ? err : new Error(String(err));
    const secrets = [...this.#secrets];
    const text = redactSecrets(e.message, secrets);
    // A cause chain is short; a cycle (or a very deep one) is cut rather than followed.
    const cause = e.cause instanceof Error && depth < 8 ? this.#clean(e.cause, depth + 1) : undefined;
    if (text === e.message && redactSecrets(e.stack ?? '', secrets) === (e.stack ?? '') && cause === e.cause) return e;
    const copy = new Error(text, cause !== undefined ? { cause } : undefined);
    copy.name = e.name;
    const code = (e as { code?: unknown }).code;
    if (code !== undefined) Object.assign(copy, { code });
    return copy;
  }
}
