import { afterEach, describe, expect, it, vi } from 'vitest';
import { AccessRefusedError, ConnectionError, connect, defineConsumer } from '../../src/index.js';
import { brokerUrls, cleanupTracked, memoryLogger, uniqueName, waitFor } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  await cleanupTracked();
});

const SECRET = 'S3cret-pw-do-not-log';
const DEAD_URL = 'amqp://guest:guest@127.0.0.1:1';

/** The broker's URL as user guest with `password`, optionally on another port. */
function urlWithPassword(password: string, port?: number): string {
  const u = new URL(brokerUrls().amqpUrl);
  u.username = 'guest';
  u.password = password;
  if (port !== undefined) u.port = String(port);
  return u.toString();
}

/** Every message and stack in an error's cause chain, and the error as JSON. */
function texts(err: unknown): string[] {
  const out: string[] = [JSON.stringify(err)];
  for (let e = err; e instanceof Error; e = e.cause) out.push(e.message, e.stack ?? '');
  return out;
}

describe('logging', () => {
  it('never writes a password into a log line or an error: refused at once', async () => {
    expect.hasAssertions();
    const { logger, lines } = memoryLogger('debug');
    const err = await connect({ urls: [urlWithPassword(SECRET)], logger, name: uniqueName('svc') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessRefusedError);
    for (const text of [...lines, ...texts(err)]) expect(text).not.toContain(SECRET);
  });

  it('never writes a password into a log line or an error: while retrying the URLs', async () => {
    expect.hasAssertions();
    const { logger, lines, records } = memoryLogger('debug');
    // An unreachable URL first (a failed attempt, logged and retried), then a refusal.
    const refused = await connect({
      urls: [urlWithPassword(SECRET, 1), urlWithPassword(SECRET)],
      logger,
      name: uniqueName('svc'),
      reconnect: { initialDelay: 10 },
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AccessRefusedError);
    // Only unreachable URLs: connect() gives up with an error that lists them.
    const unreachable = await connect({ urls: [urlWithPassword(SECRET, 1)], logger, initialConnectTimeout: 800, name: uniqueName('svc') }).catch(
      (e: unknown) => e,
    );
    expect(unreachable).toBeInstanceOf(ConnectionError);
    // The retried attempt was logged, with its URL.
    expect(records().some((r) => r['level'] === 40 && r['url'] === urlWithPassword('***', 1))).toBe(true);
    for (const text of [...lines, ...texts(refused), ...texts(unreachable)]) expect(text).not.toContain(SECRET);
  });

  it('is silent by default: nothing on stdout or stderr, even for failures that are logged', async () => {
    expect.hasAssertions();
    const out = vi.spyOn(process.stdout, 'write');
    const err = vi.spyOn(process.stderr, 'write');
    const s = pingSetup({ deadLetter: true });
    // A dead first URL (a warning when a logger is given) and a failing handler (an error line).
    const warren = await openClient({ urls: [DEAD_URL, brokerUrls().amqpUrl], reconnect: { initialDelay: 10 }, topology: s.topology });
    let handled = 0;
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: () => {
          handled += 1;
          throw new Error('a failure that is logged');
        },
      }),
    );
    await warren.publish(s.message, { id: 'a', n: 1 });
    await waitFor(() => handled === 1, 'the handler');
    await warren.close();
    expect(out).not.toHaveBeenCalled();
    expect(err).not.toHaveBeenCalled();
  });

  it('binds context: component and role on connection lines; consumer, queue and messageId on a handler failure', async () => {
    expect.hasAssertions();
    const { logger, records } = memoryLogger('debug');
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
    const failure = await waitFor(() => records().find((r) => r['messageId'] === messageId && (r['level'] as number) >= 40), 'the failure line');
    expect(failure).toMatchObject({ component: 'consumer', consumer: 'pinger', queue: s.queue, messageId });

    const connectionLines = records().filter((r) => r['component'] === 'connection');
    expect(new Set(connectionLines.map((r) => r['role']))).toEqual(new Set(['publish', 'consume']));
  });
});
