import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  ConfigError,
  defineApp,
  defineConsumer,
  defineMessage,
  defineTopology,
  diffApp,
  isApp,
  planApp,
  type App,
  type AppDefinition,
  type Consumer,
  type RetryPolicy,
} from '../../src/index.js';
import { findDrift, namePattern, type ExpectedTopology } from '../../src/topology/drift.js';
import type { ManagedBinding, ManagedExchange, ManagedQueue, ManagementClient } from '../../src/topology/management.js';

const OrderPlaced = defineMessage({ name: 'order.placed', exchange: 'orders', routingKey: 'order.placed', schema: z.object({ orderId: z.string() }) });
const OrderShipped = defineMessage({ name: 'order.shipped', exchange: 'orders', routingKey: 'order.shipped', schema: z.object({ orderId: z.string() }) });
const Refund = defineMessage({ name: 'refund.requested', exchange: 'orders', routingKey: 'refund.requested', schema: z.object({ orderId: z.string() }) });

const handle = (): void => undefined;

/** A consumer of OrderPlaced on `queue`, with the options given. */
function consumer(queue: string, options: { name?: string; retry?: RetryPolicy; ackMode?: 'auto' | 'none'; onError?: 'dead-letter' | 'requeue' } = {}): Consumer {
  return defineConsumer({ queue, message: OrderPlaced, handle, ...options });
}

/** The problems defineApp() reports for `definition`; [] if it accepts it. */
function problemsOf(definition: AppDefinition): readonly string[] {
  try {
    defineApp(definition);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.code).toBe('CONFIG_INVALID');
    return err.problems;
  }
}

/** The part of each problem before its first ':' (what it is about). */
function subjects(problems: readonly string[]): string[] {
  return problems.map((p) => p.split(':')[0] ?? p);
}

const billingTopology = defineTopology({
  exchanges: { orders: { type: 'topic' } },
  queues: {
    'billing.orders': { deadLetter: true, bindings: [{ exchange: 'orders', routingKey: 'order.placed' }] },
    'billing.replies': { exclusive: true, bindings: [{ exchange: 'orders', routingKey: 'reply.#' }] },
  },
});

describe('defineApp: what it refuses', () => {
  it.each<[string, Record<string, unknown>, string]>([
    ['no name', {}, 'name'],
    ['a blank name', { name: '   ' }, 'name'],
    ['a name that is not a string', { name: 42 }, 'name'],
    ['a topology not from defineTopology()', { name: 'billing', topology: { queues: 'billing.orders' } }, 'topology'],
    ['messages that are not an array', { name: 'billing', messages: OrderPlaced }, 'messages'],
    ['consumers that are not an array', { name: 'billing', consumers: consumer('billing.orders') }, 'consumers'],
    ['owns that is not an array', { name: 'billing', owns: 'billing.*' }, 'owns'],
    ['an empty owns pattern', { name: 'billing', owns: ['billing.*', ''] }, 'owns'],
    ['a consumer not from defineConsumer()', { name: 'billing', consumers: [{ queue: 'billing.orders' }] }, 'consumers.0'],
    ['a message not from defineMessage()', { name: 'billing', messages: ['order.placed'] }, 'messages.0'],
    ['two consumers with one name', { name: 'billing', consumers: [consumer('billing.orders'), consumer('billing.orders')] }, 'consumers.1'],
    ['two different contracts with one name', { name: 'billing', messages: [OrderPlaced, { ...OrderPlaced }] }, 'messages.1'],
    ['connect options that are not an object', { name: 'billing', connect: 'amqp://localhost' }, 'connect'],
    ['an invalid connect.retry', { name: 'billing', connect: { retry: { maxAttempts: 0 } } }, 'connect.retry'],
    ['a connect.retry without delays', { name: 'billing', connect: { retry: { maxAttempts: 3 } } }, 'connect.retry'],
  ])('refuses %s, naming what is wrong', (_case, definition, subject) => {
    expect(subjects(problemsOf(definition as unknown as AppDefinition))).toEqual([subject]);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf({
      name: 'billing',
      consumers: [consumer('billing.orders'), consumer('billing.orders', { name: 'billing.orders' })],
      messages: [OrderPlaced, { ...OrderPlaced }],
      connect: { retry: { maxAttempts: 0 } },
    });
    expect(subjects(problems)).toEqual(['messages.1', 'consumers.1', 'connect.retry']);
    expect(problems[0]).toContain("'order.placed'");
    expect(problems[1]).toContain("'billing.orders'");
  });

  it('says which app it is in the error message', () => {
    expect(() => defineApp({ name: 'billing', owns: [''] })).toThrow(/Invalid app 'billing'/);
  });

  it('reports the consumers and connect.retry problems beside a missing name', () => {
    const problems = problemsOf({ consumers: [consumer('billing.orders'), consumer('billing.orders')], connect: { retry: { maxAttempts: 0 } } } as unknown as AppDefinition);
    expect(subjects(problems)).toEqual(['name', 'consumers.1', 'connect.retry']);
  });

  it('refuses a null consumer before a valid one with a ConfigError', () => {
    expect(subjects(problemsOf({ name: 'billing', consumers: [null, consumer('billing.orders')] } as unknown as AppDefinition))).toEqual(['consumers.0']);
  });

  it('accepts the same contract listed twice, and a consumer contract also in messages', () => {
    expect(problemsOf({ name: 'billing', messages: [OrderPlaced, OrderPlaced], consumers: [consumer('billing.orders')] })).toEqual([]);
  });
});

describe('defineApp: what it makes', () => {
  it('defaults to an empty app with the name trimmed', () => {
    const app = defineApp({ name: ' billing ' });
    expect(app.name).toBe('billing');
    expect(app.topology.queues).toEqual([]);
    expect(app.topology.exchanges).toEqual([]);
    expect(app.messages).toEqual([]);
    expect(app.consumers).toEqual([]);
    expect(app.connect).toEqual({});
    expect(app.owns).toEqual(['billing.*']);
  });

  it('owns, by default, the names under each non-exclusive queue (its .dlq included) and under the app name', () => {
    const app = defineApp({ name: 'billing', topology: billingTopology });
    expect(app.owns).toEqual(['billing.orders.dlq.*', 'billing.orders.*', 'billing.*']);
  });

  it('keeps the owns patterns it is given, instead of the default', () => {
    expect(defineApp({ name: 'billing', topology: billingTopology, owns: ['legacy.*'] }).owns).toEqual(['legacy.*']);
  });

  it('finds a contract by name among its messages and its consumers’ contracts', () => {
    const refunds = defineConsumer({ queue: 'billing.refunds', message: Refund, handle });
    const app = defineApp({ name: 'billing', messages: [OrderPlaced, OrderShipped], consumers: [refunds] });
    expect(app.message('order.shipped')).toBe(OrderShipped);
    expect(app.message('refund.requested')).toBe(Refund);
    expect(app.message('order.cancelled')).toBeUndefined();
    // The consumer's contract is found without being listed in `messages`.
    expect(app.messages).toEqual([OrderPlaced, OrderShipped]);
  });

  it('is not changed by changes to the arrays it was given', () => {
    const messages = [OrderPlaced];
    const app = defineApp({ name: 'billing', messages });
    messages.push(OrderShipped);
    expect(app.messages).toEqual([OrderPlaced]);
    expect(app.message('order.shipped')).toBeUndefined();
  });
});

describe('isApp', () => {
  it('is true for what defineApp() returns, also from another copy of warren', () => {
    expect(isApp(defineApp({ name: 'billing' }))).toBe(true);
    // Another copy of warren marks its apps with the same global symbol.
    expect(isApp({ [Symbol.for('warren.app')]: true, name: 'billing' })).toBe(true);
  });

  it.each<[string, unknown]>([
    ['undefined', undefined],
    ['null', null],
    ['a string', 'billing'],
    ['an app definition', { name: 'billing', consumers: [] }],
    ['an object with another symbol', { [Symbol('warren.app')]: true }],
  ])('is false for %s', (_case, value) => {
    expect(isApp(value)).toBe(false);
  });
});

describe('planApp', () => {
  it('lists the topology (exclusive queues left out), then each consumer’s retry wait queues', () => {
    const app = defineApp({
      name: 'billing',
      topology: billingTopology,
      consumers: [consumer('billing.orders', { retry: { maxAttempts: 4, delays: ['1s', '10s'] } })],
    });
    expect(planApp(app).map((e) => [e.kind, e.name, e.note])).toEqual([
      ['exchange', 'orders', undefined],
      ['queue', 'billing.orders.dlq', 'dead letters of billing.orders'],
      ['queue', 'billing.orders', undefined],
      ['binding', 'orders → billing.orders (order.placed)', undefined],
      ['queue', 'billing.orders.retry.1s', 'retry wait queue of billing.orders (1s)'],
      ['queue', 'billing.orders.retry.10s', 'retry wait queue of billing.orders (10s)'],
    ]);
  });

  it('declares the topology’s entities with the flags and arguments the management API would show', () => {
    const plan = planApp(defineApp({ name: 'billing', topology: billingTopology }));
    expect(plan.find((e) => e.name === 'orders')?.declared).toEqual({ type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} });
    expect(plan.find((e) => e.name === 'billing.orders')?.declared).toEqual({
      durable: true,
      auto_delete: false,
      exclusive: false,
      arguments: { 'x-queue-type': 'classic', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing.orders.dlq' },
    });
  });

  it('names a binding with an empty routing key visibly', () => {
    const topology = defineTopology({ exchanges: { all: { type: 'fanout' } }, queues: { audit: { bindings: [{ exchange: 'all' }] } } });
    expect(planApp(defineApp({ name: 'audit', topology })).filter((e) => e.kind === 'binding').map((e) => e.name)).toEqual(["all → audit ('')"]);
  });

  it('declares a wait queue that holds a message for its delay, then dead-letters it back to the queue', () => {
    const app = defineApp({ name: 'billing', topology: billingTopology, consumers: [consumer('billing.orders', { retry: { maxAttempts: 2, delays: [1500] } })] });
    expect(planApp(app).at(-1)).toEqual({
      kind: 'queue',
      name: 'billing.orders.retry.1500ms',
      declared: {
        durable: true,
        auto_delete: false,
        exclusive: false,
        arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 1500, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing.orders' },
      },
      note: 'retry wait queue of billing.orders (1500ms)',
    });
  });

  it('makes the wait queues of a quorum queue quorum queues that dead-letter at least once', () => {
    const topology = defineTopology({ queues: { payments: { type: 'quorum' } } });
    const app = defineApp({ name: 'billing', topology, consumers: [consumer('payments', { retry: { maxAttempts: 2, delays: ['1m'] } })] });
    expect(planApp(app).find((e) => e.name === 'payments.retry.1m')?.declared?.arguments).toEqual({
      'x-queue-type': 'quorum',
      'x-message-ttl': 60_000,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': 'payments',
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    });
  });

  it('gives one wait queue per delay tier of a backoff policy', () => {
    const app = defineApp({
      name: 'billing',
      topology: billingTopology,
      consumers: [consumer('billing.orders', { retry: { maxAttempts: 5, backoff: { initialDelay: '1s', factor: 2, maxDelay: '4s' } } })],
    });
    expect(planApp(app).filter((e) => e.note?.startsWith('retry') === true).map((e) => e.name)).toEqual([
      'billing.orders.retry.1s',
      'billing.orders.retry.2s',
      'billing.orders.retry.4s',
    ]);
  });

  it.each<[string, Consumer, string[]]>([
    ['own policy (before connect.retry)', consumer('billing.orders', { retry: { maxAttempts: 2, delays: ['5s'] } }), ['billing.orders.retry.5s']],
    ['no policy: connect.retry', consumer('billing.orders'), ['billing.orders.retry.1s', 'billing.orders.retry.30s']],
    ['maxAttempts 1 (no retry)', consumer('billing.orders', { retry: { maxAttempts: 1 } }), []],
    ["ackMode 'none'", consumer('billing.orders', { ackMode: 'none' }), []],
    ["onError 'requeue'", consumer('billing.orders', { onError: 'requeue' }), []],
  ])('a consumer with %s gets the wait queues of the policy it runs with', (_case, c, waitQueues) => {
    const app = defineApp({ name: 'billing', topology: billingTopology, consumers: [c], connect: { retry: { maxAttempts: 3, delays: ['1s', '30s'] } } });
    expect(planApp(app).filter((e) => e.note?.startsWith('retry wait queue') === true).map((e) => e.name)).toEqual(waitQueues);
  });

  it('declares a wait queue shared by two consumers of one queue once', () => {
    const app = defineApp({
      name: 'billing',
      topology: billingTopology,
      consumers: [
        consumer('billing.orders', { name: 'fast', retry: { maxAttempts: 2, delays: ['1s'] } }),
        consumer('billing.orders', { name: 'slow', retry: { maxAttempts: 3, delays: ['1s', '1m'] } }),
      ],
    });
    const names = planApp(app).map((e) => e.name);
    expect(names.filter((n) => n.includes('.retry.'))).toEqual(['billing.orders.retry.1s', 'billing.orders.retry.1m']);
  });
});

describe('namePattern', () => {
  it.each<[string, string, boolean]>([
    ['billing.*', 'billing.orders', true],
    ['billing.*', 'billing.orders.retry.1s', true],
    ['billing.*', 'billing.', true],
    ['billing.*', 'billing', false],
    ['billing.*', 'billingXorders', false],
    ['billing.*', 'old.billing.orders', false],
    ['*.dlq', 'billing.orders.dlq', true],
    ['*.dlq', 'billing.orders.dlq.old', false],
    ['billing.orders', 'billing.orders', true],
    ['billing.orders', 'billing-orders', false],
    ['a+b(c)', 'a+b(c)', true],
    ['a+b(c)', 'aab', false],
    ['*', '', true],
    ['*', 'anything.at.all', true],
  ])("'%s' matches '%s': %s", (pattern, name, matches) => {
    expect(namePattern(pattern).test(name)).toBe(matches);
  });
});

interface Live {
  queues?: Partial<ManagedQueue>[];
  exchanges?: Partial<ManagedExchange>[];
  bindings?: ManagedBinding[];
}

/** A management API that lists `live` for every vhost, and records the vhosts asked for. */
function fakeManagement(live: Live): { client: ManagementClient; vhosts: string[] } {
  const vhosts: string[] = [];
  const list =
    <T>(items: T[] | undefined) =>
    (vhost: string): Promise<T[]> => {
      vhosts.push(vhost);
      return Promise.resolve(items ?? []);
    };
  const client = { queues: list(live.queues), exchanges: list(live.exchanges), bindings: list(live.bindings) };
  return { client: client as unknown as ManagementClient, vhosts };
}

const classicQueue = { durable: true, auto_delete: false, exclusive: false };
/** What billing expects: an exchange, a queue bound to it, and a classic queue declared without x-queue-type. */
const expected: ExpectedTopology = {
  exchanges: [{ name: 'orders', shape: { type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} } }],
  queues: [
    { name: 'billing.orders', shape: { ...classicQueue, arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 60_000 } } },
    { name: 'billing.audit', shape: { ...classicQueue, arguments: {} } },
  ],
  bindings: [{ exchange: 'orders', queue: 'billing.orders', routingKey: 'order.placed', arguments: {} }],
  owns: ['billing.*', 'orders*'],
};

/** The broker as it is once billing declared everything, as RabbitMQ 4.x lists it, with what every vhost has and what other apps declared. */
function inSyncBroker(): Required<Live> {
  return {
    exchanges: [
      { name: '', type: 'direct', durable: true, auto_delete: false, internal: false, arguments: {} },
      { name: 'amq.topic', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} },
      { name: 'orders', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} },
      { name: 'shipping', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} },
    ],
    queues: [
      { name: 'billing.orders', type: 'classic', ...classicQueue, arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 60_000 } },
      // 4.x lists x-queue-type on every queue, also one declared without it.
      { name: 'billing.audit', type: 'classic', ...classicQueue, arguments: { 'x-queue-type': 'classic' } },
      { name: 'shipping.orders', type: 'quorum', ...classicQueue, arguments: { 'x-queue-type': 'quorum' } },
    ],
    bindings: [
      // Every queue's binding from the default exchange.
      { source: '', destination: 'billing.orders', destination_type: 'queue', routing_key: 'billing.orders', arguments: {} },
      { source: '', destination: 'billing.audit', destination_type: 'queue', routing_key: 'billing.audit', arguments: {} },
      { source: 'orders', destination: 'billing.orders', destination_type: 'queue', routing_key: 'order.placed', arguments: {} },
      // Another app's bindings, onto its own queue and exchange.
      { source: 'orders', destination: 'shipping.orders', destination_type: 'queue', routing_key: 'order.#', arguments: {} },
      { source: 'orders', destination: 'shipping', destination_type: 'exchange', routing_key: '#', arguments: {} },
    ],
  };
}

describe('findDrift', () => {
  it('finds none when the broker has what the app declares, whatever else it has', async () => {
    expect.hasAssertions();
    const { client, vhosts } = fakeManagement(inSyncBroker());
    expect(await findDrift(expected, client, 'prod')).toEqual({ vhost: 'prod', missing: [], extra: [], different: [], inSync: true });
    expect(new Set(vhosts)).toEqual(new Set(['prod']));
  });

  it('reports each declared queue, exchange and binding the broker lacks as missing', async () => {
    expect.hasAssertions();
    const { client } = fakeManagement({});
    const drift = await findDrift(expected, client, '/');
    expect(drift.missing).toEqual([
      { kind: 'exchange', name: 'orders' },
      { kind: 'queue', name: 'billing.orders' },
      { kind: 'queue', name: 'billing.audit' },
      { kind: 'binding', name: 'orders → billing.orders (order.placed)' },
    ]);
    expect(drift.extra).toEqual([]);
    expect(drift.inSync).toBe(false);
  });

  it('reports as extra only what the app owns: never amq.* or the default exchange, never other apps’ entities', async () => {
    expect.hasAssertions();
    const broker = inSyncBroker();
    broker.queues.push({ name: 'billing.orders.retry.5s', ...classicQueue }, { name: 'billing', ...classicQueue }, { name: 'amq.gen-abc', ...classicQueue });
    broker.exchanges.push({ name: 'orders.v1', type: 'topic' }, { name: 'amq.billing', type: 'topic' });
    const { client } = fakeManagement(broker);
    const drift = await findDrift({ ...expected, owns: ['*'] }, client, '/');
    // With owns ['*'] everything not declared is the app's, except what every broker has.
    expect(drift.extra).toEqual(
      expect.arrayContaining([
        { kind: 'exchange', name: 'orders.v1' },
        { kind: 'queue', name: 'billing.orders.retry.5s' },
      ]),
    );
    expect(drift.extra.map((e) => e.name)).not.toContain('');
    expect(drift.extra.map((e) => e.name)).not.toContain('amq.topic');
    expect(drift.extra.map((e) => e.name)).not.toContain('amq.billing');
    expect(drift.extra.map((e) => e.name)).not.toContain('amq.gen-abc');

    const owned = await findDrift(expected, fakeManagement(broker).client, '/');
    expect(owned.extra).toEqual([
      { kind: 'exchange', name: 'orders.v1' },
      { kind: 'queue', name: 'billing.orders.retry.5s' },
    ]);
    expect(owned.inSync).toBe(false);
  });

  it('reports a binding onto the app’s queues that it does not declare as extra, and none onto other queues', async () => {
    expect.hasAssertions();
    const broker = inSyncBroker();
    broker.bindings.push(
      { source: 'orders', destination: 'billing.orders', destination_type: 'queue', routing_key: 'order.cancelled', arguments: {} },
      { source: 'shipping', destination: 'billing.audit', destination_type: 'queue', routing_key: '', arguments: {} },
      { source: 'orders', destination: 'shipping.orders', destination_type: 'queue', routing_key: 'order.cancelled', arguments: {} },
      // Onto an exchange under an owned name: only bindings onto queues are compared.
      { source: 'orders', destination: 'billing.events', destination_type: 'exchange', routing_key: '#', arguments: {} },
    );
    const drift = await findDrift(expected, fakeManagement(broker).client, '/');
    expect(drift.extra).toEqual([
      { kind: 'binding', name: 'orders → billing.orders (order.cancelled)' },
      { kind: 'binding', name: "shipping → billing.audit ('')" },
    ]);
    expect(drift.missing).toEqual([]);
  });

  it('reports a binding onto a declared queue as extra also when owns does not cover the queue', async () => {
    expect.hasAssertions();
    const broker = inSyncBroker();
    broker.bindings.push({ source: 'orders', destination: 'billing.orders', destination_type: 'queue', routing_key: 'order.cancelled', arguments: {} });
    const drift = await findDrift({ ...expected, owns: [] }, fakeManagement(broker).client, '/');
    expect(drift.extra).toEqual([{ kind: 'binding', name: 'orders → billing.orders (order.cancelled)' }]);
  });

  it('tells bindings apart by their arguments (a headers exchange matches on them): another x-match is a missing and an extra binding', async () => {
    expect.hasAssertions();
    const want: ExpectedTopology = { ...expected, bindings: [{ exchange: 'orders', queue: 'billing.orders', routingKey: 'order.placed', arguments: { 'x-match': 'all', region: 'eu' } }] };
    const broker = inSyncBroker();
    broker.bindings[2] = { source: 'orders', destination: 'billing.orders', destination_type: 'queue', routing_key: 'order.placed', arguments: { region: 'eu', 'x-match': 'any' } };
    const drift = await findDrift(want, fakeManagement(broker).client, '/');
    expect(drift.missing).toEqual([{ kind: 'binding', name: 'orders → billing.orders (order.placed)' }]);
    expect(drift.extra).toEqual([{ kind: 'binding', name: 'orders → billing.orders (order.placed)' }]);
    broker.bindings[2] = { ...broker.bindings[2], arguments: { region: 'eu', 'x-match': 'all' } };
    expect((await findDrift(want, fakeManagement(broker).client, '/')).inSync).toBe(true);
  });

  it('reports an entity with other flags or arguments as different, with each difference', async () => {
    expect.hasAssertions();
    const broker = inSyncBroker();
    broker.queues[0] = { name: 'billing.orders', ...classicQueue, durable: false, arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 30_000 } };
    broker.exchanges[2] = { name: 'orders', type: 'direct', durable: true, auto_delete: false, internal: false, arguments: {} };
    const drift = await findDrift(expected, fakeManagement(broker).client, '/');
    expect(drift.different).toEqual([
      { kind: 'exchange', name: 'orders', differences: [{ argument: 'type', declared: 'topic', actual: 'direct' }] },
      {
        kind: 'queue',
        name: 'billing.orders',
        differences: [
          { argument: 'durable', declared: true, actual: false },
          { argument: 'x-message-ttl', declared: 60_000, actual: 30_000 },
        ],
      },
    ]);
    expect(drift.missing).toEqual([]);
    expect(drift.inSync).toBe(false);
  });

  it.each<[string, Record<string, unknown>, Record<string, unknown>, boolean]>([
    ['declared without x-queue-type, listed classic by 4.x', {}, { 'x-queue-type': 'classic' }, false],
    ['declared classic, listed without x-queue-type by 3.x', { 'x-queue-type': 'classic' }, {}, false],
    ['declared without x-queue-type, listed quorum', {}, { 'x-queue-type': 'quorum' }, true],
    ['declared quorum, listed classic', { 'x-queue-type': 'quorum' }, { 'x-queue-type': 'classic' }, true],
  ])('a queue %s: different = %s', async (_case, declared, listed, isDifferent) => {
    expect.hasAssertions();
    const want: ExpectedTopology = { exchanges: [], queues: [{ name: 'q', shape: { ...classicQueue, arguments: declared } }], bindings: [], owns: [] };
    const drift = await findDrift(want, fakeManagement({ queues: [{ name: 'q', ...classicQueue, arguments: listed }] }).client, '/');
    expect(drift.different.length > 0).toBe(isDifferent);
    expect(drift.inSync).toBe(!isDifferent);
  });
});

describe('diffApp through a management API', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections(); // keep-alive sockets would hold close() for seconds
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  /** Serves `live` as a management API's queues, exchanges and bindings of vhost `vhost`; records the requests. */
  async function serveManagement(vhost: string, live: Required<Live>): Promise<{ url: string; requests: { url: string; headers: IncomingHttpHeaders }[] }> {
    const requests: { url: string; headers: IncomingHttpHeaders }[] = [];
    const v = encodeURIComponent(vhost);
    const routes: Record<string, unknown> = { [`/api/queues/${v}`]: live.queues, [`/api/exchanges/${v}`]: live.exchanges, [`/api/bindings/${v}`]: live.bindings };
    const s = createServer((req, res) => {
      requests.push({ url: req.url ?? '', headers: req.headers });
      const body = routes[req.url ?? ''];
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body ?? { error: 'Object Not Found' }));
    });
    server = s;
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return { url: `http://ops:s3cret@127.0.0.1:${(s.address() as AddressInfo).port}`, requests };
  }

  const app = (): App =>
    defineApp({ name: 'billing', topology: billingTopology, consumers: [consumer('billing.orders', { retry: { maxAttempts: 2, delays: ['1s'] } })] });

  /** The broker once `app()` has started, as 4.x lists it. */
  function started(): Required<Live> {
    const declared = planApp(app());
    const entity = (e: (typeof declared)[number]): Partial<ManagedQueue> => ({ name: e.name, ...e.declared });
    return {
      exchanges: [{ name: '', type: 'direct', durable: true }, ...declared.filter((e) => e.kind === 'exchange').map(entity)],
      queues: declared.filter((e) => e.kind === 'queue').map(entity),
      bindings: [{ source: 'orders', destination: 'billing.orders', destination_type: 'queue', routing_key: 'order.placed', arguments: {} }],
    };
  }

  it('finds an app just started in sync, asking for its vhost with the URL’s credentials', async () => {
    expect.hasAssertions();
    const { url, requests } = await serveManagement('prod/eu', started());
    expect(await diffApp(app(), { managementUrl: url, vhost: 'prod/eu' })).toEqual({ vhost: 'prod/eu', missing: [], extra: [], different: [], inSync: true });
    expect(requests.map((r) => r.url).sort()).toEqual(['/api/bindings/prod%2Feu', '/api/exchanges/prod%2Feu', '/api/queues/prod%2Feu']);
    expect(requests[0]?.headers.authorization).toBe('Basic ' + Buffer.from('ops:s3cret').toString('base64'));
  });

  it('expects the retry wait queues, and reports an old tier under a declared queue as extra', async () => {
    expect.hasAssertions();
    const broker = started();
    broker.queues = broker.queues.filter((q) => q.name !== 'billing.orders.retry.1s');
    broker.queues.push({ name: 'billing.orders.retry.10s', ...classicQueue, arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 10_000 } });
    const { url } = await serveManagement('/', broker);
    const drift = await diffApp(app(), { managementUrl: url });
    expect(drift.vhost).toBe('/');
    expect(drift.missing).toEqual([{ kind: 'queue', name: 'billing.orders.retry.1s' }]);
    expect(drift.extra).toEqual([{ kind: 'queue', name: 'billing.orders.retry.10s' }]);
  });

  it('rejects with MANAGEMENT_FAILED naming the vhost the API does not know', async () => {
    expect.hasAssertions();
    const { url } = await serveManagement('/', started());
    await expect(diffApp(app(), { managementUrl: url, vhost: 'staging' })).rejects.toMatchObject({ code: 'MANAGEMENT_FAILED', message: expect.stringContaining("'staging'") as unknown });
    await expect(diffApp(app(), { managementUrl: url, vhost: 'staging' })).rejects.not.toThrow(/s3cret/);
  });
});
