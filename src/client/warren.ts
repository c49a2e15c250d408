import { defaultTransport } from '../amqp/default-transport.js';
import { ConnectionManager, type ConnectionRole, type ConnectionState, type ReconnectInfo } from '../amqp/connection.js';
import { withChannel } from '../amqp/close.js';
import { amqpCode, brokerText, ReplyCode } from '../amqp/reply-codes.js';
import type { Link, SocketOptions, TlsOptions, Transport } from '../amqp/transport.js';
import { Subscription, type ConsumerEvent, type ConsumerHandle, type ConsumerHealth } from '../consume/subscription.js';
import {
  deadLetterQueueOf,
  peekDeadLetters,
  purgeDeadLetters,
  replayDeadLetters,
  type DeadLetter,
  type PeekOptions,
  type PurgeOptions,
  type PurgeResult,
  type ReplayOptions,
  type ReplayResult,
} from '../dead-letter/dead-letters.js';
import { parseConfig } from '../define/config.js';
import { effectiveRetry, type AckMode, type Consumer } from '../define/consumer.js';
import { retryTiers } from '../define/retry-policy.js';
import { waitQueueName } from '../dead-letter/wait-queues.js';
import type { MessageContract, PayloadInput } from '../define/message.js';
import { emptyTopology, knowsExchange, type Topology } from '../define/topology.js';
import type { PublishOptions } from '../publish/options.js';
import { Publisher, type PublisherStats, type PublishReceipt } from '../publish/publisher.js';
import { ClosedError, ConfigError, PermissionError, TopologyError, TopologyMismatchError, WarrenError } from '../support/errors.js';
import { TypedEmitter } from '../support/events.js';
import { silentLogger, type Logger } from '../support/logger.js';
import { assertTopology, assertWaitQueue, type DeclareTarget } from '../topology/apply.js';
import { ManagementClient } from '../topology/management.js';
import { userinfoOf, type CredentialSource } from '../support/credentials.js';
import { optionsSchema, securityProblems, type ConnectOptions, type Settings } from './options.js';

export type { ConnectOptions };

export interface ConnectionHealth {
  state: ConnectionState;
  since: Date;
  /** The broker URL in use, password redacted. */
  url: string | undefined;
}

export interface Health {
  /** Connections usable (open or blocked) and every consumer attached: ready for a readiness probe. */
  ok: boolean;
  /** The broker has blocked publishing (resource alarm); publishes wait. */
  blocked: boolean;
  connections: { publish: ConnectionHealth; consume: ConnectionHealth | undefined };
  consumers: ConsumerHealth[];
  /** Publishes in flight, buffered (and their bytes), waiting for room; and counts of what became of them since connect(). */
  publisher: PublisherStats;
}

export interface WarrenEvents {
  /** A connection changed state. */
  state: [change: { role: ConnectionRole; state: ConnectionState; previous: ConnectionState }];
  connected: [info: { role: ConnectionRole; url: string }];
  disconnected: [info: { role: ConnectionRole; error: Error }];
  reconnecting: [info: ReconnectInfo];
  blocked: [info: { role: ConnectionRole; reason: string }];
  unblocked: [info: { role: ConnectionRole }];
  /** A consumer attached, detached, or was cancelled by the broker. */
  consumer: [event: ConsumerEvent];
  /** A failure that is not any caller's: e.g. a topology mismatch found on reconnect. */
  error: [error: WarrenError];
}

/** A connected warren client. Create it with `connect()`. */
export class Warren extends TypedEmitter<WarrenEvents> {
  readonly topology: Topology;
  readonly #settings: Settings;
  /** The injected logger bound to this client's name; components bind their own context on it. */
  readonly #root: Logger;
  readonly #log: Logger;
  readonly #declare: DeclareTarget;
  readonly #socketOptions: SocketOptions;
  readonly #tls: TlsOptions;
  readonly #transport: Transport;
  readonly #publishConn: ConnectionManager;
  #consumeConn: ConnectionManager | undefined;
  #consumeConnStart: Promise<void> | undefined;
  readonly #publisher: Publisher;
  readonly #consumers = new Set<Subscription>();
  /** Names of consumers running or being started: held across the awaits in consume(). */
  readonly #consumerNames = new Set<string>();
  #closePromise: Promise<void> | undefined;
  /** close() has finished. */
  #closed = false;
  #deliveryLimitsChecked = false;

  /** @internal Use `connect()`. */
  constructor(settings: Settings, topology: Topology, logger: Logger, socketOptions: SocketOptions, transport: Transport) {
    super();
    this.#transport = transport;
    this.#settings = settings;
    this.topology = topology;
    // `client`, not `name`: pino owns `name` (a logger created with one would print it twice).
    this.#root = logger.child({ client: settings.name });
    this.#log = this.#root.child({ component: 'warren' });
    this.#socketOptions = socketOptions;
    this.#tls = settings.tls ?? { rejectUnauthorized: true, minVersion: 'TLSv1.2' };
    if (settings.urls.some((u) => u.startsWith('amqps://')) && (!this.#tls.rejectUnauthorized || socketOptions.rejectUnauthorized === false)) {
      const text =
        "TLS certificate checks are off (rejectUnauthorized: false): this client talks to whoever answers at the broker's address. " +
        (this.#tls.ca !== undefined || socketOptions.ca !== undefined
          ? 'Turn them back on: with tls.ca given, a broker certificate it signed passes'
          : "Give the CA that signed the broker's certificate as tls.ca instead");
      this.#log.warn({ rejectUnauthorized: false }, text);
      // Also where no logger was given (warren logs nothing by default): a security setting must not go unseen.
      process.emitWarning(text, { code: 'WARREN_TLS_UNVERIFIED' });
    }
    const firstUrl = new URL(settings.urls[0] ?? '');
    this.#declare = {
      topology,
      vhost: decodeURIComponent(firstUrl.pathname.slice(1)) || '/',
      management: settings.managementUrl !== undefined ? new ManagementClient(settings.managementUrl, managementLogin(settings)) : undefined,
      log: this.#root.child({ component: 'topology' }),
      declare: settings.declare,
    };
    this.#publishConn = this.#connectionManager('publish');
    this.#publisher = new Publisher(
      this.#publishConn,
      {
        maxInFlight: settings.publisher.maxInFlight,
        timeoutMs: settings.publisher.timeout,
        maxBufferedMessages: settings.publisher.maxBufferedMessages,
        maxBufferedBytes: settings.publisher.maxBufferedBytes,
        maxMessageBytes: settings.publisher.maxMessageBytes,
        whenFull: settings.publisher.whenFull,
        appId: settings.name,
      },
      this.#root,
    );
  }

  protected override onListenerError(event: string, err: unknown): void {
    this.#log.error({ event, err }, 'a warren event listener threw; ignored');
  }

  #connectionManager(role: ConnectionRole): ConnectionManager {
    const s = this.#settings;
    const m = new ConnectionManager({
      transport: this.#transport,
      role,
      urls: s.urls,
      name: s.name,
      heartbeatSeconds: Math.max(0, Math.round(s.heartbeat / 1000)),
      connectTimeoutMs: s.connectTimeout,
      initialConnectTimeoutMs: s.initialConnectTimeout,
      backoff: { initialDelayMs: s.reconnect.initialDelay, maxDelayMs: s.reconnect.maxDelay, factor: s.reconnect.factor },
      logger: this.#root,
      socketOptions: this.#socketOptions,
      ...(s.credentials?.mechanism === 'PLAIN' ? { credentials: s.credentials } : {}),
      tls: this.#tls,
      mechanism: s.credentials?.mechanism ?? 'PLAIN',
      setup: (conn, ctx) => this.#setup(conn, ctx.initial, role),
    });
    m.on('state', (state, previous) => this.emit('state', { role, state, previous }));
    m.on('open', (_c, url) => this.emit('connected', { role, url }));
    m.on('lost', (error) => this.emit('disconnected', { role, error }));
    m.on('reconnecting', (info) => this.emit('reconnecting', info));
    m.on('blocked', (reason) => this.emit('blocked', { role, reason }));
    m.on('unblocked', () => this.emit('unblocked', { role }));
    return m;
  }

  /** Asserts the topology on a new connection. On a reconnect a mismatch is reported, not retried in a loop. */
  async #setup(conn: Link, initial: boolean, role: ConnectionRole): Promise<void> {
    if (initial) this.#warnDeliveryLimits(conn);
    try {
      // An exclusive queue belongs to the connection that declares it: only the consume connection may.
      await assertTopology(conn, this.#declare, { exclusiveQueues: role === 'consume' });
    } catch (err) {
      if (!initial && (err instanceof TopologyMismatchError || err instanceof TopologyError || err instanceof PermissionError)) {
        this.#log.error({ err, code: err.code }, 'topology assertion failed after reconnect; carrying on with what the broker has');
        this.emit('error', err);
        return;
      }
      throw err;
    }
  }

  /**
   * RabbitMQ 4.x gives every quorum queue a delivery limit of 20 (3.x: none): a message returned
   * 20 times (requeued by its handler, or unacked when its consumer's connection was lost) is then
   * dead-lettered, or dropped when the queue has nowhere to dead-letter to. Said once per client,
   * for each quorum queue of the topology with neither a dead-letter target nor its own limit.
   */
  #warnDeliveryLimits(conn: Link): void {
    if (this.#deliveryLimitsChecked) return;
    this.#deliveryLimitsChecked = true;
    const major = Number.parseInt(conn.serverVersion ?? '', 10);
    if (!(major >= 4)) return;
    for (const q of this.topology.queues) {
      if (q.type !== 'quorum' || q.deadLetterOf !== undefined) continue;
      if ('x-dead-letter-exchange' in q.arguments || 'x-delivery-limit' in q.arguments) continue;
      this.#log.warn(
        { queue: q.name, broker: conn.serverVersion },
        `RabbitMQ ${conn.serverVersion ?? '4'} drops a message of quorum queue '${q.name}' once it has been returned 20 times (requeued, or unacked when its consumer's connection was lost): ` +
          'the queue has no dead-letter target. Set deadLetter: true to keep such messages in its .dlq, or deliveryLimit to choose the limit (unless a policy sets one)',
      );
    }
  }

  /** @internal */
  async start(): Promise<void> {
    await this.#publishConn.start();
    await this.#publisher.ready();
  }

  /** The `name` given to connect(): its connections' names and the `client` of its events. */
  get name(): string {
    return this.#settings.name;
  }

  /** The publish connection's state (the consume connection's is in `health()`). */
  get state(): ConnectionState {
    return this.#publishConn.state;
  }

  /**
   * Validates `payload` against the contract's schema, then publishes it. Resolves only after the
   * broker has confirmed the message. While disconnected it waits (bounded by
   * `publisher.maxBufferedMessages` / `maxBufferedBytes` and `publisher.timeout`); a message whose
   * confirm was lost with the connection is re-published with the same messageId.
   *
   * Rejects with ValidationError, MessageTooLargeError, PublishBufferFullError, UnroutableError,
   * PublishNackedError, PublishError, PermissionError (no write permission on the exchange), PublishTimeoutError or ClosedError.
   */
  publish<M extends MessageContract>(contract: M, payload: PayloadInput<M>, options?: PublishOptions): Promise<PublishReceipt> {
    return this.#publisher.publish(contract, payload, options);
  }

  /**
   * Starts a consumer on its own channel of the consume connection. Resolves once it is
   * attached to its queue; rejects with ConsumeError if the queue cannot be consumed.
   * After a connection loss or a broker cancel it re-attaches by itself.
   */
  async consume<M extends MessageContract, A extends AckMode>(consumer: Consumer<M, A>): Promise<ConsumerHandle> {
    if (this.#closePromise !== undefined) throw new ClosedError(`Cannot start consumer '${consumer.name}': warren is ${this.#closed ? 'closed' : 'closing'}.`);
    if (this.#consumerNames.has(consumer.name)) {
      throw new ConfigError(`consumer '${consumer.name}'`, [`name: a consumer named '${consumer.name}' is already running; give each a unique name`]);
    }
    this.#consumerNames.add(consumer.name);
    const t = this.topology;
    if (t.exchanges.length + t.queues.length > 0 && !knowsExchange(t, consumer.message.exchange)) {
      this.#log.warn(
        { consumer: consumer.name, contract: consumer.message.name, exchange: consumer.message.exchange },
        "the consumer's contract names an exchange the topology does not declare: publishing it fails until something declares that exchange",
      );
    }
    let runtime: Subscription | undefined;
    try {
      const conn = await this.#consumeConnection();
      runtime = new Subscription(consumer, {
        client: this.#settings.name,
        connection: conn,
        publisher: this.#publisher,
        defaultRetry: this.#settings.retry,
        declare: this.#declare,
        logger: this.#root,
        onEvent: (e) => this.emit('consumer', e),
        onStopped: (r) => {
          this.#consumers.delete(r);
          this.#consumerNames.delete(r.name);
        },
      });
      this.#consumers.add(runtime);
      await runtime.start();
      return runtime;
    } catch (err) {
      if (runtime !== undefined) this.#consumers.delete(runtime);
      this.#consumerNames.delete(consumer.name);
      throw err;
    }
  }

  /** The consume connection is opened on the first `consume()`, so a service that only publishes holds one connection. */
  async #consumeConnection(): Promise<ConnectionManager> {
    if (this.#consumeConn === undefined) {
      const m = this.#connectionManager('consume');
      this.#consumeConn = m;
      this.#consumeConnStart = m.start().catch(async (err: unknown) => {
        // Forget a first attempt that failed, so the next consume() tries afresh.
        this.#consumeConn = undefined;
        this.#consumeConnStart = undefined;
        await m.close();
        throw err;
      });
    }
    const m = this.#consumeConn;
    await this.#consumeConnStart;
    return m;
  }

  /**
   * Lists messages in the dead-letter queue of `queue` (its `.dlq`), with why they failed, without
   * removing them: the first `limit` (default 10; a number is the limit), or the first `limit` that `filter` picks.
   */
  async peekDeadLetters(queue: string, options: number | PeekOptions = 10): Promise<DeadLetter[]> {
    const opts = typeof options === 'number' ? { limit: options } : options;
    return peekDeadLetters(await this.#publishConn.whenOpen(), deadLetterQueueOf(this.topology, queue), opts);
  }

  /**
   * Removes messages from the dead-letter queue of `queue` for good: those `filter` picks (default
   * all), at most `limit`. The rest stay, in their order.
   */
  async purgeDeadLetters(queue: string, options: PurgeOptions = {}): Promise<PurgeResult> {
    const dlq = deadLetterQueueOf(this.topology, queue);
    const result = await purgeDeadLetters(await this.#publishConn.whenOpen(), dlq, options);
    this.#log.info({ queue, dlq, ...result }, 'purged dead letters');
    return result;
  }

  /**
   * Moves messages from the dead-letter queue of `queue` back to the queue they failed in, with
   * confirms: each leaves the dead-letter queue only after its copy is confirmed. Their attempt
   * count starts again. `filter` picks which; `limit` caps how many.
   */
  async replayDeadLetters(queue: string, options: ReplayOptions = {}): Promise<ReplayResult> {
    const dlq = deadLetterQueueOf(this.topology, queue);
    const result = await replayDeadLetters(await this.#publishConn.whenOpen(), this.#publisher, queue, dlq, options);
    this.#log.info({ queue, dlq, ...result }, 'replayed dead letters');
    return result;
  }

  /**
   * Declares the topology again, and the retry wait queues of each consumer given (as consume()
   * would), without consuming: what `warren topology apply` runs. Never deletes or changes an
   * entity; rejects with TopologyMismatchError listing every one that differs.
   */
  async declare(consumers: readonly Consumer[] = []): Promise<void> {
    const link = await this.#publishConn.whenOpen();
    // Asked for: declared also by a client that connected with declare: false.
    const target = { ...this.#declare, declare: true };
    await assertTopology(link, target, { exclusiveQueues: false });
    for (const c of consumers) {
      const retry = effectiveRetry(c, this.#settings.retry);
      const type = this.topology.queue(c.queue)?.type ?? 'classic';
      for (const delayMs of retry !== undefined ? retryTiers(retry) : []) {
        await assertWaitQueue(link, target, c.queue, type, waitQueueName(c.queue, delayMs), delayMs, this.#declare.log);
      }
    }
  }

  /**
   * The queue's ready messages and consumers, exact, from the broker (a passive declare; the
   * management API's figures lag by up to 5 s). Messages delivered and not yet acked are not
   * counted. Rejects with TopologyError when the queue does not exist.
   */
  async queueStatus(queue: string): Promise<{ queue: string; messages: number; consumers: number }> {
    const info = await withChannel(await this.#publishConn.whenOpen(), (ch) => ch.checkQueue(queue)).catch((err: unknown) => {
      throw amqpCode(err) === ReplyCode.NOT_FOUND
        ? new TopologyError(`Queue '${queue}' does not exist (on this vhost).`, { cause: err })
        : new TopologyError(`Checking queue '${queue}' failed: ${brokerText(err)}.`, { cause: err });
    });
    return { queue: info.queue, messages: info.messageCount, consumers: info.consumerCount };
  }

  /** Connections, blocked flag and each consumer's attachment, for a readiness probe. */
  health(): Health {
    const conn = (m: ConnectionManager): ConnectionHealth => ({ state: m.state, since: m.since, url: m.url });
    const consumers = [...this.#consumers].map((c) => c.health());
    const usable = (m: ConnectionManager | undefined): boolean => m === undefined || m.state === 'open' || m.state === 'blocked';
    return {
      ok: usable(this.#publishConn) && usable(this.#consumeConn) && consumers.every((c) => c.attached && !c.stalled),
      blocked: this.#publishConn.state === 'blocked' || this.#consumeConn?.state === 'blocked',
      connections: { publish: conn(this.#publishConn), consume: this.#consumeConn !== undefined ? conn(this.#consumeConn) : undefined },
      consumers,
      publisher: this.#publisher.stats(),
    };
  }

  /**
   * Stops consuming (running handlers and messages already delivered finish, up to each consumer's stopTimeoutMs), waits for
   * unconfirmed publishes (up to `closeTimeout`), then closes both connections. Idempotent.
   */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.#log.info('closing');
    await Promise.all([...this.#consumers].map((c) => c.stop()));
    await this.#publisher.close(this.#settings.closeTimeout);
    await Promise.all([this.#publishConn.close(), this.#consumeConn?.close()]);
    this.#closed = true;
    this.#log.info('closed');
  }
}

/**
 * Connects to RabbitMQ, asserts the topology, and returns a client ready to publish. Rejects
 * with ConfigError (bad options), AccessRefusedError (wrong credentials or vhost), TlsError (a
 * certificate, name or TLS setting refused, at once), TopologyMismatchError, or ConnectionError
 * (no broker reachable within `initialConnectTimeout`).
 */
export async function connect(options: ConnectOptions): Promise<Warren> {
  const { topology = emptyTopology, logger = silentLogger(), socketOptions = {}, transport = defaultTransport, messages = [], ...rest } = options;
  const extra = [
    ...(isTopology(topology) ? contractProblems(messages, topology) : ['topology: pass what defineTopology({ exchanges, queues }) returns, not the definition itself']),
    ...securityProblems(rest, socketOptions),
  ];
  let settings: Settings;
  try {
    settings = parseConfig(optionsSchema, { ...rest, urls: rest.urls ?? transport.defaultUrls }, 'connect() options');
  } catch (err) {
    if (err instanceof ConfigError && extra.length > 0) throw new ConfigError('connect() options', [...err.problems, ...extra]);
    throw err;
  }
  if (extra.length > 0) throw new ConfigError('connect() options', extra);
  const warren = new Warren(settings, topology, logger, socketOptions, transport);
  try {
    await warren.start();
  } catch (err) {
    await warren.close();
    throw err;
  }
  return warren;
}

/**
 * The management API's login: `managementCredentials`; else the user in `managementUrl`; else
 * `credentials` (with the first AMQP URL's user name when they name none); else none.
 */
function managementLogin(s: Settings): CredentialSource | undefined {
  if (s.managementCredentials !== undefined) return s.managementCredentials;
  const inUrl = userinfoOf(s.managementUrl ?? '');
  if (inUrl.username !== '' || inUrl.password !== '' || s.credentials?.mechanism !== 'PLAIN') return undefined;
  const login: CredentialSource = { ...s.credentials };
  delete (login as { mechanism?: unknown }).mechanism;
  const user = login.username !== undefined || login.usernameFile !== undefined ? {} : { username: userinfoOf(s.urls[0] ?? '').username };
  return { ...login, ...user };
}

/** Contracts whose exchange the topology does not declare: their first publish would fail with PUBLISH_FAILED (404). */
function contractProblems(messages: readonly MessageContract[], topology: Topology): string[] {
  const list: unknown = messages;
  if (!Array.isArray(list)) return ['messages: pass an array of contracts from defineMessage()'];
  return messages.flatMap((m: MessageContract, i) => {
    if (typeof m !== 'object' || m === null || typeof m.exchange !== 'string') return [`messages.${i}: not a contract from defineMessage()`];
    if (knowsExchange(topology, m.exchange)) return [];
    return [
      `messages.${i}: contract '${m.name}' publishes to exchange '${m.exchange}', which the topology does not declare; ` +
        'declare it in defineTopology({ exchanges }), or leave this contract out of messages if another service declares it',
    ];
  });
}

/** A JavaScript caller may hand over the plain definition (or anything); only defineTopology()'s result will do. */
function isTopology(t: unknown): t is Topology {
  if (typeof t !== 'object' || t === null) return false;
  const o = t as Partial<Record<keyof Topology, unknown>>;
  return Array.isArray(o.exchanges) && Array.isArray(o.queues) && typeof o.queue === 'function' && typeof o.exchange === 'function';
}
