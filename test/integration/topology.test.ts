import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { connect, defineConsumer, defineMessage, defineTopology, TopologyMismatchError, type Topology, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, management, memoryLogger, track, uniqueName, waitFor, withRawChannel } from '../helpers/broker.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { closeClients, openClient } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

/**
 * connect() with a topology the broker contradicts: expects a TopologyMismatchError, at once (a
 * mismatch is not retried until initialConnectTimeout), and no connection left open behind it.
 * It connects through a TCP proxy whose open-connection count is exact and immediate (the
 * management API lists a connection only seconds after it opened).
 */
async function expectMismatch(topology: Topology, { withManagement }: { withManagement: boolean }): Promise<TopologyMismatchError> {
  const proxy = await startTcpProxy(brokerUrls().amqpUrl);
  try {
    const started = Date.now();
    const err = await connect({
      urls: [proxy.url],
      topology,
      name: uniqueName('svc'),
      initialConnectTimeout: 20_000,
      ...(withManagement ? { managementUrl: brokerUrls().managementUrl } : {}),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TopologyMismatchError);
    expect((err as WarrenError).code).toBe('TOPOLOGY_MISMATCH');
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => proxy.connections === 0, 'no connection left open');
    return err as TopologyMismatchError;
  } finally {
    await proxy.close();
  }
}

describe('defineTopology() on the broker', () => {
  it('declares exchanges of every type, classic/quorum/stream queues with their arguments, bindings and .dlq queues', async () => {
    expect.hasAssertions();
    const direct = track.exchange(uniqueName('direct'));
    const topic = track.exchange(uniqueName('topic'));
    const fanout = track.exchange(uniqueName('fanout'));
    const headers = track.exchange(uniqueName('headers'));
    const classic = track.queue(uniqueName('classic'));
    const quorum = track.queue(uniqueName('quorum'));
    const stream = track.queue(uniqueName('stream'));
    track.queue(`${classic}.dlq`);
    track.queue(`${quorum}.dlq`);
    await openClient({
      topology: defineTopology({
        exchanges: {
          [direct]: { type: 'direct', durable: false },
          [topic]: { type: 'topic', alternateExchange: fanout },
          [fanout]: { type: 'fanout' },
          [headers]: { type: 'headers' },
        },
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
    expect(await management.exchange(direct)).toMatchObject({ type: 'direct', durable: false });
    expect(await management.exchange(topic)).toMatchObject({ type: 'topic', durable: true, arguments: { 'alternate-exchange': fanout } });
    expect(await management.exchange(fanout)).toMatchObject({ type: 'fanout', durable: true });
    expect(await management.exchange(headers)).toMatchObject({ type: 'headers', durable: true });

    expect(await management.queue(classic)).toMatchObject({
      type: 'classic',
      durable: true,
      arguments: {
        'x-max-length': 1000,
        'x-message-ttl': 10_000,
        'x-single-active-consumer': true,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': `${classic}.dlq`,
      },
    });
    expect(await management.queue(`${classic}.dlq`)).toMatchObject({ type: 'classic', durable: true });
    expect(await management.queue(quorum)).toMatchObject({
      type: 'quorum',
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 5, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': `${quorum}.dlq` },
    });
    expect(await management.queue(`${quorum}.dlq`)).toMatchObject({ type: 'quorum', durable: true });
    expect(await management.queue(stream)).toMatchObject({ type: 'stream', durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '1h' } });

    const bindingsOf = async (q: string) => (await management.bindings(q)).map((b) => `${b.source}/${b.routing_key}`).sort();
    // '' is the default exchange's implicit binding by queue name.
    expect(await bindingsOf(classic)).toEqual([`/${classic}`, `${direct}/k`, `${fanout}/`, `${headers}/`, `${topic}/a.*`].sort());
    expect(await bindingsOf(quorum)).toEqual([`/${quorum}`, `${topic}/q.#`].sort());
  });

  it('asserting the same topology again (a second service) is harmless', async () => {
    expect.hasAssertions();
    const ex = track.exchange(uniqueName('ex'));
    const q = track.queue(uniqueName('q'));
    track.queue(`${q}.dlq`);
    const topology = defineTopology({
      exchanges: { [ex]: { type: 'topic' } },
      queues: { [q]: { type: 'quorum', maxLength: 10, messageTtl: '10s', deadLetter: true, bindings: [{ exchange: ex, routingKey: '#' }] } },
    });
    const first = await openClient({ topology });
    const second = await openClient({ topology, managementUrl: brokerUrls().managementUrl });
    expect(first.health().ok).toBe(true);
    expect(second.health().ok).toBe(true);
  });

  it('rejects a queue declared with other arguments, naming it and the argument — from the management API, or from the broker text', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    await withRawChannel(async (ch) => {
      await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 5 } });
    });
    const topology = defineTopology({ queues: { [q]: { maxLength: 10 } } });

    const withApi = await expectMismatch(topology, { withManagement: true });
    expect(withApi).toMatchObject({ kind: 'queue', entity: q });
    expect(withApi.differences).toEqual([{ argument: 'x-max-length', declared: 10, actual: 5 }]);

    const fromText = await expectMismatch(topology, { withManagement: false });
    expect(fromText).toMatchObject({ kind: 'queue', entity: q });
    expect(fromText.differences).toEqual([expect.objectContaining({ argument: 'x-max-length', declared: 10 })]);

    // warren never changes an existing entity.
    expect((await management.queue(q))?.arguments).toMatchObject({ 'x-max-length': 5 }); // (4.x also lists x-queue-type)
  });

  it('reports every mismatching entity at once, the queue the user declared before the .dlq warren generates for it', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    track.queue(`${q}.dlq`);
    const e = track.exchange(uniqueName('ex'));
    // Yesterday's deployment: a classic queue with its classic .dlq, and a direct exchange.
    const before = defineTopology({ exchanges: { [e]: { type: 'direct' } }, queues: { [q]: { deadLetter: true, bindings: [{ exchange: e }] } } });
    const first = await openClient({ topology: before });
    await first.close();
    // Today's: the queue became a quorum queue (so its .dlq would be one too), the exchange a topic one.
    const after = defineTopology({ exchanges: { [e]: { type: 'topic' } }, queues: { [q]: { type: 'quorum', deadLetter: true, bindings: [{ exchange: e }] } } });
    const err = await expectMismatch(after, { withManagement: true });
    expect(err.mismatches.map((m) => m.entity)).toEqual([e, q, `${q}.dlq`]);
    expect(err).toMatchObject({ kind: 'exchange', entity: e });
    expect(err.mismatches[1]?.differences).toContainEqual({ argument: 'x-queue-type', declared: 'quorum', actual: 'classic' });
    // Only real differences: a default the broker fills in (4.x lists x-queue-type: classic on every classic queue) is none.
    for (const m of err.mismatches) for (const d of m.differences) expect(d.declared).not.toBeUndefined();
    expect(err.message).toMatch(new RegExp(`3 queues or exchanges exist on the broker with other properties than declared: the exchange '${e}'.*the queue '${q}'.*the queue '${q}\\.dlq'`));
  });

  it('finds no difference in a classic queue declared before warren sent x-queue-type', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    await withRawChannel(async (ch) => void (await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 5 } })));
    const err = await expectMismatch(defineTopology({ queues: { [q]: { maxLength: 6 } } }), { withManagement: true });
    expect(err.differences).toEqual([{ argument: 'x-max-length', declared: 6, actual: 5 }]);
    const fine = await openClient({ topology: defineTopology({ queues: { [q]: { maxLength: 5 } } }) });
    expect(fine.health().ok).toBe(true);
  });

  it('refuses a retry wait queue that would not route retries back (no dead-letter route), or that it cannot check: nothing retried into it is lost', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    const wait = track.queue(`${q}.retry.100ms`);
    // Made by hand: it waits, then drops what waited.
    await withRawChannel((ch) => ch.assertQueue(wait, { durable: true, arguments: { 'x-message-ttl': 300, 'x-max-length': 1000 } }));
    const Ping = defineMessage({ name: 'ping', exchange: '', routingKey: q, schema: z.object({ n: z.number() }) });
    const consumer = defineConsumer({ queue: q, message: Ping, retry: { maxAttempts: 2, delays: ['100ms'] }, handle: () => undefined });
    const topology = defineTopology({ queues: { [q]: {} } });
    for (const managementUrl of [brokerUrls().managementUrl, undefined]) {
      const warren = await openClient({ topology, ...(managementUrl !== undefined ? { managementUrl } : {}) });
      const err = await warren.consume(consumer).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(TopologyMismatchError);
      expect((err as TopologyMismatchError).entity).toBe(wait);
      await warren.close();
    }
  });

  it('keeps working with a .dlq and a retry wait queue an earlier warren declared differently, and says how to bring them up to date', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    track.queue(`${q}.dlq`);
    const wait = track.queue(`${q}.retry.100ms`);
    // As warren 0.1.0 declared them: a quorum .dlq without a delivery limit, a classic wait queue.
    await withRawChannel(async (ch) => {
      await ch.assertQueue(`${q}.dlq`, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await ch.assertQueue(wait, { durable: true, arguments: { 'x-message-ttl': 100, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': q } });
    });
    const log = memoryLogger('warn');
    const Ping = defineMessage({ name: 'ping', exchange: '', routingKey: q, schema: z.object({ n: z.number() }) });
    // The management API shows warren that the old wait queue still routes back to its queue.
    const warren = await openClient({ topology: defineTopology({ queues: { [q]: { type: 'quorum', deadLetter: true } } }), logger: log.logger, managementUrl: brokerUrls().managementUrl });
    const attempts: number[] = [];
    await warren.consume(
      defineConsumer({
        queue: q,
        message: Ping,
        retry: { maxAttempts: 2, delays: ['100ms'] },
        handle: (_p, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) throw new Error('once');
        },
      }),
    );
    await warren.publish(Ping, { n: 1 });
    await waitFor(() => attempts.length === 2, 'the retry through the old wait queue');
    const warnings = log.records().map((r) => String(r['msg']));
    expect(warnings).toContainEqual(expect.stringContaining('declared by an earlier warren without x-delivery-limit'));
    expect(warnings).toContainEqual(expect.stringContaining('this retry wait queue exists with other arguments'));
    expect((await management.queue(wait))?.type).toBe('classic'); // never changed by warren
  });

  it('rejects an exchange declared with another type, naming it and the type', async () => {
    expect.hasAssertions();
    const e = track.exchange(uniqueName('ex'));
    await withRawChannel(async (ch) => {
      await ch.assertExchange(e, 'direct', { durable: true });
    });
    const err = await expectMismatch(defineTopology({ exchanges: { [e]: { type: 'topic' } } }), { withManagement: true });
    expect(err).toMatchObject({ kind: 'exchange', entity: e });
    expect(err.differences).toContainEqual({ argument: 'type', declared: 'topic', actual: 'direct' });
    expect(await management.exchange(e)).toMatchObject({ type: 'direct' });
  });

  it('on reconnect, reports a mismatch once through the error event and carries on with the queue as the broker has it', async () => {
    expect.hasAssertions();
    const q = track.queue(uniqueName('q'));
    const name = uniqueName('svc');
    const warren = await openClient({ topology: defineTopology({ queues: { [q]: { maxLength: 10 } } }), name, managementUrl: brokerUrls().managementUrl });
    const toQueue = defineMessage({ name: 'direct', exchange: '', routingKey: q, schema: z.object({ n: z.number() }) });
    const errors: WarrenError[] = [];
    let connected = 0;
    let reconnecting = 0;
    warren.on('error', (e) => errors.push(e));
    warren.on('connected', () => (connected += 1));
    warren.on('reconnecting', () => (reconnecting += 1));
    // Someone re-creates the queue with other arguments behind warren's back.
    await withRawChannel(async (ch) => {
      await ch.deleteQueue(q);
      await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 99 } });
    });
    await waitFor(async () => (await management.closeConnectionsNamed(`${name}:publish`)) === 1, 'the connection to be closed by the broker', {
      intervalMs: 200,
    });
    await waitFor(() => connected === 1, 'the reconnect');
    expect(errors).toEqual([expect.any(TopologyMismatchError)]);
    expect(errors[0]).toMatchObject({ code: 'TOPOLOGY_MISMATCH', kind: 'queue', entity: q, differences: [{ argument: 'x-max-length', declared: 10, actual: 99 }] });
    expect(warren.state).toBe('open');
    // Usable on the broker's queue: a publish is confirmed and lands there.
    await expect(warren.publish(toQueue, { n: 1 })).resolves.toHaveProperty('messageId');
    expect((await management.queue(q))?.arguments).toMatchObject({ 'x-max-length': 99 });
    // No reconnect loop: one reconnect, no failed attempts, one error.
    expect({ connected, reconnecting, errors: errors.length, state: warren.state }).toEqual({ connected: 1, reconnecting: 0, errors: 1, state: 'open' });
  });

  it('on reconnect, a mismatched queue does not keep the rest of the topology from being declared', async () => {
    expect.hasAssertions();
    const drifted = track.queue(uniqueName('a'));
    const deleted = track.queue(uniqueName('b'));
    const proxy = await startTcpProxy(brokerUrls().amqpUrl);
    // `drifted` comes first in the topology, so it is asserted before `deleted`.
    const warren = await openClient({ urls: [proxy.url], topology: defineTopology({ queues: { [drifted]: { maxLength: 10 }, [deleted]: {} } }) });
    try {
      const errors: WarrenError[] = [];
      let connected = 0;
      warren.on('error', (e) => errors.push(e));
      warren.on('connected', () => (connected += 1));
      await withRawChannel(async (ch) => {
        await ch.deleteQueue(drifted);
        await ch.assertQueue(drifted, { durable: true, arguments: { 'x-max-length': 99 } });
        await ch.deleteQueue(deleted);
      });
      proxy.cut();
      await waitFor(() => connected === 1, 'the reconnect');
      expect(errors).toEqual([expect.objectContaining({ code: 'TOPOLOGY_MISMATCH', entity: drifted })]);
      // "The topology is asserted on every (re)connect": the queue that was deleted is back.
      expect(await management.queue(deleted)).toBeDefined();
    } finally {
      // Closed while the proxy still forwards: a connection that drops during close() is another test's subject.
      await warren.close();
      await proxy.close();
    }
  });
});
