import { afterEach, describe, expect, it } from 'vitest';
import { connect, defineTopology, TopologyMismatchError, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, management, track, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';
import { closeClients, openClient } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

async function mismatch(topology: ReturnType<typeof defineTopology>, withManagement: boolean, name = uniqueName('svc')): Promise<TopologyMismatchError> {
  const started = Date.now();
  const err = await connect({
    urls: [brokerUrls().amqpUrl],
    topology,
    name,
    initialConnectTimeout: 20_000,
    ...(withManagement ? { managementUrl: brokerUrls().managementUrl } : {}),
  }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(TopologyMismatchError);
  expect((err as WarrenError).code).toBe('TOPOLOGY_MISMATCH');
  // Rejected at once: a mismatch is not retried in a reconnect loop.
  expect(Date.now() - started).toBeLessThan(3000);
  return err as TopologyMismatchError;
}

describe('defineTopology() on the broker', () => {
  it('declares exchanges of every type, classic/quorum/stream queues with their arguments, bindings and DLQs', async () => {
    expect.hasAssertions();
    const ex = Object.fromEntries((['direct', 'topic', 'fanout', 'headers'] as const).map((type) => [track.exchange(uniqueName(type)), { type }]));
    const [direct, topic, fanout, headers] = Object.keys(ex) as [string, string, string, string];
    const classic = track.queue(uniqueName('classic'));
    const quorum = track.queue(uniqueName('quorum'));
    const stream = track.queue(uniqueName('stream'));
    track.queue(`${classic}.dlq`);
    track.queue(`${quorum}.dlq`);
    await openClient({
      topology: defineTopology({
        exchanges: ex,
        queues: {
          [classic]: {
            maxLength: 1000,
            messageTtl: '10s',
            singleActiveConsumer: true,
            deadLetter: true,
            bindings: [
              { exchange: direct, routingKey: 'k' },
              { exchange: topic, routingKey: 'a.*' },
              { exchange: fanout },
              { exchange: headers, arguments: { 'x-match': 'all', kind: 'x' } },
            ],
          },
          [quorum]: { type: 'quorum', deliveryLimit: 5, deadLetter: true, bindings: [{ exchange: topic, routingKey: 'q.#' }] },
          [stream]: { type: 'stream', arguments: { 'x-max-age': '1h' } },
        },
      }),
    });
    for (const [name, def] of Object.entries(ex)) expect(await management.exchange(name)).toMatchObject({ type: def.type, durable: true });
    expect(await management.queue(classic)).toMatchObject({
      durable: true,
      arguments: {
        'x-max-length': 1000,
        'x-message-ttl': 10_000,
        'x-single-active-consumer': true,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': `${classic}.dlq`,
      },
    });
    expect(await management.queue(quorum)).toMatchObject({ type: 'quorum', arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 5 } });
    expect(await management.queue(`${quorum}.dlq`)).toMatchObject({ type: 'quorum' });
    expect(await management.queue(`${classic}.dlq`)).toMatchObject({ type: 'classic' });
    expect(await management.queue(stream)).toMatchObject({ type: 'stream' });
    const sources = (await management.bindings(classic)).map((b) => `${b.source}/${b.routing_key}`).sort();
    // The first is the default exchange's implicit binding by queue name.
    expect(sources).toEqual([`/${classic}`, `${direct}/k`, `${fanout}/`, `${headers}/`, `${topic}/a.*`].sort());
  });

  it('asserting the same topology again (a second service) is harmless', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    const topology = defineTopology({ queues: { [q]: { type: 'quorum', maxLength: 10 } } });
    await openClient({ topology });
    const second = await openClient({ topology });
    expect(second.health().ok).toBe(true);
  });

  it('names the queue and the differing argument on a mismatch — from the management API, or from the broker text', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    await withRawChannel(async (ch) => {
      await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 5 } });
    });
    const topology = defineTopology({ queues: { [q]: { maxLength: 10 } } });
    const name = uniqueName('svc');
    const withApi = await mismatch(topology, true, name);
    expect(withApi).toMatchObject({ kind: 'queue', entity: q });
    expect(withApi.differences).toEqual([{ argument: 'x-max-length', declared: 10, actual: 5 }]);
    const fromText = await mismatch(topology, false);
    expect(fromText.entity).toBe(q);
    expect(fromText.differences.map((d) => d.argument)).toEqual(['x-max-length']);
    // Nothing left connected behind the rejection.
    await waitFor(async () => (await management.connectionsNamed(`${name}:publish`)).length === 0, 'no leftover connection');
  });

  it('names the exchange and its type on an exchange mismatch', async () => {
    expect.hasAssertions();
    const e = track.exchange(uniqueName('ex'));
    await withRawChannel(async (ch) => {
      await ch.assertExchange(e, 'direct', { durable: true });
    });
    const err = await mismatch(defineTopology({ exchanges: { [e]: { type: 'topic' } } }), true);
    expect(err).toMatchObject({ kind: 'exchange', entity: e });
    expect(err.differences).toContainEqual({ argument: 'type', declared: 'topic', actual: 'direct' });
  });

  it('on reconnect, reports a mismatch through the error event and carries on instead of looping', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    const name = uniqueName('svc');
    const warren = await openClient({ topology: defineTopology({ queues: { [q]: { maxLength: 10 } } }), name, managementUrl: brokerUrls().managementUrl });
    const errors: WarrenError[] = [];
    let connects = 0;
    warren.on('error', (e) => errors.push(e));
    warren.on('connected', () => (connects += 1));
    // Someone re-creates the queue with other arguments behind warren's back.
    await withRawChannel(async (ch) => {
      await ch.deleteQueue(q);
      await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 99 } });
    });
    await waitFor(async () => (await management.closeConnectionsNamed(`${name}:publish`)) === 1, 'the connection to close');
    await waitFor(() => connects === 1, 'the reconnect');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'TOPOLOGY_MISMATCH', entity: q });
    expect(warren.state).toBe('open');
    // Stays connected: the same connection is still there a management round trip later.
    const [conn] = await waitFor(async () => {
      const c = await management.connectionsNamed(`${name}:publish`);
      return c.length === 1 ? c : undefined;
    }, 'the new connection');
    expect(connects).toBe(1);
    expect(conn).toBeDefined();
  });
});
