import { waitQueueName, formatDelay } from '../dead-letter/wait-queues.js';
import { effectiveRetry, type Consumer } from '../define/consumer.js';
import type { MessageContract } from '../define/message.js';
import { retryPolicySchema, retryTiers } from '../define/retry-policy.js';
import { emptyTopology, type Topology } from '../define/topology.js';
import { ConfigError } from '../support/errors.js';
import { exchangeShape, queueShape } from '../topology/diff.js';
import { bindingName, findDrift, type ExpectedTopology, type TopologyDrift } from '../topology/drift.js';
import type { ManagedEntity } from '../topology/management.js';
import type { ManagementCredentials } from '../support/credentials.js';
import { ManagementClient } from '../topology/management.js';
import { planTopology, waitQueueArguments } from '../topology/plan.js';
import type { ConnectOptions } from './options.js';

/** connect() options an app carries; `urls` may be left to the command line (`--url`, `AMQP_URL`). */
export type AppConnectOptions = Partial<Omit<ConnectOptions, 'topology' | 'messages' | 'name'>>;

export interface AppDefinition {
  /** Names the app's connections in the management UI (`<name>:publish`, `<name>:consume`) and is its app-id. */
  name: string;
  /** What the app declares. */
  topology?: Topology;
  /** The contracts the app publishes (`warren publish <name>` finds them here and among its consumers' contracts). */
  messages?: readonly MessageContract[];
  /** The consumers `warren run` starts. */
  consumers?: readonly Consumer[];
  /** connect() options (heartbeat, publisher, retry, logger…). The command line's `--url` / `AMQP_URL` come before `urls`. */
  connect?: AppConnectOptions;
  /**
   * Name patterns (`*` matches anything) of the queues and exchanges this app owns: `warren
   * topology diff` reports those on the broker that it does not declare as extra. Default: the
   * names under each declared queue (`<queue>.*`: old retry tiers, a `.dlq` no longer declared) and
   * under the app's name (`<name>.*`).
   */
  owns?: readonly string[];
}

const APP = Symbol.for('warren.app');

/** A service's messaging in one object: what `warren run`, `warren topology` and `warren publish` load. Build it with defineApp(). */
export interface App {
  readonly [APP]: true;
  readonly name: string;
  readonly topology: Topology;
  readonly messages: readonly MessageContract[];
  readonly consumers: readonly Consumer[];
  readonly connect: AppConnectOptions;
  readonly owns: readonly string[];
  /** The contract named `name`, from `messages` or a consumer's. */
  message(name: string): MessageContract | undefined;
}

/**
 * Defines an app: its topology, the messages it publishes, the consumers it runs. Export it as
 * the default export of a module, and the `warren` command can run it. Throws a ConfigError
 * listing every problem.
 *
 * @example
 * export default defineApp({ name: 'billing', topology, messages: [OrderPlaced], consumers: [billing] });
 */
export function defineApp(definition: AppDefinition): App {
  const problems: string[] = [];
  const d = definition as Partial<Record<keyof AppDefinition, unknown>>;
  if (typeof d.name !== 'string' || d.name.trim() === '') problems.push("name: give the app a name, e.g. 'billing' (it names its connections)");
  const topology = (d.topology ?? emptyTopology) as Topology;
  if (typeof topology !== 'object' || topology === null || !Array.isArray(topology.queues)) problems.push('topology: pass what defineTopology() returns');
  const messages = (d.messages ?? []) as MessageContract[];
  const consumers = (d.consumers ?? []) as Consumer[];
  if (!Array.isArray(messages)) problems.push('messages: pass an array of contracts from defineMessage()');
  if (!Array.isArray(consumers)) problems.push('consumers: pass an array of consumers from defineConsumer()');
  const owns = (d.owns ?? undefined) as string[] | undefined;
  if (owns !== undefined && (!Array.isArray(owns) || owns.some((o) => typeof o !== 'string' || o === ''))) problems.push("owns: pass name patterns such as 'billing.*'");
  const byName = new Map<string, MessageContract>();
  const isConsumer = (c: unknown): c is Consumer => typeof c === 'object' && c !== null && typeof (c as Partial<Consumer>).handle === 'function';
  for (const [i, m] of (Array.isArray(messages) ? messages : []).entries()) {
    if (typeof m !== 'object' || m === null || typeof m.name !== 'string') problems.push(`messages.${i}: not a contract from defineMessage()`);
    else if (byName.has(m.name) && byName.get(m.name) !== m) problems.push(`messages.${i}: two contracts are named '${m.name}'; give each a unique name`);
    else byName.set(m.name, m);
  }
  for (const [i, c] of (Array.isArray(consumers) ? consumers : []).entries()) {
    if (!isConsumer(c)) problems.push(`consumers.${i}: not a consumer from defineConsumer()`);
    else if (consumers.findIndex((o) => isConsumer(o) && o.name === c.name) !== i) problems.push(`consumers.${i}: a consumer named '${c.name}' is already in the app; give each a unique name`);
    else if (byName.has(c.message.name) && byName.get(c.message.name) !== c.message) {
      // `warren publish <name>` must find one schema for one name: the consumer's and the producer's.
      problems.push(`consumers.${i}: its contract '${c.message.name}' is not the contract of that name the app already has; use one contract per message name`);
    } else byName.set(c.message.name, c.message);
  }
  if (d.connect !== undefined && (typeof d.connect !== 'object' || d.connect === null)) problems.push('connect: pass connect() options (without topology, messages and name)');
  const retry = (d.connect as AppConnectOptions | undefined)?.retry;
  if (retry !== undefined && !retryPolicySchema.safeParse(retry).success) problems.push('connect.retry: not a valid retry policy (see defineConsumer retry)');
  if (problems.length > 0) throw new ConfigError(`app${typeof d.name === 'string' && d.name.trim() !== '' ? ` '${d.name}'` : ''}`, problems);

  const name = (d.name as string).trim();
  return Object.freeze({
    [APP]: true as const,
    name,
    topology,
    messages: Object.freeze([...messages]),
    consumers: Object.freeze([...consumers]),
    connect: Object.freeze({ ...(d.connect as AppConnectOptions | undefined) }),
    owns: Object.freeze(owns ?? [...topology.queues.filter((q) => !q.exclusive).map((q) => `${q.name}.*`), `${name}.*`]),
    message: (messageName: string) => byName.get(messageName),
  });
}

/** True for what defineApp() returns (from this copy of warren or another: the module loaded by the CLI may import its own). */
export function isApp(value: unknown): value is App {
  return typeof value === 'object' && value !== null && (value as Partial<App>)[APP] === true;
}

/** One declaration an app makes, as `warren topology plan` lists it. */
export interface PlannedEntity {
  kind: 'exchange' | 'queue' | 'binding';
  name: string;
  /** What it is declared with: type and flags for exchanges and queues, the arguments sent. */
  declared: ManagedEntity | undefined;
  /** Why warren declares it, for those it generates: `dead letters of billing.orders`, `retry wait queue of billing.orders (1s)`. */
  note: string | undefined;
}

/**
 * Every declaration the app makes when it starts, in order: the topology's exchanges, queues (with
 * their dead-letter queues) and bindings, then each consumer's retry wait queues. Exclusive queues
 * are left out (they live and die with the consuming connection).
 */
export function planApp(app: App): PlannedEntity[] {
  const out: PlannedEntity[] = [];
  for (const step of planTopology(app.topology, { exclusiveQueues: false })) {
    if (step.kind === 'exchange') out.push({ kind: 'exchange', name: step.exchange.name, declared: exchangeShape(step.exchange), note: undefined });
    else if (step.kind === 'queue') {
      const of = step.queue.deadLetterOf;
      out.push({ kind: 'queue', name: step.queue.name, declared: queueShape(step.queue), note: of !== undefined ? `dead letters of ${of}` : undefined });
    } else out.push({ kind: 'binding', name: bindingName(step.exchange, step.queue.name, step.routingKey), declared: { arguments: { ...step.arguments } }, note: undefined });
  }
  const seen = new Set(out.filter((e) => e.kind === 'queue').map((e) => e.name));
  for (const c of app.consumers) {
    const retry = effectiveRetry(c, app.connect.retry !== undefined ? retryPolicySchema.parse(app.connect.retry) : undefined);
    const type = app.topology.queue(c.queue)?.type ?? 'classic';
    for (const delayMs of retry !== undefined ? retryTiers(retry) : []) {
      const name = waitQueueName(c.queue, delayMs);
      if (seen.has(name)) continue;
      seen.add(name);
      out.push({
        kind: 'queue',
        name,
        declared: { durable: true, auto_delete: false, exclusive: false, arguments: waitQueueArguments(c.queue, type, delayMs) },
        note: `retry wait queue of ${c.queue} (${formatDelay(delayMs)})`,
      });
    }
  }
  return out;
}

/** What the app expects on the broker, for findDrift. */
function expectedTopology(app: App): ExpectedTopology {
  const planned = planApp(app);
  const shaped = (kind: 'exchange' | 'queue'): ExpectedTopology['queues'] =>
    planned.filter((e) => e.kind === kind).map((e) => ({ name: e.name, shape: e.declared ?? {} }));
  const bindings = planTopology(app.topology, { exclusiveQueues: false }).flatMap((s) =>
    s.kind === 'binding' ? [{ exchange: s.exchange, queue: s.queue.name, routingKey: s.routingKey, arguments: { ...s.arguments } }] : [],
  );
  return { exchanges: shaped('exchange'), queues: shaped('queue'), bindings, owns: [...app.owns] };
}

export interface DiffOptions {
  /** The management HTTP API, e.g. http://guest:guest@localhost:15672. */
  managementUrl: string;
  /** The login, instead of (or beside) the URL's userinfo: a user name and password, each a value or a file read at each request. */
  credentials?: ManagementCredentials;
  /** Default '/'. */
  vhost?: string;
}

/**
 * Compares the app's declarations (planApp) with the live broker, through the management API:
 * what is missing, what is extra under the names the app owns, and what exists with other
 * arguments (what would fail a deploy with 406). Changes nothing. Rejects with ManagementError.
 */
export async function diffApp(app: App, options: DiffOptions): Promise<TopologyDrift> {
  return findDrift(expectedTopology(app), new ManagementClient(options.managementUrl, options.credentials), options.vhost ?? '/');
}
