// README "What happens when things fail": the broker closes the connections mid-stream, the
// network is gone for a while, a delivery's channel closes under its handler, the broker cancels
// a consumer. No confirmed message may be lost, and everything must come back by itself.
import { afterEach, describe, expect, it } from 'vitest';
import { defineConsumer, PublishTimeoutError, type ConnectionRole, type ConsumerEvent, type ReconnectInfo, type WarrenError } from '../../src/index.js';
import { brokerUrls, cleanupTracked, drainQueue, management, memoryLogger, queueCounts, uniqueName, waitFor } from '../helpers/broker.js';
import { closeProxies, releaseProxies, testProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { closeClients, gate, openClient, pingSetup } from '../helpers/warren.js';

function proxy(): Promise<TcpProxy> {
  return testProxy(brokerUrls().amqpUrl);
}

afterEach(async () => {
  // Let traffic through first, so clients behind a paused or refusing proxy can close cleanly.
  releaseProxies();
  await closeClients();
  await closeProxies();
  await cleanupTracked();
});

/**
 * The management API lists a new connection only after its next statistics tick (up to ~5 s), so
 * look the connections up first and close them when the test says so. Connections closed before
 * are skipped: the API keeps listing them for a few seconds too.
 */
function connectionCloser(name: string, roles: readonly ConnectionRole[]) {
  const closed = new Set<string>();
  return {
    /** The management names of this client's current connections, one or more per role. */
    listed: (): Promise<string[]> =>
      waitFor(
        async () => {
          const perRole = await Promise.all(
            roles.map(async (role) => (await management.connectionsNamed(`${name}:${role}`)).filter((c) => !closed.has(c.name))),
          );
          return perRole.every((found) => found.length > 0) ? perRole.flat().map((c) => c.name) : undefined;
        },
        `the ${roles.join(' and ')} connections of ${name} in the management API`,
        { timeoutMs: 15_000, intervalMs: 100 },
      ),
    /** Force-closes them as an operator would; returns the HTTP statuses. */
    close: async (names: readonly string[]): Promise<number[]> => {
      const statuses: number[] = [];
      for (const n of names) {
        closed.add(n);
        statuses.push((await management.request('DELETE', `/api/connections/${encodeURIComponent(n)}`)).status);
      }
      return statuses;
    },
  };
}

type Outcome = { kind: 'confirmed' } | { kind: 'rejected'; code: string } | { kind: 'hung' };

/** Settles with what became of `p`, or 'hung' if it did not settle within `ms`. */
async function outcomeOf(p: Promise<unknown>, ms: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'hung' }), ms);
  });
  try {
    return await Promise.race([
      p.then(
        (): Outcome => ({ kind: 'confirmed' }),
        (e: unknown): Outcome => ({ kind: 'rejected', code: (e as WarrenError).code ?? String(e) }),
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('reconnect', () => {
  const N = 2000;
  const WINDOW = 100;
  const CLOSE_AT = [500, 1200] as const;
  // Before issuing this publish the producer waits until the reconnected connections are listed
  // by the management API, so the second close can happen at once when CLOSE_AT[1] is confirmed.
  const HOLD_AT = 1100;

  it.each(['classic', 'quorum'] as const)(
    'loses no confirmed message when the broker closes both connections twice mid-stream (%s queue)',
    async (type) => {
      expect.hasAssertions();
      const s = pingSetup({ type });
      const name = uniqueName('svc');
      const warren = await openClient({ topology: s.topology, name });
      const consumerEvents: ConsumerEvent['type'][] = [];
      const disconnects: { role: ConnectionRole; outstanding: number }[] = [];
      const consumed = new Map<string, number>();
      warren.on('consumer', (e) => consumerEvents.push(e.type));
      await warren.consume(
        defineConsumer({
          queue: s.queue,
          message: s.message,
          concurrency: 5,
          handle: (p) => void consumed.set(p.id, (consumed.get(p.id) ?? 0) + 1),
        }),
      );

      // The producer: N publishes, at most WINDOW outstanding, each with its own deadline.
      const published = new Set<string>();
      const confirmed = new Set<string>();
      const failed: { id: string; outcome: Outcome }[] = [];
      let issued = 0;
      let settled = 0;
      warren.on('disconnected', (e) => disconnects.push({ role: e.role, outstanding: issued - settled }));
      const milestones = new Map<number, () => void>();
      const reached = (count: number): Promise<void> => new Promise((resolve) => milestones.set(count, resolve));
      const hold = gate();
      const producer = async (): Promise<void> => {
        while (issued < N) {
          const i = issued;
          if (i === HOLD_AT) await hold.promise;
          if (issued !== i) continue; // another worker went past the hold first
          issued += 1;
          const id = `m-${i}`;
          published.add(id);
          const outcome = await outcomeOf(warren.publish(s.message, { id, n: i }), 20_000);
          settled += 1;
          if (outcome.kind === 'confirmed') {
            confirmed.add(id);
            milestones.get(confirmed.size)?.();
          } else {
            failed.push({ id, outcome });
          }
        }
      };

      const closer = connectionCloser(name, ['publish', 'consume']);
      const first = await closer.listed();
      const closedFirst = reached(CLOSE_AT[0]);
      const closedSecond = reached(CLOSE_AT[1]);
      const stream = Promise.all(Array.from({ length: WINDOW }, producer));

      await closedFirst;
      expect(await closer.close(first)).toEqual([204, 204]);
      const second = await closer.listed(); // the reconnected ones
      hold.open();
      await closedSecond;
      expect(await closer.close(second)).toEqual([204, 204]);
      await stream;

      expect(failed).toEqual([]); // none rejected, none hung
      expect(confirmed.size).toBe(N);
      // Both connections went down twice, each time with publishes outstanding.
      expect(disconnects.map((d) => d.role).sort()).toEqual(['consume', 'consume', 'publish', 'publish']);
      for (const d of disconnects.filter((x) => x.role === 'publish')) expect(d.outstanding).toBeGreaterThan(0);

      // On a timeout, the assertions below name the lost ids.
      await waitFor(() => [...confirmed].every((id) => consumed.has(id)), 'every confirmed message to be consumed', { timeoutMs: 15_000 }).catch(
        () => undefined,
      );
      const lost = [...confirmed].filter((id) => !consumed.has(id));
      const unknown = [...consumed.keys()].filter((id) => !published.has(id));
      const duplicates = [...consumed.values()].reduce((sum, n) => sum + n - 1, 0);
      console.log(
        `${type} queue: ${N} confirmed, ${consumed.size} consumed, ${duplicates} duplicate deliveries handled; ` +
          `publishes outstanding when the publish connection dropped: ${disconnects.filter((d) => d.role === 'publish').map((d) => d.outstanding).join(', ')}`,
      );
      expect(lost).toEqual([]);
      expect(unknown).toEqual([]);
      expect(duplicates).toBeLessThan(N);

      expect(consumerEvents).toEqual(['attached', 'detached', 'attached', 'detached', 'attached']);
      expect(warren.health()).toMatchObject({ ok: true, consumers: [{ queue: s.queue, attached: true }] });
      // Redeliveries of duplicates settle too; then nothing is left behind once the consumer stops.
      await waitFor(
        async () => (await queueCounts(s.queue)).messages === 0 && warren.health().consumers[0]?.inFlight === 0,
        'the queue to drain',
      );
      await warren.close();
      expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    },
    60_000,
  );

  it('publishes made while the broker is unreachable wait, then succeed once it is back', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({ urls: [p.url], topology: s.topology, reconnect: { initialDelay: 20, maxDelay: 100 } });
    const attempts: ReconnectInfo[] = [];
    warren.on('reconnecting', (info) => attempts.push(info));
    const lost = new Promise<void>((resolve) => warren.once('disconnected', () => resolve()));
    p.refusing = true;
    p.cut();
    await lost;
    expect(warren.state).toBe('connecting');

    let settledCount = 0;
    const pubs = Array.from({ length: 20 }, (_, n) =>
      warren.publish(s.message, { id: `w-${n}`, n }).finally(() => {
        settledCount += 1;
      }),
    );
    // Several reconnect attempts fail while the publishes are waiting: none is rejected or sent.
    const before = attempts.length;
    await waitFor(() => attempts.length >= before + 3, 'three more failed reconnect attempts');
    expect(settledCount).toBe(0);
    expect(attempts.every((a) => a.role === 'publish')).toBe(true);
    expect((await queueCounts(s.queue)).messages).toBe(0);

    p.refusing = false;
    const receipts = await Promise.all(pubs);
    expect(receipts).toHaveLength(20);
    expect(warren.health()).toMatchObject({ ok: true, connections: { publish: { state: 'open' } } });
    const arrived = (await drainQueue(s.queue)).map((m) => (JSON.parse(m.content.toString()) as { id: string }).id);
    expect(arrived.sort()).toEqual(pubs.map((_, n) => `w-${n}`).sort());
  });

  it('a publish waiting while the broker is unreachable rejects with PUBLISH_TIMEOUT (sent: false) after publisher.timeout and is never sent', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const p = await proxy();
    const warren = await openClient({
      urls: [p.url],
      topology: s.topology,
      reconnect: { initialDelay: 20, maxDelay: 100 },
      publisher: { timeout: 500 },
    });
    const lost = new Promise<void>((resolve) => warren.once('disconnected', () => resolve()));
    p.refusing = true;
    p.cut();
    await lost;

    const started = Date.now();
    const err = await warren.publish(s.message, { id: 'too-late', n: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PublishTimeoutError);
    expect(err).toMatchObject({ code: 'PUBLISH_TIMEOUT', sent: false });
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);

    p.refusing = false;
    await waitFor(() => warren.state === 'open', 'the publish connection to come back');
    await warren.publish(s.message, { id: 'after', n: 1 });
    const arrived = (await drainQueue(s.queue)).map((m) => (JSON.parse(m.content.toString()) as { id: string }).id);
    expect(arrived).toEqual(['after']);
  });

  it('never acks a delivery from a closed channel on the new one: the broker redelivers it and the consumer stays attached', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const name = uniqueName('svc');
    const log = memoryLogger();
    const warren = await openClient({ topology: s.topology, name, logger: log.logger });
    const events: ConsumerEvent[] = [];
    warren.on('consumer', (e) => events.push(e));
    const release = gate();
    const calls: { id: string; redelivered: boolean }[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: async (p, ctx) => {
          calls.push({ id: p.id, redelivered: ctx.redelivered });
          if (calls.length === 1) await release.promise;
        },
      }),
    );
    const closer = connectionCloser(name, ['consume']);
    const consumeConnection = await closer.listed();

    const { messageId } = await warren.publish(s.message, { id: 'a', n: 1 });
    await waitFor(() => calls.length === 1, 'the handler to hold the message');
    expect(await closer.close(consumeConnection)).toEqual([204]);
    await waitFor(() => events.filter((e) => e.type === 'attached').length === 2, 'the consumer to re-attach');
    release.open(); // the first handler finishes now, after its channel is gone

    await waitFor(() => calls.length === 2 && warren.health().consumers[0]?.inFlight === 0, 'the redelivery to be handled');
    expect(calls).toEqual([
      { id: 'a', redelivered: false },
      { id: 'a', redelivered: true },
    ]);
    // The subscription is intact: a later message is handled on it, and nothing detached it
    // (acking the old tag on the new channel would close it with 406 PRECONDITION_FAILED).
    await warren.publish(s.message, { id: 'b', n: 2 });
    await waitFor(() => calls.length === 3 && warren.health().consumers[0]?.inFlight === 0, 'the next message to be handled');
    expect(calls[2]).toEqual({ id: 'b', redelivered: false });
    await waitFor(async () => (await queueCounts(s.queue)).messages === 0, 'the queue to drain');
    const reattached = events[2];
    expect(events.map((e) => e.type)).toEqual(['attached', 'detached', 'attached']);
    expect(warren.health()).toMatchObject({ ok: true, consumers: [{ attached: true, consumerTag: reattached?.type === 'attached' ? reattached.consumerTag : 'none' }] });
    // README: "it logs a debug line and lets the broker redeliver".
    expect(log.records().some((r) => r['level'] === 20 && r['component'] === 'consumer' && r['messageId'] === messageId)).toBe(true);

    await warren.close();
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });

  it('re-declares a deleted queue with its bindings and re-attaches when the broker cancels the consumer', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const events: ConsumerEvent['type'][] = [];
    warren.on('consumer', (e) => events.push(e.type));
    const handled: string[] = [];
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: (p) => void handled.push(p.id) }));

    const res = await management.request('DELETE', `/api/queues/%2F/${encodeURIComponent(s.queue)}`);
    expect(res.status).toBe(204);
    await waitFor(() => events.includes('cancelled') && events.at(-1) === 'attached', 'the consumer to be cancelled and re-attach');
    expect(events).toEqual(['attached', 'detached', 'cancelled', 'attached']);
    expect(warren.health()).toMatchObject({ ok: true, consumers: [{ queue: s.queue, attached: true }] });
    expect((await queueCounts(s.queue)).consumers).toBe(1);
    expect(await management.bindings(s.queue)).toContainEqual(expect.objectContaining({ source: s.exchange, routing_key: 'ping.#' }));

    // Through the exchange, so the binding is really back.
    await warren.publish(s.message, { id: 'after', n: 1 });
    await waitFor(() => handled.includes('after'), 'the message published after the re-attach to be handled');
    expect(handled).toEqual(['after']);
  });
});
