// Fixtures for integration tests: clients that are closed after each test, and a fresh
// exchange + queue pair with unique names.
import { z } from 'zod';
import { connect, defineMessage, defineTopology, type ConnectOptions, type QueueDefinition, type Warren } from '../../src/index.js';
import { brokerUrls, track, uniqueName } from './broker.js';

const open: Warren[] = [];

/** connect() to the test broker (or `urls`), with a unique connection name; closed by closeClients(). */
export async function openClient(options: Partial<ConnectOptions> = {}): Promise<Warren> {
  const warren = await connect({ urls: [brokerUrls().amqpUrl], name: uniqueName('client'), ...options });
  open.push(warren);
  return warren;
}

/** Remembers a client created some other way, to close it after the test. */
export function trackClient(warren: Warren): Warren {
  open.push(warren);
  return warren;
}

export async function closeClients(): Promise<void> {
  await Promise.all(open.splice(0).map((w) => w.close()));
}

export const Ping = z.object({ id: z.string(), n: z.number().int().nonnegative() });

/** A topic exchange and a queue bound to it (`ping.#`), unique names, tracked for cleanup. */
export function pingSetup(queue: QueueDefinition = {}) {
  const exchange = track.exchange(uniqueName('ex'));
  const queueName = track.queue(uniqueName('q'));
  if (queue.deadLetter === true) track.queue(`${queueName}.dlq`);
  const topology = defineTopology({
    exchanges: { [exchange]: { type: 'topic' } },
    queues: { [queueName]: { bindings: [{ exchange, routingKey: 'ping.#' }], ...queue } },
  });
  const message = defineMessage({ name: 'ping', exchange, routingKey: 'ping.one', schema: Ping });
  return { exchange, queue: queueName, dlq: `${queueName}.dlq`, topology, message };
}

/** A promise with its resolve function exposed: lets a test hold a handler until it says so. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
