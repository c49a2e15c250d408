// Least privilege: a publisher-only and a consumer-only service, each run as a user with exactly
// the permissions the README's "Least privilege" table lists, on a vhost of its own; and what a
// user sees when one of them is missing. Each test makes its vhost and users and removes them.
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { z } from 'zod';
import { connect, defineConsumer, defineMessage, defineTopology, inspectBroker, NonRetryableError, PermissionError, type ConnectOptions, type Warren } from '../../src/index.js';
import { management, memoryLogger, waitFor } from '../helpers/broker.js';
import { NOTHING, sandbox, type Grant, type Sandbox } from '../helpers/vhost.js';
import { closeClients, trackClient } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
});

// The README's example names: one exchange, one queue with its dead-letter queue and one retry tier.
function topologyOf(type: 'classic' | 'quorum') {
  return defineTopology({
    exchanges: { 'shop.orders': { type: 'topic' } },
    queues: { 'billing.orders': { type, deadLetter: true, bindings: [{ exchange: 'shop.orders', routingKey: 'order.*' }] } },
  });
}
const topology = topologyOf('classic');
const exchangeOnly = defineTopology({ exchanges: { 'shop.orders': { type: 'topic' } } });
const OrderPlaced = defineMessage({ name: 'order.placed', exchange: 'shop.orders', routingKey: 'order.placed', schema: z.object({ orderId: z.string() }) });

/** The grants of the README's table, as pasted into `rabbitmqctl set_permissions`. */
const grants = {
  publisher: { configure: '^shop\\.orders$', write: '^shop\\.orders$', read: NOTHING },
  publisherNoDeclare: { configure: NOTHING, write: '^shop\\.orders$', read: NOTHING },
  consumer: {
    configure: '^(shop\\.orders|billing\\.orders(\\.dlq|\\.retry\\..+)?)$',
    write: '^(amq\\.default|billing\\.orders)$',
    read: '^(shop\\.orders|billing\\.orders(\\.retry\\..+)?)$',
  },
  consumerNoDeclare: { configure: NOTHING, write: '^amq\\.default$', read: '^billing\\.orders$' },
} satisfies Record<string, Grant>;

async function box(): Promise<Sandbox> {
  const b = await sandbox();
  onTestFinished(async () => {
    await closeClients();
    await b.remove();
  });
  return b;
}

async function client(url: string, options: Partial<ConnectOptions> = {}): Promise<Warren> {
  return trackClient(await connect({ urls: [url], name: 'perms-test', ...options }));
}

/** What the deploy step does: declare the topology and the consumers' wait queues, as an admin. */
async function deployStep(b: Sandbox, consumers: Parameters<Warren['declare']>[0] = [], t = topology): Promise<void> {
  const admin = await connect({ urls: [b.adminUrl], topology: t, name: 'perms-deploy' });
  await admin.declare(consumers);
  await admin.close();
}

async function messagesIn(b: Sandbox, queue: string): Promise<number> {
  return b.asAdmin(async (ch) => (await ch.checkQueue(queue)).messageCount);
}

/** A consumer with retry and a dead-letter queue: 'flaky' fails once, 'bad' is dead-lettered. */
function billing(handled: { id: string; attempt: number }[]) {
  return defineConsumer({
    name: 'billing',
    queue: 'billing.orders',
    message: OrderPlaced,
    retry: { maxAttempts: 3, delays: ['200ms'] },
    handle: (order, ctx) => {
      if (order.orderId === 'bad') throw new NonRetryableError('declined');
      if (order.orderId === 'flaky' && ctx.attempt === 1) throw new Error('try again');
      handled.push({ id: order.orderId, attempt: ctx.attempt });
    },
  });
}

/** Runs the consumer under `url`: ok is handled, flaky is retried once through the wait queue, bad reaches the DLQ. */
async function runConsumer(b: Sandbox, url: string, options: Partial<ConnectOptions> & { topology: ReturnType<typeof topologyOf> }): Promise<void> {
  const log = memoryLogger('warn');
  const handled: { id: string; attempt: number }[] = [];
  const service = await client(url, { logger: log.logger, ...options });
  await service.consume(billing(handled));
  const publisher = await client(b.adminUrl, { topology: options.topology });
  for (const orderId of ['ok', 'flaky', 'bad']) await publisher.publish(OrderPlaced, { orderId });
  await waitFor(() => handled.length === 2, 'ok handled, and flaky on its second attempt', { timeoutMs: 15_000 });
  expect(handled.sort((a, b2) => a.id.localeCompare(b2.id))).toEqual([
    { id: 'flaky', attempt: 2 },
    { id: 'ok', attempt: 1 },
  ]);
  await waitFor(async () => (await messagesIn(b, 'billing.orders.dlq')) === 1, 'bad in the dead-letter queue');
  expect(await messagesIn(b, 'billing.orders')).toBe(0);
  expect(service.health().ok).toBe(true);
  // Nothing went wrong along the way: no error was logged.
  expect(log.records().filter((r) => (r.level as number) >= 50)).toEqual([]);
}

describe('least privilege: the grants in the README are enough', () => {
  it('a publisher-only service that declares its exchange publishes with configure and write on it, and no read', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b); // the queue the messages go to: another team's
    const user = await b.user(grants.publisher);
    const service = await client(user.url, { topology: exchangeOnly, messages: [OrderPlaced] });
    await expect(service.publish(OrderPlaced, { orderId: 'o-1' })).resolves.toMatchObject({ messageId: expect.any(String) });
    expect(await messagesIn(b, 'billing.orders')).toBe(1);
  });

  it('a publisher-only service with declare: false publishes with write on its exchange alone', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b);
    const user = await b.user(grants.publisherNoDeclare);
    const service = await client(user.url, { topology, declare: false, messages: [OrderPlaced] });
    await service.publish(OrderPlaced, { orderId: 'o-1' });
    expect(await messagesIn(b, 'billing.orders')).toBe(1);
  });

  it.each(['classic', 'quorum'] as const)('a consumer-only service that declares its %s queue, dead-letter queue and wait queue runs with retry and dead-lettering', async (type) => {
    expect.hasAssertions();
    const b = await box();
    const user = await b.user(grants.consumer);
    await runConsumer(b, user.url, { topology: topologyOf(type) });
  });

  it.each(['classic', 'quorum'] as const)('a consumer-only service of a %s queue with declare: false runs with read on its queue and write on amq.default', async (type) => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b, [billing([])], topologyOf(type));
    const user = await b.user(grants.consumerNoDeclare);
    await runConsumer(b, user.url, { topology: topologyOf(type), declare: false });
  });

  it('managementUrl as the service user needs the management tag to name every difference of a mismatch; without it warren names the one in the broker\'s text', async () => {
    expect.hasAssertions();
    const b = await box();
    // Someone declared the queue otherwise: two arguments differ.
    await b.asAdmin((ch) => ch.assertQueue('billing.orders', { durable: true, arguments: { 'x-queue-type': 'classic', 'x-max-length': 10, 'x-message-ttl': 60_000 } }));
    const mismatch = async (tags: string) => {
      const user = await b.user(grants.consumer, tags);
      const err = await connect({ urls: [user.url], managementUrl: user.managementUrl, topology, initialConnectTimeout: 5000 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'TOPOLOGY_MISMATCH', entity: 'billing.orders' });
      return (err as { differences: { argument: string }[] }).differences.map((d) => d.argument).sort();
    };
    expect(await mismatch('management')).toEqual(['x-dead-letter-exchange', 'x-dead-letter-routing-key', 'x-max-length', 'x-message-ttl']);
    expect(await mismatch('')).toHaveLength(1);
  });
});

describe('least privilege: operators', () => {
  it('peeking at dead letters needs read on the .dlq alone; without it PERMISSION_REFUSED names read on it', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b);
    await b.asAdmin(async (ch) => {
      ch.sendToQueue('billing.orders.dlq', Buffer.from('{"orderId":"bad"}'), { contentType: 'application/json', messageId: 'm-1' });
      await ch.checkQueue('billing.orders.dlq');
    });
    const user = await b.user({ configure: NOTHING, write: NOTHING, read: '^billing\\.orders\\.dlq$' });
    const operator = await client(user.url, { topology, declare: false });
    expect((await operator.peekDeadLetters('billing.orders')).map((d) => d.messageId)).toEqual(['m-1']);
    await b.grant(user.name, { configure: NOTHING, write: NOTHING, read: NOTHING });
    const err = await operator.peekDeadLetters('billing.orders').catch((e: unknown) => e);
    expectRefused(err, { permission: 'read', resource: 'queue', entity: 'billing.orders.dlq', vhost: b.vhost });
    expect(await messagesIn(b, 'billing.orders.dlq')).toBe(1);
  });
});

describe('least privilege: the management API', () => {
  it('inspectBroker as a user tagged management shows its vhost with the alarms unknown; tagged monitoring, with the alarms; a wrong password says what 401 means', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b);
    const managed = await b.user(grants.consumerNoDeclare, 'management');
    const snapshot = await inspectBroker({ managementUrl: managed.managementUrl, vhost: b.vhost });
    expect(snapshot.queues.map((q) => q.name)).toContain('billing.orders');
    expect(snapshot.alarms).toBeUndefined();
    const monitor = await b.user(grants.consumerNoDeclare, 'monitoring');
    expect((await inspectBroker({ managementUrl: monitor.managementUrl, vhost: b.vhost })).alarms).toEqual([]);
    const wrong = new URL(managed.managementUrl);
    wrong.password = 'not-the-password';
    const err = await inspectBroker({ managementUrl: wrong.toString(), vhost: b.vhost }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MANAGEMENT_FAILED', status: 401 });
    expect((err as Error).message).toMatch(/user name or password is wrong, or the user has no management tag/);
    expect((err as Error).message).not.toContain('not-the-password');
  });
});

describe('declare: false', () => {
  it('declares nothing, and consume() names the deploy step when the queue or a wait queue was not declared beforehand', async () => {
    expect.hasAssertions();
    const b = await box();
    const user = await b.user(grants.consumerNoDeclare);
    const service = await client(user.url, { topology, declare: false });
    const noRetry = defineConsumer({ name: 'no-retry', queue: 'billing.orders', message: OrderPlaced, handle: () => undefined });
    const noQueue = await service.consume(noRetry).catch((e: unknown) => e);
    expect(noQueue).toMatchObject({ code: 'CONSUME_FAILED', queue: 'billing.orders' });
    expect((noQueue as Error).message).toContain('warren topology apply');
    await deployStep(b); // the topology, but not the consumer's wait queues
    const noWaitQueue = await service.consume(billing([])).catch((e: unknown) => e);
    expect(noWaitQueue).toMatchObject({ code: 'TOPOLOGY_FAILED' });
    expect((noWaitQueue as Error).message).toContain("Retry wait queue 'billing.orders.retry.200ms' of queue 'billing.orders' does not exist");
    expect((noWaitQueue as Error).message).toContain('warren topology apply');
  });
});

function expectRefused(err: unknown, expected: { permission: string; resource: string; entity: string; vhost: string }): PermissionError {
  expect(err).toBeInstanceOf(PermissionError);
  const e = err as PermissionError;
  expect(e).toMatchObject({ code: 'PERMISSION_REFUSED', ...expected });
  expect(e.message).toContain(`refused ${expected.permission}`);
  expect(e.message).toContain(`${expected.resource} '${expected.entity}' in vhost '${expected.vhost}'`);
  expect(e.message).toContain(`set_permissions -p '${expected.vhost}'`);
  return e;
}

describe('least privilege: a missing permission is named', () => {
  // Every part of the declaring consumer's grant is needed: take one name out of one regex, and
  // starting the consumer fails naming that permission and that entity (before 4.0 the broker
  // does not say which permission; then the one named and its alternatives include it).
  it.each([
    ['configure', 'exchange', 'shop.orders', { configure: '^billing\\.orders(\\.dlq|\\.retry\\..+)?$' }],
    ['configure', 'queue', 'billing.orders.dlq', { configure: '^(shop\\.orders|billing\\.orders(\\.retry\\..+)?)$' }],
    ['configure', 'queue', 'billing.orders.retry.200ms', { configure: '^(shop\\.orders|billing\\.orders(\\.dlq)?)$' }],
    ['write', 'exchange', 'amq.default', { write: '^billing\\.orders$' }],
    ['write', 'queue', 'billing.orders', { write: '^amq\\.default$' }],
    ['read', 'exchange', 'shop.orders', { read: '^billing\\.orders(\\.retry\\..+)?$' }],
    ['read', 'queue', 'billing.orders', { read: '^(shop\\.orders|billing\\.orders\\.retry\\..+)$' }],
    ['read', 'queue', 'billing.orders.retry.200ms', { read: '^(shop\\.orders|billing\\.orders)$' }],
  ] as const)('a declaring consumer without %s on %s %s fails naming it', async (permission, resource, entity, change) => {
    expect.hasAssertions();
    const b = await box();
    const user = await b.user({ ...grants.consumer, ...change });
    const err = await (async () => {
      const service = await client(user.url, { topology, initialConnectTimeout: 5000 });
      await service.consume(billing([]));
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionError);
    const e = err as PermissionError;
    expect(e).toMatchObject({ code: 'PERMISSION_REFUSED', resource, entity, vhost: b.vhost, user: user.name });
    expect([e.permission, ...e.alternatives]).toContain(permission);
    expect(e.message).toContain(`${resource} '${entity}' in vhost '${b.vhost}'`);
  });

  it('connect() without configure on an exchange it declares fails with PERMISSION_REFUSED naming configure and the exchange', async () => {
    expect.hasAssertions();
    const b = await box();
    const user = await b.user({ ...grants.publisher, configure: NOTHING });
    const started = Date.now();
    const err = await connect({ urls: [user.url], topology: exchangeOnly, initialConnectTimeout: 5000 }).catch((e: unknown) => e);
    // At once: retrying cannot help until someone grants it.
    expect(Date.now() - started).toBeLessThan(2000);
    const e = expectRefused(err, { permission: 'configure', resource: 'exchange', entity: 'shop.orders', vhost: b.vhost });
    expect(e.user).toBe(user.name);
    expect(e.message).toContain("declaring exchange 'shop.orders'");
  });

  it('publish() without write on the exchange rejects each publish with PERMISSION_REFUSED, and publishes once it is granted', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b);
    const user = await b.user({ ...grants.publisherNoDeclare, write: NOTHING });
    const service = await client(user.url, { declare: false, topology });
    for (const orderId of ['o-1', 'o-2']) {
      const err = await service.publish(OrderPlaced, { orderId }).catch((e: unknown) => e);
      expectRefused(err, { permission: 'write', resource: 'exchange', entity: 'shop.orders', vhost: b.vhost });
    }
    expect(service.health().publisher).toMatchObject({ failed: 2, inFlight: 0, buffered: 0 });
    await b.grant(user.name, grants.publisherNoDeclare);
    await service.publish(OrderPlaced, { orderId: 'o-3' });
    expect(await messagesIn(b, 'billing.orders')).toBe(1);
  });

  it('consume() without read on the queue fails with PERMISSION_REFUSED naming read and the queue', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b, [billing([])]);
    const user = await b.user({ ...grants.consumerNoDeclare, read: NOTHING });
    const service = await client(user.url, { topology, declare: false });
    const err = await service.consume(billing([])).catch((e: unknown) => e);
    const e = expectRefused(err, { permission: 'read', resource: 'queue', entity: 'billing.orders', vhost: b.vhost });
    expect(e.message).toContain("attaching consumer 'billing' to queue 'billing.orders'");
  });

  it('consume() that must declare a wait queue without write on amq.default fails naming write on amq.default (the default exchange)', async () => {
    expect.hasAssertions();
    const b = await box();
    const user = await b.user({ ...grants.consumer, write: '^billing\\.orders$' });
    // The topology is declared by the deploy step; the wait queue is new, and declaring it with a dead-letter exchange needs write on it.
    await deployStep(b);
    const service = await client(user.url, { topology });
    const err = await service.consume(billing([])).catch((e: unknown) => e);
    const e = expectRefused(err, { permission: 'write', resource: 'exchange', entity: 'amq.default', vhost: b.vhost });
    expect(e.message).toContain("declaring retry wait queue 'billing.orders.retry.200ms' with dead-letter exchange ''");
    expect(e.message).toContain('the default exchange');
  });

  it('a retry copy refused (no write on amq.default) is logged as an error naming the grant and the message is held, not looped, until it is granted', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b, [billing([])]);
    const user = await b.user({ ...grants.consumerNoDeclare, write: NOTHING });
    const log = memoryLogger('warn');
    const handled: { id: string; attempt: number }[] = [];
    let deliveries = 0;
    const consumer = billing(handled);
    const service = await client(user.url, { topology, declare: false, logger: log.logger });
    await service.consume({ ...consumer, handle: (order, ctx) => ((deliveries += 1), consumer.handle(order, ctx)) });
    const publisher = await client(b.adminUrl, { topology });
    await publisher.publish(OrderPlaced, { orderId: 'flaky' });
    await waitFor(() => log.records().some((r) => r.level === 50), 'the error about the refused copy');
    const refused = log.records().find((r) => r.level === 50) as { msg: string; err: { code: string; message: string } };
    expect(refused.msg).toBe('could not publish the retry copy; requeueing the message instead');
    expect(refused.err.code).toBe('PERMISSION_REFUSED');
    expect(refused.err.message).toContain(`refused write permission on exchange 'amq.default' in vhost '${b.vhost}'`);
    // Held 1 s before each requeue (doubling): no tight loop while the permission is missing.
    const before = deliveries;
    await new Promise((r) => setTimeout(r, 1500));
    expect(deliveries - before).toBeLessThanOrEqual(1);
    await b.grant(user.name, grants.consumerNoDeclare);
    await waitFor(() => handled.length === 1, 'the message handled once the grant is there', { timeoutMs: 15_000 });
    expect(handled[0]?.id).toBe('flaky');
  });

  it('a dead-letter copy refused (no write on amq.default) is rejected to the broker, which dead-letters it to the .dlq itself', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b, [billing([])]);
    const user = await b.user({ ...grants.consumerNoDeclare, write: NOTHING });
    const log = memoryLogger('warn');
    const service = await client(user.url, { topology, declare: false, logger: log.logger });
    await service.consume(billing([]));
    const publisher = await client(b.adminUrl, { topology });
    await publisher.publish(OrderPlaced, { orderId: 'bad' });
    await waitFor(async () => (await messagesIn(b, 'billing.orders.dlq')) === 1, 'bad in the dead-letter queue');
    expect(await messagesIn(b, 'billing.orders')).toBe(0);
    const refused = log.records().find((r) => r.level === 50) as { msg: string; err: { code: string; permission: string; entity: string } };
    expect(refused.msg).toBe('could not publish the dead letter; rejecting the message to the broker instead');
    expect(refused.err).toMatchObject({ code: 'PERMISSION_REFUSED', permission: 'write', entity: 'amq.default' });
  });

  it('a reconnect that can no longer declare the topology (configure revoked) emits the PermissionError and carries on consuming', async () => {
    expect.hasAssertions();
    const b = await box();
    const user = await b.user(grants.consumer);
    const log = memoryLogger('warn');
    const handled: { id: string; attempt: number }[] = [];
    const service = await client(user.url, { topology, logger: log.logger, name: `${b.vhost}.svc` });
    const errors: unknown[] = [];
    service.on('error', (err) => errors.push(err));
    await service.consume(billing(handled));
    await b.grant(user.name, { ...grants.consumer, configure: NOTHING });
    await waitFor(async () => (await management.closeConnectionsNamed(`${b.vhost}.svc:consume`)) > 0, 'the consume connection closed');
    await waitFor(() => errors.length > 0, "the 'error' event");
    expectRefused(errors[0], { permission: 'configure', resource: 'exchange', entity: 'shop.orders', vhost: b.vhost });
    await waitFor(() => service.health().consumers[0]?.attached === true, 're-attached to the queue that is there');
    const publisher = await client(b.adminUrl, { topology });
    await publisher.publish(OrderPlaced, { orderId: 'ok' });
    await waitFor(() => handled.length === 1, 'a message handled after the reconnect');
    expect(log.records().filter((r) => r.msg === 'topology assertion failed after reconnect; carrying on with what the broker has')).toHaveLength(1);
  });

  it('a consumer whose read is revoked while it runs stays detached with the reason, logs an error (not a storm), and re-attaches once it is granted again', async () => {
    expect.hasAssertions();
    const b = await box();
    await deployStep(b, [billing([])]);
    const user = await b.user(grants.consumerNoDeclare);
    const log = memoryLogger('debug');
    const service = await client(user.url, { topology, declare: false, logger: log.logger, name: `${b.vhost}.svc` });
    await service.consume(billing([]));
    await b.grant(user.name, { ...grants.consumerNoDeclare, read: NOTHING });
    // Revoking does not touch a running consumer; a reconnect (a broker restart, a network blip) makes it attach again.
    await waitFor(async () => (await management.closeConnectionsNamed(`${b.vhost}.svc:consume`)) > 0, 'the consume connection closed');
    await waitFor(() => service.health().consumers[0]?.reason?.includes('refused read permission on queue') === true, 'detached, saying why');
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const failures = log.records().filter((r) => r.msg === 'could not open the consumer channel: a permission is missing; retrying with backoff until it is granted');
    // Backoff from 100 ms doubling (full jitter): a handful of attempts in 3 s, not hundreds; one error line, the rest at debug.
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.length).toBeLessThanOrEqual(12);
    expect(failures.filter((r) => r.level === 50)).toHaveLength(1);
    expect((failures[0] as { err: { code: string } }).err.code).toBe('PERMISSION_REFUSED');
    expect(service.health()).toMatchObject({ ok: false, consumers: [{ attached: false }] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
    await b.grant(user.name, grants.consumerNoDeclare);
    // The next attempt comes when the current backoff delay ends: after 3 s of refusals that delay
    // may be as long as its 30 s cap (full jitter), so the grant is picked up within about 30 s.
    await waitFor(() => service.health().consumers[0]?.attached === true, 're-attached after the grant', { timeoutMs: 32_000 });
  }, 50_000);
});
