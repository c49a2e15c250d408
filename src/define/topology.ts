import { z } from 'zod';
import { collect, durationMs } from './config.js';
import { ConfigError } from '../support/errors.js';

const name = z.string().min(1, 'must not be empty').max(255, 'must be at most 255 characters');
const args = z.record(z.string(), z.unknown());

const exchangeSchema = z.strictObject({
  type: z.enum(['direct', 'topic', 'fanout', 'headers']),
  durable: z.boolean().default(true),
  autoDelete: z.boolean().default(false),
  internal: z.boolean().default(false),
  alternateExchange: name.optional(),
  arguments: args.optional(),
});

const bindingSchema = z.strictObject({
  exchange: name,
  routingKey: z.string().default(''),
  arguments: args.optional(),
});

const queueSchema = z.strictObject({
  type: z.enum(['classic', 'quorum', 'stream']).default('classic'),
  durable: z.boolean().default(true),
  exclusive: z.boolean().default(false),
  autoDelete: z.boolean().default(false),
  bindings: z.array(bindingSchema).default([]),
  deadLetter: z.union([z.boolean(), z.strictObject({ exchange: z.string(), routingKey: z.string().optional() })]).default(false),
  maxLength: z.number().int().nonnegative().optional(),
  maxLengthBytes: z.number().int().nonnegative().optional(),
  overflow: z.enum(['drop-head', 'reject-publish', 'reject-publish-dlx']).optional(),
  messageTtl: durationMs.optional(),
  expires: durationMs.optional(),
  singleActiveConsumer: z.boolean().optional(),
  maxPriority: z.number().int().min(1).max(255).optional(),
  deliveryLimit: z.number().int().nonnegative().optional(),
  deadLetterStrategy: z.enum(['at-most-once', 'at-least-once']).optional(),
  arguments: args.optional(),
});

/** The outer shape only: each exchange and queue is then parsed on its own, so one typo does not hide the other problems. */
const outerSchema = z.strictObject({
  exchanges: z.record(name, z.unknown()).default({}),
  queues: z.record(name, z.unknown()).default({}),
});

export type ExchangeType = 'direct' | 'topic' | 'fanout' | 'headers';
/** An exchange as written in `defineTopology()`. Defaults: durable, not auto-delete, not internal. */
export type ExchangeDefinition = z.input<typeof exchangeSchema>;
/** A queue binding: messages published to `exchange` with a matching `routingKey` reach the queue. */
export type BindingDefinition = z.input<typeof bindingSchema>;
/**
 * A queue as written in `defineTopology()`. Defaults: classic, durable, no dead-lettering.
 * `deadLetter: true` declares `<queue>.dlq` beside it and routes rejected messages there.
 */
export type QueueDefinition = z.input<typeof queueSchema>;
export interface TopologyDefinition {
  exchanges?: Record<string, ExchangeDefinition>;
  queues?: Record<string, QueueDefinition>;
}

export interface DeclaredExchange {
  readonly name: string;
  readonly type: ExchangeType;
  readonly durable: boolean;
  readonly autoDelete: boolean;
  readonly internal: boolean;
  readonly arguments: Readonly<Record<string, unknown>>;
}

export interface DeclaredBinding {
  readonly exchange: string;
  readonly routingKey: string;
  readonly arguments: Readonly<Record<string, unknown>>;
}

export interface DeclaredQueue {
  readonly name: string;
  readonly type: 'classic' | 'quorum' | 'stream';
  readonly durable: boolean;
  readonly exclusive: boolean;
  readonly autoDelete: boolean;
  /** The `x-` arguments sent with queue.declare. */
  readonly arguments: Readonly<Record<string, unknown>>;
  readonly bindings: readonly DeclaredBinding[];
  /** Where rejected messages go, if anywhere. */
  readonly deadLetter: { readonly exchange: string; readonly routingKey: string | undefined } | undefined;
  /** The queue this one is the dead-letter queue of (set on generated `.dlq` queues). */
  readonly deadLetterOf: string | undefined;
}

/** A validated topology, ready to be asserted on each (re)connect. Build it with `defineTopology()`. */
export interface Topology {
  readonly exchanges: readonly DeclaredExchange[];
  /** Queues in declaration order; a generated dead-letter queue comes just before its queue. */
  readonly queues: readonly DeclaredQueue[];
  queue(name: string): DeclaredQueue | undefined;
  exchange(name: string): DeclaredExchange | undefined;
}

/**
 * Queue arguments RabbitMQ 4.x deprecates and 4.3 refuses (the queue declaration fails), with
 * what to do instead; undefined for any other argument.
 */
function deprecatedArgument(arg: string, value: unknown): string | undefined {
  switch (arg) {
    case 'x-queue-master-locator':
      return "deprecated (RabbitMQ 4.3 refuses it); use 'x-queue-leader-locator' ('client-local' or 'balanced')";
    case 'x-queue-mode':
      return 'deprecated and ignored since RabbitMQ 3.12 (classic queues keep messages on disk as lazy ones did; 4.3 refuses it); remove it';
    case 'x-queue-version':
      return value === 1 || value === '1'
        ? 'version 1 classic queues are gone in RabbitMQ 4.x (4.3 refuses x-queue-version 1); remove it (version 2 is the default)'
        : undefined;
    default:
      return arg.startsWith('x-ha-') ? 'classic queue mirroring was removed in RabbitMQ 4.0; use a quorum queue (type: quorum) for a replicated queue' : undefined;
  }
}

/** Exchanges every broker has; they may be bound to without being declared. */
const BUILT_IN_EXCHANGES = new Set(['amq.direct', 'amq.topic', 'amq.fanout', 'amq.headers', 'amq.match', 'amq.rabbitmq.trace']);

export const DLQ_SUFFIX = '.dlq';

/**
 * The delivery limit of a quorum dead-letter queue: as good as none. Reading a dead letter
 * without removing it (peek, replay's skipped ones, the management UI's Get messages) returns it,
 * and RabbitMQ before 4.3 counts every return as a delivery; under 4.x's default limit of 20 the
 * 20th look would drop it (a dead-letter queue has no dead-letter target of its own).
 */
export const DLQ_DELIVERY_LIMIT = 2_147_483_647;

/**
 * Declares exchanges, queues and bindings as plain data. The result is asserted on the broker on
 * every (re)connect. Throws a ConfigError listing every problem found.
 *
 * @example
 * defineTopology({
 *   exchanges: { orders: { type: 'topic' } },
 *   queues: { 'billing.orders': { type: 'quorum', deadLetter: true,
 *                                 bindings: [{ exchange: 'orders', routingKey: 'order.*' }] } },
 * });
 */
export function defineTopology(definition: TopologyDefinition): Topology {
  const problems: string[] = [];
  const outer = collect(outerSchema, definition, '', problems) ?? { exchanges: {}, queues: {} };
  const parsedExchanges: [string, z.output<typeof exchangeSchema>][] = [];
  for (const [exName, raw] of Object.entries(outer.exchanges)) {
    const ex = collect(exchangeSchema, raw, `exchanges.${exName}`, problems);
    if (ex !== undefined) parsedExchanges.push([exName, ex]);
  }
  const parsedQueues: [string, z.output<typeof queueSchema>][] = [];
  for (const [qName, raw] of Object.entries(outer.queues)) {
    const q = collect(queueSchema, raw, `queues.${qName}`, problems);
    if (q !== undefined) parsedQueues.push([qName, q]);
  }

  const exchanges: DeclaredExchange[] = [];
  for (const [exName, ex] of parsedExchanges) {
    if (exName.startsWith('amq.')) problems.push(`exchanges.${exName}: names starting with 'amq.' are reserved by RabbitMQ`);
    const exArgs: Record<string, unknown> = { ...ex.arguments };
    if (ex.alternateExchange !== undefined) exArgs['alternate-exchange'] = ex.alternateExchange;
    exchanges.push({ name: exName, type: ex.type, durable: ex.durable, autoDelete: ex.autoDelete, internal: ex.internal, arguments: exArgs });
  }
  // Names count as declared even where their options had problems, so a binding is not blamed too.
  const exchangeNames = new Set(Object.keys(outer.exchanges));
  const knownExchange = (n: string): boolean => exchangeNames.has(n) || BUILT_IN_EXCHANGES.has(n);

  const queues: DeclaredQueue[] = [];
  const declaredQueueNames = new Set(Object.keys(outer.queues));
  for (const [qName, q] of parsedQueues) {
    const at = `queues.${qName}`;
    if (qName.startsWith('amq.')) problems.push(`${at}: names starting with 'amq.' are reserved by RabbitMQ`);
    if (q.type !== 'classic') {
      if (!q.durable) problems.push(`${at}: ${q.type} queues are always durable; remove durable: false`);
      if (q.exclusive) problems.push(`${at}: ${q.type} queues cannot be exclusive`);
      if (q.autoDelete) problems.push(`${at}: ${q.type} queues cannot be auto-delete`);
      if (q.maxPriority !== undefined) problems.push(`${at}: maxPriority needs a classic queue`);
      if (q.overflow === 'reject-publish-dlx') problems.push(`${at}: overflow 'reject-publish-dlx' needs a classic queue`);
    }
    if (q.type !== 'quorum') {
      if (q.deliveryLimit !== undefined) problems.push(`${at}: deliveryLimit needs a quorum queue`);
      if (q.deadLetterStrategy !== undefined) problems.push(`${at}: deadLetterStrategy needs a quorum queue`);
    }
    if (q.type === 'stream' && q.deadLetter !== false) problems.push(`${at}: stream queues do not dead-letter; remove deadLetter`);
    if (q.type === 'classic' && !q.durable && !q.exclusive) {
      problems.push(
        `${at}: a transient (durable: false) queue that is not exclusive is refused by RabbitMQ 4.3 (deprecated feature transient_nonexcl_queues); ` +
          'make it durable, or exclusive: true for a queue that lives and dies with its connection',
      );
    }
    for (const [arg, value] of Object.entries(q.arguments ?? {})) {
      const why = deprecatedArgument(arg, value);
      if (why !== undefined) problems.push(`${at}.arguments.${arg}: ${why}`);
    }
    if (q.deadLetterStrategy === 'at-least-once' && q.overflow !== 'reject-publish') {
      problems.push(`${at}: deadLetterStrategy 'at-least-once' needs overflow: 'reject-publish' (RabbitMQ requires it)`);
    }
    q.bindings.forEach((b, i) => {
      if (b.exchange === '') problems.push(`${at}.bindings.${i}: the default exchange '' cannot be bound; every queue is reachable through it by name`);
      else if (!knownExchange(b.exchange)) problems.push(`${at}.bindings.${i}: exchange '${b.exchange}' is not declared in this topology`);
    });

    let deadLetter: DeclaredQueue['deadLetter'];
    let dlq: DeclaredQueue | undefined;
    if (q.deadLetter === true) {
      const dlqName = qName + DLQ_SUFFIX;
      if (declaredQueueNames.has(dlqName)) problems.push(`${at}: deadLetter: true would declare '${dlqName}', which is already declared`);
      // The default exchange routes by queue name, so no extra exchange is needed.
      deadLetter = { exchange: '', routingKey: dlqName };
      // The dead-letter queue is as replicated as its queue, and always durable: it is shared, not
      // exclusive, and RabbitMQ 4.3 refuses a transient non-exclusive queue (the dead letters of a
      // transient exclusive queue outlive its connection there).
      dlq = {
        name: dlqName,
        type: q.type === 'quorum' ? 'quorum' : 'classic',
        durable: true,
        exclusive: false,
        autoDelete: false,
        arguments: q.type === 'quorum' ? { 'x-queue-type': 'quorum', 'x-delivery-limit': DLQ_DELIVERY_LIMIT } : { 'x-queue-type': 'classic' },
        bindings: [],
        deadLetter: undefined,
        deadLetterOf: qName,
      };
    } else if (typeof q.deadLetter === 'object') {
      if (q.deadLetter.exchange !== '' && !knownExchange(q.deadLetter.exchange)) {
        problems.push(`${at}.deadLetter.exchange: exchange '${q.deadLetter.exchange}' is not declared in this topology`);
      }
      deadLetter = { exchange: q.deadLetter.exchange, routingKey: q.deadLetter.routingKey };
    }

    // Always sent: a broker's default queue type may be other than classic (4.x's default_queue_type).
    const xArgs: Record<string, unknown> = { 'x-queue-type': q.type };
    if (q.maxLength !== undefined) xArgs['x-max-length'] = q.maxLength;
    if (q.maxLengthBytes !== undefined) xArgs['x-max-length-bytes'] = q.maxLengthBytes;
    if (q.overflow !== undefined) xArgs['x-overflow'] = q.overflow;
    if (q.messageTtl !== undefined) xArgs['x-message-ttl'] = q.messageTtl;
    if (q.expires !== undefined) xArgs['x-expires'] = q.expires;
    if (q.singleActiveConsumer !== undefined) xArgs['x-single-active-consumer'] = q.singleActiveConsumer;
    if (q.maxPriority !== undefined) xArgs['x-max-priority'] = q.maxPriority;
    if (q.deliveryLimit !== undefined) xArgs['x-delivery-limit'] = q.deliveryLimit;
    if (q.deadLetterStrategy !== undefined) xArgs['x-dead-letter-strategy'] = q.deadLetterStrategy;
    if (deadLetter !== undefined) {
      xArgs['x-dead-letter-exchange'] = deadLetter.exchange;
      if (deadLetter.routingKey !== undefined) xArgs['x-dead-letter-routing-key'] = deadLetter.routingKey;
    }
    for (const [k, v] of Object.entries(q.arguments ?? {})) {
      if (k in xArgs) problems.push(`${at}.arguments.${k}: also set by a named option; set it in one place`);
      else xArgs[k] = v;
    }

    if (dlq !== undefined) queues.push(dlq);
    queues.push({
      name: qName,
      type: q.type,
      durable: q.durable,
      exclusive: q.exclusive,
      autoDelete: q.autoDelete,
      arguments: xArgs,
      bindings: q.bindings.map((b) => ({ exchange: b.exchange, routingKey: b.routingKey, arguments: b.arguments ?? {} })),
      deadLetter,
      deadLetterOf: undefined,
    });
  }

  if (problems.length > 0) throw new ConfigError('topology', problems);

  const queueByName = new Map(queues.map((q) => [q.name, q]));
  const exchangeByName = new Map(exchanges.map((e) => [e.name, e]));
  return {
    exchanges,
    queues,
    queue: (n) => queueByName.get(n),
    exchange: (n) => exchangeByName.get(n),
  };
}

/** Whether a message published to `exchange` can be routed by this topology's declarations: '' (the default exchange), a built-in `amq.*` one, or one it declares. */
export function knowsExchange(topology: Topology, exchange: string): boolean {
  return exchange === '' || BUILT_IN_EXCHANGES.has(exchange) || topology.exchange(exchange) !== undefined;
}

/** An empty topology: warren declares nothing. */
export const emptyTopology: Topology = defineTopology({});
