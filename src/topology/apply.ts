import { withChannel } from '../amqp/close.js';
import { amqpCode, brokerText, ReplyCode, replyCodeName } from '../amqp/reply-codes.js';
import type { Channel, Link } from '../amqp/transport.js';
import type { Topology } from '../define/topology.js';
import { TopologyError, TopologyMismatchError } from '../support/errors.js';
import { differenceFromText, diff, exchangeShape, queueShape } from './diff.js';
import type { ManagementClient } from './management.js';
import { describeStep, planQueue, planTopology, type Step } from './plan.js';

/** What declarations need besides the link: the topology, and where to look up a mismatch. */
export interface DeclareTarget {
  readonly topology: Topology;
  readonly vhost: string;
  readonly management: ManagementClient | undefined;
}

/** Asserts every exchange, queue and binding of the topology on the broker. */
export async function assertTopology(link: Link, target: DeclareTarget, options: { exclusiveQueues: boolean }): Promise<void> {
  await runSteps(link, target, planTopology(target.topology, options));
}

/**
 * Asserts one queue as declared in the topology (see planQueue). Used to bring back a queue that
 * was deleted under a consumer. A queue that is not in the topology is only checked to exist.
 */
export async function assertQueueOf(link: Link, target: DeclareTarget, queueName: string): Promise<void> {
  const steps = planQueue(target.topology, queueName);
  if (steps === undefined) {
    await withChannel(link, (ch) => ch.checkQueue(queueName));
    return;
  }
  await runSteps(link, target, steps);
}

/**
 * Runs every step. A failed step closes the channel (406, 404, …): the rest go on, on a new one,
 * so one mismatched entity does not keep the others from being declared. The first failure is
 * thrown at the end.
 */
async function runSteps(link: Link, target: DeclareTarget, steps: readonly Step[]): Promise<void> {
  let first: Error | undefined;
  let next = 0;
  while (next < steps.length) {
    await withChannel(link, async (ch) => {
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

async function explain(err: unknown, step: Step, target: DeclareTarget): Promise<Error> {
  const code = amqpCode(err);
  const text = brokerText(err);
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
  return new TopologyError(`Declaring ${describeStep(step)} failed${name !== undefined ? ` (${code} ${name})` : ''}: ${text}`, { cause: err });
}

/**
 * Declares the wait queue of one retry delay tier: messages sit there `delayMs`, then the broker
 * dead-letters them back to `queue` through the default exchange (so only that queue gets them).
 * Durable, and replicated like its queue: a quorum queue's wait queues are quorum queues that
 * dead-letter at-least-once, so a message waiting for its retry survives the loss of a node.
 */
export async function assertWaitQueue(link: Link, queue: string, type: 'classic' | 'quorum' | 'stream', waitQueue: string, delayMs: number): Promise<void> {
  const args: Record<string, unknown> = { 'x-queue-type': type === 'quorum' ? 'quorum' : 'classic', 'x-message-ttl': delayMs, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue };
  if (type === 'quorum') {
    args['x-dead-letter-strategy'] = 'at-least-once';
    args['x-overflow'] = 'reject-publish'; // at-least-once dead-lettering requires it
  }
  await withChannel(link, async (ch) => {
    try {
      await ch.assertQueue(waitQueue, { durable: true, exclusive: false, autoDelete: false, arguments: args });
    } catch (err) {
      throw new TopologyError(`Declaring retry wait queue '${waitQueue}' failed: ${brokerText(err)}. Delete it if it was declared with other arguments.`, {
        cause: err,
      });
    }
  });
}
