import type { Channel, Link } from './transport.js';

/** A channel or a link. */
interface Closable {
  close(): Promise<void>;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * How long to wait for the broker's CloseOk. A close settles only on it, and a broker that is
 * partitioned away, or blocking this connection for an alarm, may never send it.
 */
export const CLOSE_WAIT_MS = 5000;

/**
 * Closes a channel or link and resolves when it has closed: on its 'close' event (which comes
 * even when the socket dies first), when close() settles, or after `ms`, whichever is first.
 */
export function closeWithin(target: Closable, ms: number = CLOSE_WAIT_MS): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    target.once('close', done);
    target.close().then(done, done);
  });
}

/** Runs `fn` on a short-lived channel, closed afterwards. A refusal surfaces as `fn`'s rejection. */
export async function withChannel<T>(link: Link, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await link.createChannel();
  let closed = false;
  ch.on('close', () => {
    closed = true;
  });
  try {
    return await fn(ch);
  } finally {
    if (!closed) await closeWithin(ch);
  }
}
