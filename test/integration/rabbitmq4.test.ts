// What changes on RabbitMQ 4.x, checked on the broker the run uses (3.10 by default; .ci/run runs
// this file on a 4.0 node too, configured to refuse what 4.3 refuses): each test asserts what
// that broker decides, so it passes on both for the right reason.
import { afterEach, describe, expect, it } from 'vitest';
import { defineConsumer, defineTopology } from '../../src/index.js';
import { cleanupTracked, management, memoryLogger, queueCounts, track, uniqueName, waitFor } from '../helpers/broker.js';
import { closeClients, gate, openClient, pingSetup } from '../helpers/warren.js';

const overview = await management.json<{ rabbitmq_version: string }>('/api/overview');
const version = overview?.rabbitmq_version ?? 'unknown';
const major = Number.parseInt(version, 10);
if (!(major >= 3)) throw new Error(`could not read the broker's version from the management API (rabbitmq_version: ${version})`);

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

interface ManagementChannel {
  connection_details: { name: string };
  prefetch_count: number;
  global_prefetch_count?: number;
}

describe('quorum queues and the delivery limit', () => {
  it('a message its handler keeps requeueing: RabbitMQ 4.x dead-letters it after 20 returns (peek says delivery_limit); 3.x has no limit', async () => {
    expect.hasAssertions();
    const s = pingSetup({ type: 'quorum', deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    let deliveries = 0;
    const counts: (number | undefined)[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        onError: 'requeue',
        handle: (_p, ctx) => {
          deliveries += 1;
          counts.push(ctx.deliveryCount);
          // On 3.x there is no limit: stop the loop after 25 deliveries (past 4.x's 20).
          if (major < 4 && deliveries >= 25) return;
          throw new Error('not yet');
        },
      }),
    );
    await warren.publish(s.message, { id: 'loop', n: 1 });
    if (major >= 4) {
      await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the message in the dead-letter queue');
      expect(deliveries).toBe(21); // the first delivery and 20 returns
      expect(counts.at(-1)).toBe(20);
      const [dead] = await warren.peekDeadLetters(s.queue);
      expect(dead).toMatchObject({ reason: 'delivery_limit', body: { id: 'loop', n: 1 } });
    } else {
      await waitFor(() => deliveries >= 25, '25 deliveries');
      await waitFor(async () => (await queueCounts(s.queue)).messages === 0, 'the queue to be empty');
      expect(await queueCounts(s.dlq)).toMatchObject({ messages: 0 });
    }
  });

  it('a quorum queue with nowhere to dead-letter: warren warns once at connect on RabbitMQ 4.x, naming it; not on 3.x', async () => {
    expect.hasAssertions();
    const [bare, kept, limited] = [uniqueName('bare'), uniqueName('kept'), uniqueName('limited')].map((q) => track.queue(q)) as [string, string, string];
    track.queue(`${kept}.dlq`);
    const topology = defineTopology({
      queues: { [bare]: { type: 'quorum' }, [kept]: { type: 'quorum', deadLetter: true }, [limited]: { type: 'quorum', deliveryLimit: 5 } },
    });
    const { logger, records } = memoryLogger('warn');
    const warren = await openClient({ topology, logger });
    await warren.declare(); // a second declaration: still one warning
    const warnings = records().filter((r) => typeof r['msg'] === 'string' && (r['msg']).includes('returned 20 times'));
    if (major >= 4) {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ queue: bare, broker: version });
      expect(warnings[0]?.['msg']).toMatch(/deadLetter: true/);
    } else {
      expect(warnings).toEqual([]);
    }
  });
});

describe('consumer timeout', () => {
  // 3.10 has only the node-wide consumer_timeout (30 min), which a test must not change on the
  // shared broker; 4.x honours a per-queue x-consumer-timeout, checked on the channel's tick (≈ 60 s).
  // Skipped (and listed as skipped, with this broker's version) on 3.x.
  it.skipIf(major < 4)(
    `a handler that holds a delivery past it: warren logs why, re-attaches, and the redelivered message is handled (RabbitMQ 4.x only; this broker: ${version})`,
    async () => {
      expect.hasAssertions();
      const s = pingSetup({ arguments: { 'x-consumer-timeout': 1000 } });
      const { logger, records } = memoryLogger('warn');
      const warren = await openClient({ topology: s.topology, logger });
      const events: string[] = [];
      warren.on('consumer', (e) => events.push(e.type));
      const held = gate();
      const seen: boolean[] = [];
      await warren.consume(
        defineConsumer({
          queue: s.queue,
          message: s.message,
          concurrency: 2,
          prefetch: 2,
          handle: async (_p, ctx) => {
            seen.push(ctx.redelivered);
            if (!ctx.redelivered) await held.promise; // held well past the 1 s timeout
          },
        }),
      );
      const { messageId } = await warren.publish(s.message, { id: 'slow', n: 1 });
      await waitFor(() => seen.length === 2, 'the redelivery after the consumer timeout', { timeoutMs: 90_000, intervalMs: 200 });
      held.open();
      expect(seen).toEqual([false, true]);
      const warning = records().find((r) => typeof r['msg'] === 'string' && (r['msg']).includes("consumer timeout"));
      // It names the message held too long: a handler always slower than the timeout gets it again each time.
      expect(warning).toMatchObject({ consumerTimeoutMs: 1000, messageId, redelivered: false });
      expect(warning?.['heldMs']).toBeGreaterThanOrEqual(1000);
      expect(warning?.['msg']).toMatch(/re-attaching.*x-consumer-timeout/s);
      await waitFor(() => events.filter((e) => e === 'attached').length === 2, 'the consumer to attach again');
      expect(events).toEqual(['attached', 'detached', 'attached']);
      await waitFor(async () => (await queueCounts(s.queue)).messages === 0, 'the queue to be empty');
    },
    120_000,
  );
});

describe('what RabbitMQ 4.3 refuses, warren does not use', () => {
  it('a transient exclusive queue with deadLetter: true gets a durable .dlq (a transient non-exclusive one is refused by 4.3, and by the 4.x node CI runs)', async () => {
    expect.hasAssertions();
    const queue = track.queue(uniqueName('tmp'));
    track.queue(`${queue}.dlq`);
    const topology = defineTopology({ queues: { [queue]: { durable: false, exclusive: true, deadLetter: true } } });
    const warren = await openClient({ topology });
    expect(warren.health().ok).toBe(true);
    expect(await management.queue(`${queue}.dlq`)).toMatchObject({ durable: true, arguments: { 'x-queue-type': 'classic' } });
  });

  it('per-consumer prefetch only (global QoS 0), frame_max of at least 8192, x-queue-type on every queue it declares', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const name = `rmq4-${Date.now()}`;
    const warren = await openClient({ name, topology: s.topology });
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, prefetch: 7, concurrency: 1, handle: () => undefined }));
    // The management API's figures come with its statistics interval (5 s on a default broker).
    const channels = await waitFor(
      async () => {
        const conns = await management.connectionsNamed(`${name}:consume`);
        const all = (await management.json<ManagementChannel[]>('/api/channels')) ?? [];
        const mine = all.filter((c) => conns.some((k) => k.name === c.connection_details.name));
        return mine.some((c) => c.prefetch_count === 7) ? mine : undefined;
      },
      'the consume channel in the management API',
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    // 4.x no longer lists global_prefetch_count (global QoS is deprecated); 3.x shows 0 when unused.
    for (const c of channels) expect(c.global_prefetch_count ?? 0).toBe(0);
    const conns = (await management.connections()).filter((c) => c.client_properties.connection_name?.startsWith(`${name}:`));
    expect(conns.length).toBe(2);
    for (const c of conns as unknown as { frame_max: number }[]) expect(c.frame_max).toBeGreaterThanOrEqual(8192);
    expect((await management.queue(s.queue))?.arguments).toMatchObject({ 'x-queue-type': 'classic' });
  });
});
