import { closeWithin, CLOSE_WAIT_MS } from './connection.js';
import type { Channel, ChannelModel } from 'amqplib';
import { amqpCode, brokerText, ReplyCode, replyCodeName, TopologyError, TopologyMismatchError, type ArgumentDifference } from './errors.js';
import type { ManagedEntity, ManagementClient } from './management.js';
import type { DeclaredExchange, DeclaredQueue, Topology } from './topology.js';

export interface DeclareTarget {
  readonly topology: Topology;
  readonly vhost: string;
  readonly management: ManagementClient | undefined;
}

type Step =
  | { kind: 'exchange'; exchange: DeclaredExchange }
  | { kind: 'queue'; queue: DeclaredQueue }
  | { kind: 'binding'; queue: DeclaredQueue; exchange: string; routingKey: string; arguments: Readonly<Record<string, unknown>> };

/** Asserts every exchange, queue and binding of the topology on the broker. */
export async function assertTopology(connection: ChannelModel, target: DeclareTarget, options: { exclusiveQueues: boolean }): Promise<void> {
  const { topology } = target;
  const steps: Step[] = topology.exchanges.map((exchange) => ({ kind: 'exchange', exchange }));
  for (const queue of topology.queues) if (options.exclusiveQueues || !queue.exclusive) steps.push(...queueSteps(queue));
  await runSteps(connection, target, steps);
}

/**
 * Asserts one queue as declared in the topology (with its dead-letter queue, the exchanges it is
 * bound to, and its bindings). Used to bring back a queue that was deleted under a consumer.
 * A queue that is not in the topology is only checked to exist.
 */
export async function assertQueueOf(connection: ChannelModel, target: DeclareTarget, queueName: string): Promise<void> {
  const { topology } = target;
  const queue = topology.queue(queueName);
  if (queue === undefined) {
    await withChannel(connection, (ch) => ch.checkQueue(queueName));
    return;
  }
  const steps: Step[] = [];
  for (const b of queue.bindings) {
    const exchange = topology.exchange(b.exchange);
    if (exchange !== undefined) steps.push({ kind: 'exchange', exchange });
  }
  const dlq = topology.queues.find((q) => q.deadLetterOf === queue.name);
  if (dlq !== undefined) steps.push(...queueSteps(dlq));
  steps.push(...queueSteps(queue));
  await runSteps(connection, target, steps);
}

function queueSteps(queue: DeclaredQueue): Step[] {
  return [{ kind: 'queue', queue }, ...queue.bindings.map((b): Step => ({ kind: 'binding', queue, ...b }))];
}

/**
 * Runs every step. A failed step closes the channel (406, 404, …): the rest go on, on a new one,
 * so one mismatched entity does not keep the others from being declared. The first failure is
 * thrown at the end.
 */
async function runSteps(connection: ChannelModel, target: DeclareTarget, steps: readonly Step[]): Promise<void> {
  let first: Error | undefined;
  let next = 0;
  while (next < steps.length) {
    await withChannel(connection, async (ch) => {
      while (next < steps.length) {
        const step = steps[next++] as Step;
        try {
          await runStep(ch, step);
        } catch (err) {
          first ??= await explain(err, step, target);
          return; // this channel is closed now
        }
      }
    });
  }
  if (first !== undefined) throw first;
}

async function runStep(ch: Channel, step: Step): Promise<void> {
  switch (step.kind) {
    case 'exchange': {
      const e = step.exchange;
      await ch.assertExchange(e.name, e.type, { durable: e.durable, autoDelete: e.autoDelete, internal: e.internal, arguments: { ...e.arguments } });
      return;
    }
    case 'queue': {
      const q = step.queue;
      await ch.assertQueue(q.name, { durable: q.durable, exclusive: q.exclusive, autoDelete: q.autoDelete, arguments: { ...q.arguments } });
      return;
    }
    case 'binding':
      await ch.bindQueue(step.queue.name, step.exchange, step.routingKey, { ...step.arguments });
      return;
  }
}

/** Runs `fn` on a short-lived channel. Channel errors surface as the rejected operation, so 'error' is only swallowed. */
export async function withChannel<T>(connection: ChannelModel, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await connection.createChannel();
  let closed = false;
  ch.on('error', () => undefined);
  ch.on('close', () => {
    closed = true;
  });
  try {
    return await fn(ch);
  } finally {
    if (!closed) await closeWithin(ch, CLOSE_WAIT_MS);
  }
}

async function explain(err: unknown, step: Step, target: DeclareTarget): Promise<Error> {
  const code = amqpCode(err);
  const text = brokerText(err);
  const what =
    step.kind === 'exchange'
      ? `exchange '${step.exchange.name}'`
      : step.kind === 'queue'
        ? `queue '${step.queue.name}'`
        : `binding of queue '${step.queue.name}' to exchange '${step.exchange}' with routing key '${step.routingKey}'`;

  if (code === ReplyCode.PRECONDITION_FAILED && step.kind !== 'binding') {
    const kind = step.kind;
    const entity = kind === 'exchange' ? step.exchange.name : step.queue.name;
    const actual =
      target.management === undefined
        ? undefined
        : kind === 'exchange'
          ? await target.management.exchange(target.vhost, entity)
          : await target.management.queue(target.vhost, entity);
    const declared = kind === 'exchange' ? exchangeShape(step.exchange) : queueShape(step.queue);
    const differences = actual !== undefined ? diff(declared, actual) : differenceFromText(declared, text);
    return new TopologyMismatchError(kind, entity, differences, text, { cause: err });
  }
  const name = replyCodeName(code);
  return new TopologyError(`Declaring ${what} failed${name !== undefined ? ` (${code} ${name})` : ''}: ${text}`, { cause: err });
}

function exchangeShape(e: DeclaredExchange): ManagedEntity {
  return { type: e.type, durable: e.durable, auto_delete: e.autoDelete, internal: e.internal, arguments: { ...e.arguments } };
}

function queueShape(q: DeclaredQueue): ManagedEntity {
  return { durable: q.durable, auto_delete: q.autoDelete, exclusive: q.exclusive, arguments: { ...q.arguments } };
}

const FLAG_NAMES: Record<string, string> = { type: 'type', durable: 'durable', auto_delete: 'autoDelete', exclusive: 'exclusive', internal: 'internal' };

/** The differences between what warren declares and what the management API reports. */
export function diff(declared: ManagedEntity, actual: ManagedEntity): ArgumentDifference[] {
  const out: ArgumentDifference[] = [];
  for (const [key, label] of Object.entries(FLAG_NAMES)) {
    const d = (declared as Record<string, unknown>)[key];
    const a = (actual as Record<string, unknown>)[key];
    if (d !== undefined && a !== undefined && d !== a) out.push({ argument: label, declared: d, actual: a });
  }
  const dArgs = declared.arguments ?? {};
  const aArgs = actual.arguments ?? {};
  for (const key of new Set([...Object.keys(dArgs), ...Object.keys(aArgs)])) {
    const d = dArgs[key];
    const a = aArgs[key];
    if (JSON.stringify(d) !== JSON.stringify(a)) out.push({ argument: key, declared: d, actual: a });
  }
  return out;
}

/** Without the management API, the broker's own text names one differing argument: use it. */
function differenceFromText(declared: ManagedEntity, text: string): ArgumentDifference[] {
  const m = /inequivalent arg '([^']+)'.*?(?:but current is (.*))?$/s.exec(text);
  if (!m?.[1]) return [];
  const argument = m[1];
  const flag = Object.entries(FLAG_NAMES).find(([k]) => k === argument);
  const declaredValue = flag !== undefined ? (declared as Record<string, unknown>)[argument] : declared.arguments?.[argument];
  return [{ argument: flag?.[1] ?? argument, declared: declaredValue, actual: m[2] ?? 'unknown' }];
}

/**
 * Declares the wait queue of one retry delay tier: messages sit there `delayMs`, then the broker
 * dead-letters them back to `queue` through the default exchange (so only that queue gets them).
 */
export async function assertWaitQueue(connection: ChannelModel, queue: string, waitQueue: string, delayMs: number): Promise<void> {
  await withChannel(connection, async (ch) => {
    try {
      await ch.assertQueue(waitQueue, {
        durable: true,
        arguments: { 'x-message-ttl': delayMs, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue },
      });
    } catch (err) {
      throw new TopologyError(`Declaring retry wait queue '${waitQueue}' failed: ${brokerText(err)}. Delete it if it was declared with other arguments.`, {
        cause: err,
      });
    }
  });
}
