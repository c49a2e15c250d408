/**
 * An app's messaging as an AsyncAPI 3.0 document: what `warren docs` prints. Built from the
 * declarations the app makes when it starts (planApp), so no dead-letter or retry wait queue it
 * declares is left out; a queue or exchange it only uses is marked as declared elsewhere.
 */
import { formatDelay } from '../dead-letter/wait-queues.js';
import { effectiveRetry, type Consumer } from '../define/consumer.js';
import type { MessageContract } from '../define/message.js';
import { retryDelay, retryPolicySchema, type RetryPolicy } from '../define/retry-policy.js';
import type { DeclaredQueue, ExchangeType } from '../define/topology.js';
import { deadLetterHeaders, deliveryHeaders } from './asyncapi-headers.js';
import { planApp, type App, type PlannedEntity } from './app.js';
import { serversOf, type AsyncApiServer } from './asyncapi-servers.js';
import { payloadSchema, type JsonSchema } from './payload-schema.js';

export interface AsyncApiOptions {
  /** The brokers to document, as AMQP URLs (passwords and user names are left out). Default: the app's `connect.urls`, else a placeholder `localhost:5672`. */
  servers?: readonly string[];
  /** `info.title`. Default: the app's name. */
  title?: string;
  /** `info.version`, the version of the app's messaging API. Default `'1.0.0'`. */
  version?: string;
}

type Ref = { $ref: string };

/** Where AsyncAPI's AMQP bindings (0.3.0) go: their fields, and warren's `x-warren-*` ones where they have none. */
interface AmqpBindings {
  amqp: Record<string, unknown>;
}

export interface AsyncApiChannel {
  /** The exchange's or queue's name. */
  address: string;
  title: string;
  description: string;
  messages?: Record<string, Ref>;
  bindings: AmqpBindings;
}

export interface AsyncApiOperation {
  action: 'send' | 'receive';
  channel: Ref;
  messages: Ref[];
  description: string;
  bindings: AmqpBindings;
  /** A receive operation's consumer settings. */
  'x-warren-consumer'?: Record<string, unknown>;
}

export interface AsyncApiMessage {
  name: string;
  title: string;
  contentType: string;
  description: string;
  headers: JsonSchema;
  payload: JsonSchema;
  bindings: AmqpBindings;
}

export type { AsyncApiServer };

/** An AsyncAPI 3.0 document, as plain data (ready for JSON.stringify or a YAML writer). */
export interface AsyncApiDocument {
  asyncapi: '3.0.0';
  info: { title: string; version: string; description: string };
  defaultContentType: 'application/json';
  servers: Record<string, AsyncApiServer>;
  channels: Record<string, AsyncApiChannel>;
  operations: Record<string, AsyncApiOperation>;
  components: { schemas: Record<string, JsonSchema>; messages: Record<string, AsyncApiMessage> };
}

const BINDING_VERSION = '0.3.0';

/** Ids made of the characters AsyncAPI allows in component names (and that need no escaping in a `$ref`), each unique. */
class Ids {
  readonly #taken = new Set<string>();

  take(wanted: string): string {
    const base = wanted.replace(/[^\w.-]/g, '_') || '_';
    let id = base;
    for (let n = 2; this.#taken.has(id); n += 1) id = `${base}-${n}`;
    this.#taken.add(id);
    return id;
  }
}

const ref = (...path: string[]): Ref => ({ $ref: `#/${path.join('/')}` });
const quoted = (names: readonly string[]): string => names.map((n) => `'${n}'`).join(', ');

/** The type of an exchange the app uses but does not declare: the default one, a built-in `amq.*`, or another app's. */
function builtInType(name: string): ExchangeType | 'default' | undefined {
  if (name === '') return 'default';
  const types: Record<string, ExchangeType> = { 'amq.direct': 'direct', 'amq.topic': 'topic', 'amq.fanout': 'fanout', 'amq.headers': 'headers', 'amq.match': 'headers', 'amq.rabbitmq.trace': 'topic' };
  return types[name];
}

const withKey = (what: string, key: string): string => `${what} (${key === '' ? 'no routing key' : `routing key '${key}'`})`;

/** Where a queue's dead letters go, in words. */
function deadLettersTo(queue: DeclaredQueue | undefined, name: string): string {
  const target = queue?.deadLetter;
  if (target === undefined) return 'The topology gives the queue no dead-letter target: a message dead-lettered is rejected to the broker, which discards it (unless a policy gives the queue one).';
  if (target.exchange === '') return `Dead letters go to queue '${target.routingKey ?? name}'.`;
  return `Dead letters go to exchange '${target.exchange}'${target.routingKey !== undefined ? ` with routing key '${target.routingKey}'` : ''}.`;
}

/** What a consumer does with each message, by the outcome rule (consume/outcome.ts). */
function consumerBehaviour(c: Consumer, retry: RetryPolicy | undefined, queue: DeclaredQueue | undefined): string {
  const head = `Consumer '${c.name}' reads ${c.message.name} from queue '${c.queue}': prefetch ${c.prefetch}, ${c.concurrency} at a time, ack mode ${c.ackMode}.`;
  if (c.ackMode === 'none') return `${head} Each message is acked as its handler starts (at most once): a handler that fails loses it.`;
  const settles = c.ackMode === 'manual' ? 'The handler settles each message itself (ctx.ack, nack, retry, deadLetter).' : 'A handler that resolves acks it.';
  let failure: string;
  if (retry?.maxAttempts === 1) failure = 'A handler that throws anything else dead-letters it (retries-exhausted: its policy allows one attempt).';
  else if (retry !== undefined) {
    const retries = retry.maxAttempts - 1;
    const waits = Array.from({ length: Math.min(retries, 5) }, (_, i) => formatDelay(retryDelay(retry, i + 1)));
    failure = `A handler that throws anything else is retried after ${waits.join(', ')}${retries > waits.length ? ', …' : ''} (${retry.maxAttempts} attempts in all) through the retry wait queues, then dead-lettered (retries-exhausted).`;
  } else failure = c.onError === 'requeue' ? 'A handler that throws anything else requeues it.' : 'A handler that throws anything else dead-letters it (handler-failed).';
  return `${head} A body that cannot be decoded or fails the contract is dead-lettered (invalid). ${settles} A handler that throws NonRetryableError dead-letters it (non-retryable). ${failure} ${deadLettersTo(queue, c.queue)}`;
}

/** Builds the channels, operations and components of one app's document. */
class Builder {
  readonly channels: Record<string, AsyncApiChannel> = {};
  readonly operations: Record<string, AsyncApiOperation> = {};
  readonly schemas: Record<string, JsonSchema> = {};
  readonly messages: Record<string, AsyncApiMessage> = {};
  readonly #channelIds = new Ids();
  readonly #messageIds = new Ids();
  readonly #operationIds = new Ids();
  /** `exchange:<name>` / `queue:<name>` → channel id. */
  readonly #channelOf = new Map<string, string>();
  /** Contract name → its message (and payload schema) id; its dead letter's. */
  readonly #messageOf = new Map<string, string>();
  readonly #deadLetterOf = new Map<string, string>();
  /** Every contract the app publishes or consumes, each once. */
  readonly #contracts: MessageContract[];
  readonly #planned: PlannedEntity[];

  readonly #app: App;
  readonly #vhost: string;

  constructor(app: App, vhost: string) {
    this.#app = app;
    this.#vhost = vhost;
    this.#planned = planApp(app);
    const contracts = new Map<string, MessageContract>();
    for (const m of [...app.messages, ...app.consumers.map((c) => c.message)]) if (!contracts.has(m.name)) contracts.set(m.name, m);
    this.#contracts = [...contracts.values()];
  }

  build(): void {
    const app = this.#app;
    const topology = app.topology;
    for (const m of this.#contracts) this.#contractMessage(m);
    // Exchanges: those declared, then those the app only publishes to or binds to.
    const exchanges = [
      ...this.#planned.filter((e) => e.kind === 'exchange').map((e) => e.name),
      ...this.#contracts.map((m) => m.exchange),
      ...topology.queues.flatMap((q) => q.bindings.map((b) => b.exchange)),
    ];
    for (const name of new Set(exchanges)) this.#exchangeChannel(name);
    // Queues: as the app declares them (dead-letter and retry wait queues included), then
    // exclusive ones (declared by the consuming connection), then those consumed but declared elsewhere.
    const queues = [...this.#planned.filter((e) => e.kind === 'queue').map((e) => e.name), ...topology.queues.filter((q) => q.exclusive).map((q) => q.name), ...app.consumers.map((c) => c.queue)];
    for (const name of new Set(queues)) this.#queueChannel(name);
    for (const m of app.messages) this.#send(m);
    const appRetry = app.connect.retry !== undefined ? retryPolicySchema.parse(app.connect.retry) : undefined;
    for (const c of app.consumers) this.#receive(c, effectiveRetry(c, appRetry));
  }

  #contractMessage(m: MessageContract): void {
    const id = this.#messageIds.take(m.name);
    this.#messageOf.set(m.name, id);
    this.schemas[id] = payloadSchema(m.schema, `#/components/schemas/${id}`);
    const to = m.exchange === '' ? `to queue '${m.routingKey}' through the default exchange` : `to exchange '${m.exchange}' with routing key '${m.routingKey}'`;
    this.messages[id] = {
      name: m.name,
      title: m.name,
      contentType: m.contentType,
      description:
        `${m.name}, published as JSON ${to}. The payload is what a sender must send: the contract's zod schema checks it before it is sent and again on receipt. ` +
        `warren's publish() sets the AMQP properties type (${m.name}), message-id (a UUID unless given), app-id (the sending app's name), timestamp, content-type and delivery mode (${m.persistent ? 'persistent' : 'transient'}).`,
      headers: deliveryHeaders(),
      payload: ref('components', 'schemas', id),
      bindings: { amqp: { messageType: m.name, bindingVersion: BINDING_VERSION } },
    };
  }

  /** The message of a dead letter of contract `m`, made the first time a dead-letter queue carries it. */
  #deadLetterMessage(m: MessageContract): string {
    const known = this.#deadLetterOf.get(m.name);
    if (known !== undefined) return known;
    const id = this.#messageIds.take(`${m.name}.dead-letter`);
    this.#deadLetterOf.set(m.name, id);
    this.messages[id] = {
      name: `${m.name}.dead-letter`,
      title: `${m.name} (dead letter)`,
      contentType: m.contentType,
      description: `A dead letter of ${m.name}, copied here by warren (its x-warren-* headers say why, and where from) or dead-lettered by the broker (its x-death header). The body is as the consumer received it.`,
      headers: deadLetterHeaders(),
      payload: {
        description: `The ${m.name} payload; under reason 'invalid', whatever failed to decode or to match it.`,
        anyOf: [ref('components', 'schemas', this.#messageOf.get(m.name) as string), { description: "reason 'invalid': any body" }],
      },
      bindings: { amqp: { messageType: m.name, bindingVersion: BINDING_VERSION } },
    };
    return id;
  }

  #addChannel(key: string, wantedId: string, channel: AsyncApiChannel, messageIds: readonly string[]): void {
    const id = this.#channelIds.take(wantedId);
    if (messageIds.length > 0) channel.messages = Object.fromEntries(messageIds.map((m) => [m, ref('components', 'messages', m)]));
    this.channels[id] = channel;
    this.#channelOf.set(key, id);
  }

  /** The contracts the app's consumers read from `queue`, each once. */
  #consumedOn(queue: string): MessageContract[] {
    return [...new Map(this.#app.consumers.filter((c) => c.queue === queue).map((c) => [c.message.name, c.message])).values()];
  }

  #idsOf(contracts: readonly MessageContract[]): string[] {
    return contracts.map((m) => this.#messageOf.get(m.name) as string);
  }

  #exchangeChannel(name: string): void {
    const declared = this.#app.topology.exchange(name);
    const type = declared?.type ?? builtInType(name);
    const exchange: Record<string, unknown> = { name, ...(type !== undefined ? { type } : {}) };
    if (declared !== undefined) Object.assign(exchange, { durable: declared.durable, autoDelete: declared.autoDelete });
    exchange['vhost'] = this.#vhost;
    const amqp: Record<string, unknown> = { is: 'routingKey', exchange };
    if (declared?.internal === true) amqp['x-warren-internal'] = true;
    if (declared !== undefined && Object.keys(declared.arguments).length > 0) amqp['x-warren-arguments'] = { ...declared.arguments };
    amqp['bindingVersion'] = BINDING_VERSION;

    const what =
      name === ''
        ? "RabbitMQ's default exchange: it routes a message to the queue named by its routing key."
        : declared !== undefined
          ? `Exchange '${name}' (${[declared.type, declared.durable ? 'durable' : 'transient', declared.autoDelete ? 'auto-delete' : '', declared.internal ? 'internal' : ''].filter((s) => s !== '').join(', ')}), declared by the app.`
          : type !== undefined
            ? `RabbitMQ's built-in ${type} exchange '${name}'.`
            : `Exchange '${name}', not declared by this app: it must exist on the broker.`;
    const sent = this.#contracts.filter((m) => m.exchange === name);
    const bound = this.#app.topology.queues.flatMap((q) => q.bindings.filter((b) => b.exchange === name).map((b) => withKey(`'${q.name}'`, b.routingKey)));
    const description = [what, sent.length > 0 ? `Messages published here: ${sent.map((m) => withKey(m.name, m.routingKey)).join(', ')}.` : '', bound.length > 0 ? `Bound queues: ${bound.join(', ')}.` : ''];
    const channel = { address: name, title: name === '' ? 'Default exchange' : `Exchange ${name}`, description: description.filter((s) => s !== '').join(' '), bindings: { amqp } };
    this.#addChannel(`exchange:${name}`, name === '' ? 'amq.default' : name, channel, this.#idsOf(sent));
  }

  /** A queue's AMQP binding: its flags, and (where warren declares it) its type and arguments, with `extra` fields. */
  #queueBindings(name: string, flags: QueueFlags | undefined, args: Readonly<Record<string, unknown>> | undefined, extra: Record<string, unknown> = {}): AmqpBindings {
    const amqp: Record<string, unknown> = { is: 'queue', queue: { name, ...flags, vhost: this.#vhost } };
    if (args !== undefined) {
      amqp['x-warren-queue-type'] = typeof args['x-queue-type'] === 'string' ? args['x-queue-type'] : 'classic';
      amqp['x-warren-arguments'] = { ...args };
    }
    return { amqp: { ...amqp, ...extra, bindingVersion: BINDING_VERSION } };
  }

  #queueChannel(name: string): void {
    const q = this.#app.topology.queue(name);
    const key = `queue:${name}`;
    if (q?.deadLetterOf !== undefined) {
      const origin = q.deadLetterOf;
      const description =
        `Dead letters of '${origin}' (${q.type}), declared by warren beside it (deadLetter: true). warren's consumers copy here each message they give up on, with x-warren-* headers saying why (x-warren-reason) and where from; ` +
        `messages the broker dead-letters from '${origin}' (rejected, over a delivery limit) carry its x-death header instead. Nothing consumes it: \`warren dlq peek ${origin}\` shows them, \`warren dlq replay ${origin}\` sends them back.`;
      const bindings = this.#queueBindings(name, flagsOf(q), q.arguments, { 'x-warren-dead-letters-of': origin });
      this.#addChannel(key, name, { address: name, title: `Dead-letter queue ${name}`, description, bindings }, this.#consumedOn(origin).map((m) => this.#deadLetterMessage(m)));
      return;
    }
    if (q !== undefined) {
      const kind = [q.type, q.durable ? 'durable' : 'transient', q.exclusive ? 'exclusive (declared by the consuming connection, gone with it)' : '', q.autoDelete ? 'auto-delete' : ''];
      const bound = q.bindings.map((b) => withKey(`'${b.exchange}'`, b.routingKey));
      const readers = this.#app.consumers.filter((c) => c.queue === name).map((c) => c.name);
      const description = [
        `Queue '${name}' (${kind.filter((s) => s !== '').join(', ')}), declared by the app.`,
        bound.length > 0 ? `Bound to exchange ${bound.join(', ')}.` : 'Bound to no exchange: messages reach it through the default exchange, by its name.',
        readers.length > 0 ? `Consumed by ${quoted(readers)}.` : 'No consumer of this app reads it.',
        q.deadLetter !== undefined ? deadLettersTo(q, name) : '',
      ];
      const routes = q.bindings.map((b) => ({ exchange: b.exchange, routingKey: b.routingKey, ...(Object.keys(b.arguments).length > 0 ? { arguments: { ...b.arguments } } : {}) }));
      const bindings = this.#queueBindings(name, flagsOf(q), q.arguments, routes.length > 0 ? { 'x-warren-bindings': routes } : {});
      this.#addChannel(key, name, { address: name, title: `Queue ${name}`, description: description.filter((s) => s !== '').join(' '), bindings }, this.#idsOf(this.#consumedOn(name)));
      return;
    }
    const declared = this.#planned.find((e) => e.kind === 'queue' && e.name === name)?.declared;
    if (declared !== undefined) {
      // A retry wait queue: what waits here expires back to its queue through the default exchange.
      const args = declared.arguments ?? {};
      const origin = String(args['x-dead-letter-routing-key']);
      const delayMs = Number(args['x-message-ttl']);
      const delay = formatDelay(delayMs);
      const description =
        `Retry wait queue of '${origin}' (${delay}), declared by warren for its consumers' retry policy: a message whose handler failed waits here ${delay} (x-message-ttl), ` +
        `then the broker dead-letters it back to '${origin}' through the default exchange, with x-warren-attempt counting its attempts. Nothing consumes it.`;
      const flags = { durable: declared.durable ?? true, exclusive: declared.exclusive ?? false, autoDelete: declared.auto_delete ?? false };
      const bindings = this.#queueBindings(name, flags, args, { 'x-warren-retry-of': origin, 'x-warren-delay-ms': delayMs });
      this.#addChannel(key, name, { address: name, title: `Retry wait queue ${name}`, description, bindings }, this.#idsOf(this.#consumedOn(origin)));
      return;
    }
    const readers = quoted(this.#app.consumers.filter((c) => c.queue === name).map((c) => c.name));
    const description = `Queue '${name}', not declared by this app: it must exist on the broker. Consumed by ${readers}.`;
    this.#addChannel(key, name, { address: name, title: `Queue ${name}`, description, bindings: this.#queueBindings(name, undefined, undefined) }, this.#idsOf(this.#consumedOn(name)));
  }

  #send(m: MessageContract): void {
    const channel = this.#channelOf.get(`exchange:${m.exchange}`) as string;
    const to = m.exchange === '' ? `the default exchange (to queue '${m.routingKey}')` : `exchange '${m.exchange}'`;
    const mandatory = m.mandatory ? 'mandatory (a message no queue is bound for comes back: UnroutableError)' : 'not mandatory (a message no queue is bound for is dropped)';
    this.operations[this.#operationIds.take(`send.${m.name}`)] = {
      action: 'send',
      channel: ref('channels', channel),
      messages: [ref('channels', channel, 'messages', this.#messageOf.get(m.name) as string)],
      description: `The app publishes ${m.name} to ${to} with routing key '${m.routingKey}', ${m.persistent ? 'persistent' : 'transient'}, ${mandatory}; publish() resolves once the broker has confirmed it.`,
      bindings: { amqp: { cc: [m.routingKey], deliveryMode: m.persistent ? 2 : 1, mandatory: m.mandatory, timestamp: true, bindingVersion: BINDING_VERSION } },
    };
  }

  #receive(c: Consumer, retry: RetryPolicy | undefined): void {
    const channel = this.#channelOf.get(`queue:${c.queue}`) as string;
    const settings: Record<string, unknown> = { name: c.name, prefetch: c.prefetch, concurrency: c.concurrency, ackMode: c.ackMode, onError: c.onError };
    if (retry !== undefined) settings['retry'] = { ...retry }; // durations in ms
    this.operations[this.#operationIds.take(`receive.${c.name}`)] = {
      action: 'receive',
      channel: ref('channels', channel),
      messages: [ref('channels', channel, 'messages', this.#messageOf.get(c.message.name) as string)],
      description: consumerBehaviour(c, retry, this.#app.topology.queue(c.queue)),
      bindings: { amqp: { ack: c.ackMode !== 'none', bindingVersion: BINDING_VERSION } },
      'x-warren-consumer': settings,
    };
  }
}

interface QueueFlags {
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
}

const flagsOf = (q: DeclaredQueue): QueueFlags => ({ durable: q.durable, exclusive: q.exclusive, autoDelete: q.autoDelete });

/**
 * The app's messaging as an AsyncAPI 3.0 document:
 * - `servers`: the app's `connect.urls` (or `options.servers`), without credentials; else a
 *   placeholder `localhost:5672`.
 * - `channels`: every exchange the app declares, publishes to or binds to, and every queue it
 *   declares (dead-letter and retry wait queues included) or consumes, with AMQP channel bindings
 *   0.3.0; queue types, arguments and bindings as `x-warren-*` fields.
 * - `operations`: `send` for each contract in `app.messages`, on its exchange with its routing
 *   key; `receive` for each consumer, on its queue.
 * - `components`: each contract's message, its payload as the JSON Schema of what a sender must
 *   send (zod's input side), and warren's `x-warren-*` headers.
 *
 * Needs no broker. Throws a ConfigError for a server URL that is not an AMQP one; never for a
 * schema (what JSON Schema cannot express is described as such).
 */
export function asyncApiDocument(app: App, options: AsyncApiOptions = {}): AsyncApiDocument {
  const { servers, vhost } = serversOf(app, options.servers);
  const b = new Builder(app, vhost);
  b.build();
  return {
    asyncapi: '3.0.0',
    info: {
      title: options.title ?? app.name,
      version: options.version ?? '1.0.0',
      description:
        `The RabbitMQ messaging of the warren app '${app.name}': the exchanges it publishes to, the queues its consumers read, and the dead-letter and retry wait queues warren declares for them. ` +
        "Generated by `warren docs` from the app's topology and message contracts; each payload is the JSON Schema of what a sender must send.",
    },
    defaultContentType: 'application/json',
    servers,
    channels: b.channels,
    operations: b.operations,
    components: { schemas: b.schemas, messages: b.messages },
  };
}
