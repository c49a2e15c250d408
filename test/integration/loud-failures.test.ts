// Failures are loud and precise: a stuck consumer is reported, errors are logged as objects
// with their stack and code, and the dead letter names what the handler's error said.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { defineConsumer, WarrenHeader } from '../../src/index.js';
import { cleanupTracked, drainQueue, memoryLogger, queueCounts, uniqueName, waitFor } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

describe('a consumer that stops settling', () => {
  it('manual mode, a handler that never settles: health() shows the unsettled deliveries and the consumer as stalled, and each is logged', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const log = memoryLogger('info');
    const warren = await openClient({ topology: s.topology, logger: log.logger });
    const seen: string[] = [];
    await warren.consume(
      defineConsumer({ queue: s.queue, message: s.message, ackMode: 'manual', prefetch: 2, concurrency: 2, stalledAfter: '300ms', handle: (p) => void seen.push(p.id) }),
    );
    for (const n of [1, 2, 3]) await warren.publish(s.message, { id: `m${n}`, n });
    await waitFor(() => seen.length === 2, 'two deliveries (the prefetch)');
    expect(warren.health().consumers[0]).toMatchObject({ attached: true, inFlight: 0, unsettled: 2, stalled: false });

    await waitFor(() => warren.health().consumers[0]?.stalled, 'the consumer to be reported stalled');
    const h = warren.health();
    expect(h.ok).toBe(false);
    expect(h.consumers[0]?.oldestUnsettledMs).toBeGreaterThanOrEqual(300);
    expect(seen).toEqual(['m1', 'm2']); // the third waits in the queue: prefetch is full
    await waitFor(() => log.records().filter((r) => r['level'] === 40 && String(r['msg']).includes('still unsettled')).length === 2, 'a warning per stuck message');
    const warning = log.records().find((r) => String(r['msg']).includes('still unsettled'));
    expect(warning).toMatchObject({ component: 'consumer', queue: s.queue, ackMode: 'manual', prefetch: 2 });
    expect(warning?.['unsettledForMs']).toEqual(expect.any(Number));
  });
});

describe('errors in logs and dead letters', () => {
  it('logs a handler error as an object (type, message, stack, code) and records its code in x-warren-error-code', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const log = memoryLogger('info');
    const warren = await openClient({ topology: s.topology, logger: log.logger });
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: () => {
          throw Object.assign(new Error('resizer busy'), { code: 'THUMB_UNAVAILABLE' });
        },
      }),
    );
    await warren.publish(s.message, { id: 'a', n: 1 });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the dead letter');
    const [dead] = await drainQueue(s.dlq);
    expect((dead?.properties.headers as Record<string, unknown>)[WarrenHeader.errorCode]).toBe('THUMB_UNAVAILABLE');
    const line = log.records().find((r) => r['msg'] === 'message dead-lettered');
    expect(line?.['err']).toMatchObject({ type: 'Error', message: 'resizer busy', code: 'THUMB_UNAVAILABLE', stack: expect.stringContaining('resizer busy') });
  });

  it('manual mode: a handler that throws after ctx.ack() is logged with the error, and the message stays acked', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const log = memoryLogger('info');
    const warren = await openClient({ topology: s.topology, logger: log.logger });
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        ackMode: 'manual',
        handle: (_p, ctx) => {
          ctx.ack();
          throw new Error('cleanup failed');
        },
      }),
    );
    await warren.publish(s.message, { id: 'a', n: 1 });
    await waitFor(() => log.records().some((r) => String(r['msg']).includes('after it had settled')), 'the warning');
    const line = log.records().find((r) => String(r['msg']).includes('after it had settled'));
    expect(line).toMatchObject({ level: 40, settledWith: 'ack', err: { message: 'cleanup failed', type: 'Error' } });
    await warren.close();
    expect(await queueCounts(s.queue)).toEqual({ messages: 0, consumers: 0 });
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });

  it("does not repeat pino's own `name` in warren's log lines", async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const lines: string[] = [];
    const logger = pino({ name: 'thumbnails-consumer', level: 'info' }, { write: (l: string) => void lines.push(l) });
    const warren = await openClient({ topology: s.topology, logger, name: uniqueName('svc') });
    await warren.consume(defineConsumer({ queue: s.queue, message: s.message, handle: () => undefined }));
    await warren.close();
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line.match(/"name":/g)).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ name: 'thumbnails-consumer', client: expect.stringMatching(/svc/) });
  });
});
