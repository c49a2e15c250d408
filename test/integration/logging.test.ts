import { afterEach, describe, expect, it, vi } from 'vitest';
import { connect, defineConsumer } from '../../src/index.js';
import { brokerUrls, cleanupTracked, memoryLogger, uniqueName, waitFor } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  await cleanupTracked();
});

const SECRET = 'S3cret-pw-do-not-log';

function urlWithPassword(password: string, port?: number): string {
  const u = new URL(brokerUrls().amqpUrl);
  u.username = 'guest';
  u.password = password;
  if (port !== undefined) u.port = String(port);
  return u.toString();
}

/** Every message in an error's cause chain. */
function messages(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err; e instanceof Error; e = e.cause) out.push(e.message, e.stack ?? '');
  return out;
}

describe('logging', () => {
  it('never writes a password into a log line or an error, on refusal or while retrying', async () => {
    expect.hasAssertions();
    const { logger, lines } = memoryLogger('debug');
    const refused = await connect({ urls: [urlWithPassword(SECRET)], logger, name: uniqueName('svc') }).catch((e: unknown) => e);
    const unreachable = await connect({ urls: [urlWithPassword(SECRET, 1)], logger, initialConnectTimeout: 800, name: uniqueName('svc') }).catch(
      (e: unknown) => e,
    );
    expect(messages(refused).length).toBeGreaterThan(0);
    expect(messages(unreachable).length).toBeGreaterThan(0);
    expect(lines.length).toBeGreaterThan(0);
    for (const text of [...lines, ...messages(refused), ...messages(unreachable), JSON.stringify(refused), JSON.stringify(unreachable)]) {
      expect(text).not.toContain(SECRET);
    }
  });

  it('is silent by default', async () => {
    expect.hasAssertions();
    const out = vi.spyOn(process.stdout, 'write');
    const err = vi.spyOn(process.stderr, 'write');
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    let handled = 0;
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: () => {
          handled += 1;
          throw new Error('a failure that is logged at warn');
        },
      }),
    );
    await warren.publish(s.message, { id: 'a', n: 1 });
    await waitFor(() => handled === 1, 'the handler');
    await warren.close();
    expect(out).not.toHaveBeenCalled();
    expect(err).not.toHaveBeenCalled();
  });

  it('binds context: component and role on connection lines; consumer, queue and messageId on handler failures', async () => {
    expect.hasAssertions();
    const { logger, records } = memoryLogger('info');
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology, logger });
    await warren.consume(
      defineConsumer({
        name: 'pinger',
        queue: s.queue,
        message: s.message,
        handle: () => {
          throw new Error('boom');
        },
      }),
    );
    const { messageId } = await warren.publish(s.message, { id: 'a', n: 1 });
    const failure = await waitFor(() => records().find((r) => r['msg'] === 'message dead-lettered'), 'the failure line');
    expect(failure).toMatchObject({ level: 50, component: 'consumer', consumer: 'pinger', queue: s.queue, messageId, reason: 'handler-failed' });
    expect(records().find((r) => r['msg'] === 'connected')).toMatchObject({ component: 'connection', role: 'publish' });
  });
});
