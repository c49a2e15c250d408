import { withChannel } from '../amqp/close.js';
import { permissionError, type Operation } from '../amqp/permissions.js';
import { amqpCode, brokerText, ReplyCode, replyCodeName } from '../amqp/reply-codes.js';
import type { Channel, Link } from '../amqp/transport.js';
import { DLQ_DELIVERY_LIMIT, type Topology } from '../define/topology.js';
import type { Logger } from '../support/logger.js';
import { TopologyError, TopologyMismatchError, WarrenError, type Mismatch } from '../support/errors.js';
import { differenceFromText, diff, exchangeShape, queueShape } from './diff.js';
import type { ManagementClient } from './management.js';
import { describeStep, planQueue, planTopology, waitQueueArguments, type Step } from './plan.js';

/** What declarations need besides the link: the topology, and where to look up a mismatch. */
export interface DeclareTarget {
  readonly topology: Topology;
  readonly vhost: string;
  readonly management: ManagementClient | undefined;
  /** Where an entity an earlier warren declared differently, and that still works, is reported. */
  readonly log: Logger;
  /**
   * False (connect()'s `declare: false`): something else declares the topology (a deploy step
   * running `warren topology apply`), so nothing is declared; a queue about to be consumed and
   * its retry wait queues are only checked to exist (a passive declare, which needs no permission).
   * Default true.
   */
  readonly declare?: boolean;
}

/** Asserts every exchange, queue and binding of the topology on the broker. */
export async function assertTopology(link: Link, target: DeclareTarget, options: { exclusiveQueues: boolean }): Promise<void> {
  if (target.declare === false) return;
  await runSteps(link, target, planTopology(target.topology, options));
}

/**
 * Asserts one queue as declared in the topology (see planQueue). Used to bring back a queue that
 * was deleted under a consumer. A queue that is not in the topology (or any, with `declare`
 * false) is only checked to exist.
 */
export async function assertQueueOf(link: Link, target: DeclareTarget, queueName: string): Promise<void> {
  const steps = target.declare !== false ? planQueue(target.topology, queueName) : undefined;
  if (steps === undefined) {
    await withChannel(link, (ch) => ch.checkQueue(queueName));
    return;
  }
  await runSteps(link, target, steps);
}

/**
 * Runs every step. A failed step closes the channel (406, 404, …): the rest go on, on a new one,
 * so one mismatched entity does not keep the others from being declared. Then every mismatch is
 * reported in one TopologyMismatchError (the user's entities before warren's generated queues),
 * or the first other failure is thrown.
 */
async function runSteps(link: Link, target: DeclareTarget, steps: readonly Step[]): Promise<void> {
  const mismatches: { mismatch: Mismatch; generated: boolean; cause: unknown }[] = [];
  let other: Error | undefined;
  let next = 0;
  while (next < steps.length) {
    await withChannel(link, async (ch) => {
      while (next < steps.length) {
        const step = steps[next++] as Step;
        try {
          await runStep(ch, step);
        } catch (err) {
          const explained = await explain(err, step, target);
          const generated = step.kind === 'queue' && step.queue.deadLetterOf !== undefined;
          if (explained instanceof Error) other ??= explained;
          else if (generated && isLegacyDeadLetterQueue(explained)) {
            target.log.warn(
              { queue: explained.entity, differences: explained.differences },
              'this dead-letter queue was declared by an earlier warren without x-delivery-limit; it is used as it is, but on RabbitMQ 4.0-4.2 reading a dead letter 20 times (peek) drops it: when it is empty, delete it so warren declares it again',
            );
          } else mismatches.push({ mismatch: explained, generated, cause: err });
          return; // this channel is closed now
        }
      }
    });
  }
  if (mismatches.length > 0) {
    const ordered = [...mismatches.filter((m) => !m.generated), ...mismatches.filter((m) => m.generated)];
    const [first, ...rest] = ordered.map((m) => m.mismatch);
    if (first !== undefined) throw new TopologyMismatchError([first, ...rest], { cause: ordered[0]?.cause });
  }
  if (other !== undefined) throw other;
}

/** A `.dlq` that differs only in the delivery limit warren now declares on quorum dead-letter queues. */
function isLegacyDeadLetterQueue(m: Mismatch): boolean {
  return m.differences.length > 0 && m.differences.every((d) => d.argument === 'x-delivery-limit' && d.declared === DLQ_DELIVERY_LIMIT);
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

/** A mismatch, explained with the management API's view when there is one; or the TopologyError for any other refusal (a transport's own WarrenError as it is). */
async function explain(err: unknown, step: Step, target: DeclareTarget): Promise<Mismatch | Error> {
  // The transport's own refusal (the in-memory broker's NOT_MODELLED) already says what to do.
  if (err instanceof WarrenError) return err;
  const code = amqpCode(err);
  const text = brokerText(err);
  const unsupported = /unsupported queue type '([^']*)'/.exec(text);
  if (code === ReplyCode.PRECONDITION_FAILED && step.kind === 'queue' && unsupported !== null) {
    // Not a difference with an existing queue: this broker does not offer the type at all.
    return new TopologyError(
      `RabbitMQ refused ${describeStep(step)}: it does not offer queue type '${unsupported[1] ?? ''}' (disabled, or a plugin or ` +
        `feature flag it needs is off). Enable it on the broker, or declare the queue with a type it offers (classic, quorum). Broker said: ${text}`,
      { cause: err },
    );
  }
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
    return { kind, entity, differences, brokerMessage: text };
  }
  const refused = permissionError(err, operationOf(step));
  if (refused !== undefined) return refused;
  const name = replyCodeName(code);
  return new TopologyError(`Declaring ${describeStep(step)} failed${name !== undefined ? ` (${code} ${name})` : ''}: ${text}`, { cause: err });
}

/** A step as the broker's permission check sees it. */
function operationOf(step: Step): Operation {
  switch (step.kind) {
    case 'exchange': {
      const ae = step.exchange.arguments['alternate-exchange'];
      return { kind: 'declare-exchange', exchange: step.exchange.name, alternateExchange: typeof ae === 'string' ? ae : undefined };
    }
    case 'queue': {
      const dlx = step.queue.arguments['x-dead-letter-exchange'];
      const role = step.queue.deadLetterOf !== undefined ? 'dead-letter queue' : 'queue';
      return { kind: 'declare-queue', queue: step.queue.name, deadLetterExchange: typeof dlx === 'string' ? dlx : undefined, role };
    }
    case 'binding':
      return { kind: 'bind-queue', queue: step.queue.name, exchange: step.exchange, routingKey: step.routingKey };
  }
}

/**
 * Declares the wait queue of one retry delay tier: messages sit there `delayMs`, then the broker
 * dead-letters them back to `queue` through the default exchange (so only that queue gets them).
 * Durable, and replicated like its queue: a quorum queue's wait queues are quorum queues that
 * dead-letter at-least-once, so a message waiting for its retry survives the loss of a node.
 */
export async function assertWaitQueue(
  link: Link,
  target: Pick<DeclareTarget, 'management' | 'vhost' | 'declare'>,
  queue: string,
  type: 'classic' | 'quorum' | 'stream',
  waitQueue: string,
  delayMs: number,
  log: Logger,
): Promise<void> {
  if (target.declare === false) {
    await withChannel(link, (ch) => ch.checkQueue(waitQueue)).catch((err: unknown) => {
      throw amqpCode(err) === ReplyCode.NOT_FOUND
        ? new TopologyError(
            `Retry wait queue '${waitQueue}' of queue '${queue}' does not exist on vhost '${target.vhost}'. This client connects with declare: false, ` +
              'so it must be declared beforehand: run `warren topology apply <app>` (it declares the consumers\' wait queues too) as a user with configure permission.',
            { cause: err },
          )
        : new TopologyError(`Checking retry wait queue '${waitQueue}' failed: ${brokerText(err)}.`, { cause: err });
    });
    return;
  }
  const args = waitQueueArguments(queue, type, delayMs);
  let refused: unknown;
  await withChannel(link, async (ch) => {
    try {
      await ch.assertQueue(waitQueue, { durable: true, exclusive: false, autoDelete: false, arguments: args });
    } catch (err) {
      if (amqpCode(err) !== ReplyCode.PRECONDITION_FAILED) {
        throw (
          permissionError(err, { kind: 'declare-queue', queue: waitQueue, deadLetterExchange: '', role: 'retry wait queue' }) ??
          new TopologyError(`Declaring retry wait queue '${waitQueue}' failed: ${brokerText(err)}.`, { cause: err })
        );
      }
      refused = err;
    }
  });
  if (refused === undefined) return;
  // It exists with other arguments: declared by an earlier warren (a classic wait queue of a
  // quorum queue, say), or by hand. It works as a wait queue only if what waits there comes back
  // to `queue`; a message retried through one that does not is lost. Use it only when the
  // management API shows that it does.
  const live = await target.management?.queue(target.vhost, waitQueue);
  const liveArgs = live?.arguments ?? {};
  const routesBack = liveArgs['x-dead-letter-exchange'] === '' && liveArgs['x-dead-letter-routing-key'] === queue && typeof liveArgs['x-message-ttl'] === 'number';
  if (live === undefined || !routesBack) {
    const declared = { durable: true, auto_delete: false, exclusive: false, arguments: args };
    throw new TopologyMismatchError(
      [
        {
          kind: 'queue',
          entity: waitQueue,
          differences: live !== undefined ? diff(declared, live) : differenceFromText(declared, brokerText(refused)),
          brokerMessage:
            live !== undefined
              ? `it does not dead-letter back to '${queue}' (x-dead-letter-exchange '', x-dead-letter-routing-key '${queue}', x-message-ttl): retries through it would be lost; delete it when empty`
              : `${brokerText(refused)}; without the management API (managementUrl) warren cannot check that it routes retries back to '${queue}', so it does not use it; delete it when empty`,
        },
      ],
      { cause: refused },
    );
  }
  log.warn(
    { waitQueue, broker: brokerText(refused), arguments: liveArgs },
    'this retry wait queue exists with other arguments (declared by an earlier warren?); it routes back to its queue, so it is used as it is; when it is empty, delete it so warren declares it as its queue is (replicated for a quorum queue)',
  );
}
