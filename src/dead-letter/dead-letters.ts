import { withChannel } from '../amqp/close.js';
import type { Channel, Inbound, Link } from '../amqp/transport.js';
import { DLQ_SUFFIX, type Topology } from '../define/topology.js';
import { ConfigError } from '../support/errors.js';
import { copyProperties, type CopyPublisher } from './copy.js';
import { Header } from './headers.js';

/** A message in a dead-letter queue, as `peekDeadLetters()` shows it and a replay filter sees it. */
export interface DeadLetter {
  messageId: string | undefined;
  /** The decoded JSON body, or the body as text when it is not JSON. */
  body: unknown;
  headers: Record<string, unknown>;
  /** Why: `retries-exhausted`, `non-retryable`, `invalid`, `handler-failed`, `retry-failed`, the text a handler gave ctx.deadLetter() (`handler` when none), or the broker's reason (`rejected`, `expired`, `maxlen`, `delivery_limit`). */
  reason: string | undefined;
  errorCode: string | undefined;
  errorMessage: string | undefined;
  /** Deliveries made before it was dead-lettered. */
  attempts: number | undefined;
  originalExchange: string | undefined;
  originalRoutingKey: string | undefined;
  firstFailureAt: Date | undefined;
  lastFailureAt: Date | undefined;
  consumer: string | undefined;
}

export interface ReplayOptions {
  /** Replay at most this many. Default: every message in the dead-letter queue. */
  limit?: number;
  /** Replay only those it returns true for; the others stay in the dead-letter queue. */
  filter?: (message: DeadLetter) => boolean;
}

export interface ReplayResult {
  replayed: number;
  /** Looked at and left in the dead-letter queue: not chosen by the filter, or past the limit (without a filter only `limit` are looked at). */
  skipped: number;
}

/** The dead-letter queue of `queue`: its `deadLetter` target in the topology, else `<queue>.dlq`. */
export function deadLetterQueueOf(topology: Topology, queue: string): string {
  const dl = topology.queue(queue)?.deadLetter;
  if (dl !== undefined && dl.exchange !== '') {
    throw new ConfigError(`dead letters of '${queue}'`, [
      `deadLetter: the queue dead-letters to exchange '${dl.exchange}', so warren cannot tell which queue holds them; peek or replay that queue's consumer instead`,
    ]);
  }
  return dl?.routingKey ?? queue + DLQ_SUFFIX;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : v instanceof Buffer ? v.toString() : undefined;
}

function date(v: unknown): Date | undefined {
  const s = str(v);
  const d = s !== undefined ? new Date(s) : undefined;
  return d !== undefined && !Number.isNaN(d.getTime()) ? d : undefined;
}

/** Reads warren's headers, falling back to the broker's `x-death` for messages it dead-lettered itself. */
export function toDeadLetter(msg: Inbound): DeadLetter {
  const headers = msg.headers as Record<string, unknown>;
  const deaths = headers['x-death'];
  const death = Array.isArray(deaths) ? (deaths[0] as Record<string, unknown> | undefined) : undefined;
  let body: unknown;
  const text = msg.body.toString('utf8');
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  const attempts = headers[Header.attempts];
  const deathKeys = death?.['routing-keys'];
  return {
    messageId: msg.messageId,
    body,
    headers,
    reason: str(headers[Header.reason]) ?? str(death?.['reason']),
    errorCode: str(headers[Header.errorCode]),
    errorMessage: str(headers[Header.errorMessage]),
    attempts: typeof attempts === 'number' ? attempts : undefined,
    originalExchange: str(headers[Header.originalExchange]) ?? str(death?.['exchange']),
    originalRoutingKey: str(headers[Header.originalRoutingKey]) ?? (Array.isArray(deathKeys) ? str(deathKeys[0]) : undefined),
    firstFailureAt: date(headers[Header.firstFailureAt]),
    lastFailureAt: date(headers[Header.lastFailureAt]),
    consumer: str(headers[Header.consumer]),
  };
}

/**
 * Takes up to `limit` messages from `dlq` without acking them, runs `fn` on them, and returns
 * whatever was not acked to the queue when the channel closes.
 */
async function browse<T>(link: Link, dlq: string, limit: number, fn: (ch: Channel, messages: Inbound[]) => Promise<T>): Promise<T> {
  return withChannel(link, async (ch) => {
    const messages: Inbound[] = [];
    while (messages.length < limit) {
      const m = await ch.get(dlq);
      if (m === undefined) break;
      messages.push(m);
    }
    return fn(ch, messages);
  });
}

export interface PeekOptions {
  /** Show at most this many. Default 10. */
  limit?: number;
  /** Show only those it returns true for (the whole queue is looked through). */
  filter?: (message: DeadLetter) => boolean;
}

export async function peekDeadLetters(link: Link, dlq: string, options: PeekOptions): Promise<DeadLetter[]> {
  const limit = options.limit ?? 10;
  const filter = options.filter;
  if (filter === undefined) return browse(link, dlq, limit, (_ch, messages) => Promise.resolve(messages.map(toDeadLetter)));
  return browse(link, dlq, Number.MAX_SAFE_INTEGER, (_ch, messages) => Promise.resolve(messages.map(toDeadLetter).filter(filter).slice(0, limit)));
}

export interface PurgeOptions {
  /** Remove at most this many. Default: every message in the dead-letter queue. */
  limit?: number;
  /** Remove only those it returns true for; the others stay. */
  filter?: (message: DeadLetter) => boolean;
}

export interface PurgeResult {
  purged: number;
  /** Looked at and left in the dead-letter queue: not chosen by the filter, or past the limit (without a filter only `limit` are looked at). */
  skipped: number;
}

/** Removes the chosen dead letters for good (acks them); the rest go back to the queue untouched. */
export async function purgeDeadLetters(link: Link, dlq: string, options: PurgeOptions): Promise<PurgeResult> {
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  return browse(link, dlq, options.filter === undefined ? limit : Number.MAX_SAFE_INTEGER, (ch, messages) => {
    let purged = 0;
    for (const msg of messages) {
      if (purged >= limit || (options.filter !== undefined && !options.filter(toDeadLetter(msg)))) continue;
      ch.ack(msg.deliveryTag, false);
      purged += 1;
    }
    return Promise.resolve({ purged, skipped: messages.length - purged });
  });
}

/** Headers of a replayed copy: the failure history stays readable, the attempt count starts again. */
function replayHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const replays = headers[Header.replays];
  return { [Header.attempt]: undefined, [Header.replays]: (typeof replays === 'number' ? replays : 0) + 1 };
}

export async function replayDeadLetters(link: Link, publisher: CopyPublisher, queue: string, dlq: string, options: ReplayOptions): Promise<ReplayResult> {
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  // With a filter, browse the whole queue once: a skipped message stays unacked, so get never
  // returns it twice, and goes back to the queue when the channel closes.
  return browse(link, dlq, options.filter === undefined ? limit : Number.MAX_SAFE_INTEGER, async (ch, messages) => {
    let replayed = 0;
    let skipped = 0;
    for (const msg of messages) {
      const dead = toDeadLetter(msg);
      if (replayed >= limit || (options.filter !== undefined && !options.filter(dead))) {
        skipped += 1;
        continue;
      }
      const origin = str(dead.headers[Header.originQueue]) ?? queue;
      const props = copyProperties(msg, replayHeaders(dead.headers), `replay:${dlq}:${msg.deliveryTag}:${Date.now()}`);
      // Removed from the dead-letter queue only once its copy is confirmed: a crash duplicates, never loses.
      await publisher.publishCopy('', origin, msg.body, props);
      ch.ack(msg.deliveryTag, false);
      replayed += 1;
    }
    return { replayed, skipped };
  });
}
