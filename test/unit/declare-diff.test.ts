import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Channel, ConfirmChannel, Link, Transport } from '../../src/amqp/transport.js';
import { connect } from '../../src/index.js';
import { defineTopology } from '../../src/define/topology.js';
import { TopologyError, TopologyMismatchError } from '../../src/support/errors.js';
import { assertTopology } from '../../src/topology/apply.js';
import { diff } from '../../src/topology/diff.js';
import type { ManagedEntity } from '../../src/topology/management.js';

/** A queue as RabbitMQ 3.10's management API returns it (GET /api/queues/:vhost/:name), trimmed. */
function apiQueue(overrides: Partial<ManagedEntity>): ManagedEntity {
  const queue = {
    name: 'billing.orders',
    vhost: '/',
    type: 'quorum',
    node: 'rabbit@host',
    state: 'running',
    messages: 3,
    consumers: 1,
    policy: null,
    durable: true,
    auto_delete: false,
    exclusive: false,
    arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing.orders.dlq' },
  };
  return { ...queue, ...overrides };
}

const declaredQueue: ManagedEntity = {
  durable: true,
  auto_delete: false,
  exclusive: false,
  arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'billing.orders.dlq' },
};

describe('topology mismatch diff (declared vs management API)', () => {
  it('finds nothing when they agree, ignoring the fields warren does not declare', () => {
    expect(diff(declaredQueue, apiQueue({}))).toEqual([]);
  });

  it('names each queue flag that differs, by its option name', () => {
    expect(diff(declaredQueue, apiQueue({ durable: false, auto_delete: true, exclusive: true }))).toEqual([
      { argument: 'durable', declared: true, actual: false },
      { argument: 'autoDelete', declared: false, actual: true },
      { argument: 'exclusive', declared: false, actual: true },
    ]);
  });

  it('names an argument that differs in value, and one present on one side only', () => {
    const actual = apiQueue({ arguments: { 'x-queue-type': 'classic', 'x-dead-letter-exchange': '', 'x-max-length': 10 } });
    expect(diff(declaredQueue, actual)).toEqual([
      { argument: 'x-queue-type', declared: 'quorum', actual: 'classic' },
      { argument: 'x-dead-letter-routing-key', declared: 'billing.orders.dlq', actual: undefined },
      { argument: 'x-max-length', declared: undefined, actual: 10 },
    ]);
  });

  it('compares argument values by content: equal arrays and objects match, a number does not match its string', () => {
    const declared: ManagedEntity = { durable: true, arguments: { 'x-list': [1, 2], 'x-obj': { a: 1 }, 'x-message-ttl': 1_000 } };
    expect(diff(declared, { durable: true, arguments: { 'x-list': [1, 2], 'x-obj': { a: 1 }, 'x-message-ttl': 1_000 } })).toEqual([]);
    expect(diff(declared, { durable: true, arguments: { 'x-list': [1, 2], 'x-obj': { a: 1 }, 'x-message-ttl': '1000' } })).toEqual([
      { argument: 'x-message-ttl', declared: 1_000, actual: '1000' },
    ]);
  });

  it('names a differing exchange type and internal flag, and treats missing arguments as none', () => {
    const declared: ManagedEntity = { type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} };
    const actual = { name: 'orders', vhost: '/', type: 'direct', durable: true, auto_delete: false, internal: true, user_who_performed_action: 'guest' };
    expect(diff(declared, actual)).toEqual([
      { argument: 'type', declared: 'topic', actual: 'direct' },
      { argument: 'internal', declared: false, actual: true },
    ]);
    expect(diff(declared, { ...actual, type: 'topic', internal: false, arguments: { 'alternate-exchange': 'ae' } })).toEqual([
      { argument: 'alternate-exchange', declared: undefined, actual: 'ae' },
    ]);
  });
});

describe('assertTopology: a queue type the broker does not offer', () => {
  it('is a TopologyError that names the queue and the type and says what to do, not a mismatch', async () => {
    expect.hasAssertions();
    // RabbitMQ's own refusal (4.0.5 and 3.10 word it the same), for a queue type it does not offer.
    const refusal = Object.assign(
      new Error(
        `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'events' in vhost '/': "unsupported queue type 'stream'""`,
      ),
      { code: 406 },
    );
    const channel = new EventEmitter() as EventEmitter & Partial<Channel>;
    channel.assertQueue = () => Promise.reject(refusal);
    channel.close = () => Promise.resolve();
    const link = { createChannel: () => Promise.resolve(channel as unknown as Channel) } as unknown as Link;
    const topology = defineTopology({ queues: { events: { type: 'stream' } } });
    const err = await assertTopology(link, { topology, vhost: '/', management: undefined, log: pino({ level: 'silent' }) }, { exclusiveQueues: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TopologyError);
    expect(err).not.toBeInstanceOf(TopologyMismatchError);
    expect((err as TopologyError).code).toBe('TOPOLOGY_FAILED');
    expect((err as Error).message).toMatch(/queue 'events'.*does not offer queue type 'stream'.*Enable it on the broker/s);
  });
});

describe('TopologyMismatchError message', () => {
  it('says "none" for an argument the broker does not have and "not declared" for one warren did not send, never "undefined"', () => {
    const err = new TopologyMismatchError([
      {
        kind: 'queue',
        entity: 'billing.orders',
        brokerMessage: '',
        differences: [
          { argument: 'x-max-length', declared: 10, actual: undefined },
          { argument: 'x-message-ttl', declared: undefined, actual: 60_000 },
        ],
      },
    ]);
    expect(err.message).toContain('x-max-length: declared 10, broker has none');
    expect(err.message).toContain('x-message-ttl: not declared, broker has 60000');
    expect(err.message).not.toContain('undefined');
  });
});

describe('connect(): the broker closes the connection while the topology is declared', () => {
  it("says the broker's reason (a 541 for a deprecated feature), not only the declaration's 'Channel ended'", async () => {
    expect.hasAssertions();
    // As amqplib does on the broker's connection.close: the link's 'close' (with the broker's
    // error) first, in the same turn, then the rejection of the call it ended.
    const refusal = Object.assign(
      new Error('Connection closed: 541 (INTERNAL-ERROR) with message "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated."'),
      { code: 541 },
    );
    const link = new EventEmitter() as EventEmitter & Partial<Link>;
    const channel = (): Channel => {
      const ch = new EventEmitter() as EventEmitter & Partial<Channel>;
      ch.assertExchange = () => Promise.resolve();
      ch.bindQueue = () => Promise.resolve();
      ch.assertQueue = () => {
        link.emit('close', refusal);
        return Promise.reject(new Error('Channel ended, no reply will be forthcoming'));
      };
      ch.close = () => Promise.resolve();
      return ch as unknown as Channel;
    };
    link.createChannel = () => Promise.resolve(channel());
    link.createConfirmChannel = () => Promise.resolve(channel() as ConfirmChannel);
    link.close = () => Promise.resolve();
    const transport: Transport = { name: 'fake', connect: () => Promise.resolve(link as unknown as Link) };
    const topology = defineTopology({ queues: { 'billing.orders': {} } });
    const err = await connect({ urls: ['amqp://localhost'], transport, topology, initialConnectTimeout: '2s' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TopologyError);
    expect((err as Error).message).toMatch(/Declaring queue 'billing\.orders' failed.*Channel ended.*The broker closed the connection: .*transient_nonexcl_queues` is deprecated/s);
  });
});
