import type { DeclaredExchange, DeclaredQueue, Topology } from '../define/topology.js';

/** One declaration the broker must make: the plan of a topology is a list of these, in order. */
export type Step =
  | { kind: 'exchange'; exchange: DeclaredExchange }
  | { kind: 'queue'; queue: DeclaredQueue }
  | { kind: 'binding'; queue: DeclaredQueue; exchange: string; routingKey: string; arguments: Readonly<Record<string, unknown>> };

/** Every exchange, then each queue with its bindings. Exclusive queues only where asked (they belong to the connection that declares them). */
export function planTopology(topology: Topology, options: { exclusiveQueues: boolean }): Step[] {
  const steps: Step[] = topology.exchanges.map((exchange) => ({ kind: 'exchange', exchange }));
  for (const queue of topology.queues) if (options.exclusiveQueues || !queue.exclusive) steps.push(...queueSteps(queue));
  return steps;
}

/**
 * One queue as declared (with its dead-letter queue, the exchanges it is bound to, and its
 * bindings): what brings back a queue deleted under its consumer. Undefined for a queue the
 * topology does not declare.
 */
export function planQueue(topology: Topology, queueName: string): Step[] | undefined {
  const queue = topology.queue(queueName);
  if (queue === undefined) return undefined;
  const steps: Step[] = [];
  for (const b of queue.bindings) {
    const exchange = topology.exchange(b.exchange);
    if (exchange !== undefined) steps.push({ kind: 'exchange', exchange });
  }
  const dlq = topology.queues.find((q) => q.deadLetterOf === queue.name);
  if (dlq !== undefined) steps.push(...queueSteps(dlq));
  steps.push(...queueSteps(queue));
  return steps;
}

function queueSteps(queue: DeclaredQueue): Step[] {
  return [{ kind: 'queue', queue }, ...queue.bindings.map((b): Step => ({ kind: 'binding', queue, ...b }))];
}

/** How a step is named in an error message. */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'exchange':
      return `exchange '${step.exchange.name}'`;
    case 'queue':
      return `queue '${step.queue.name}'`;
    case 'binding':
      return `binding of queue '${step.queue.name}' to exchange '${step.exchange}' with routing key '${step.routingKey}'`;
  }
}

/**
 * The arguments of the retry wait queue of one delay tier of `queue`: messages wait `delayMs`, then
 * dead-letter back to `queue` through the default exchange. Replicated (quorum, at-least-once) for a quorum queue.
 */
export function waitQueueArguments(queue: string, type: 'classic' | 'quorum' | 'stream', delayMs: number): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': type === 'quorum' ? 'quorum' : 'classic', 'x-message-ttl': delayMs, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue };
  if (type === 'quorum') {
    args['x-dead-letter-strategy'] = 'at-least-once';
    args['x-overflow'] = 'reject-publish'; // at-least-once dead-lettering requires it
  }
  return args;
}
