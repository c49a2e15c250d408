import { withChannel } from '../amqp/close.js';
import { permissionError } from '../amqp/permissions.js';
import { amqpCode, ReplyCode } from '../amqp/reply-codes.js';
import type { Channel, Inbound, Link } from '../amqp/transport.js';
import { DLQ_SUFFIX, type Topology } from '../define/topology.js';
import { ConfigError, TopologyError } from '../support/errors.js';
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
  /** Looked at and left in the dead-letter queue (not chosen by the filter). */
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
export function toDeadLetter(msg: Pick<Inbound, 'body' | 'headers' | 'messageId'>): DeadLetter {
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

/** What to do with the message looked at, and whether to look at the next. */
type Visit = 'next' | 'stop';

/**
 * Looks at the messages of `dlq` one at a time (basic.get, no ack), at most `max`, until `fn`
 * says stop: what `fn` acks leaves the queue; the rest stay unacked on this channel, so a get
 * never returns one twice, and go back to the queue, in their order, when the channel closes.
 * Only the message in hand is held in memory.
 */
async function visit(link: Link, dlq: string, max: number, fn: (ch: Channel, msg: Inbound) => Promise<Visit> | Visit): Promise<void> {
  await withChannel(link, async (ch) => {
    for (let seen = 0; seen < max; seen++) {
      let m: Inbound | undefined;
      try {
        m = await ch.get(dlq);
      } catch (err) {
        if (amqpCode(err) !== ReplyCode.NOT_FOUND) throw permissionError(err, { kind: 'get', queue: dlq }) ?? err;
        throw new TopologyError(`There is no queue '${dlq}' on this vhost: is the queue name right, and does its queue dead-letter (deadLetter in the topology)?`, {
          cause: err,
        });
      }
      if (m === undefined || (await fn(ch, m)) === 'stop') return;
    }
  });
}

export interface PeekOptions {
  /** Show at most this many. Default 10. */
  limit?: number;
  /** Show only those it returns true for (looking until `limit` match or the queue ends). */
  filter?: (message: DeadLetter) => boolean;
}

export async function peekDeadLetters(link: Link, dlq: string, options: PeekOptions): Promise<DeadLetter[]> {
  const limit = options.limit ?? 10;
  const found: DeadLetter[] = [];
  if (limit <= 0) return found;
  await visit(link, dlq, Number.MAX_SAFE_INTEGER, (_ch, msg) => {
    const dead = toDeadLetter(msg);
    if (options.filter === undefined || options.filter(dead)) found.push(dead);
    return found.length >= limit ? 'stop' : 'next';
  });
  return found;
}

export interface PurgeOptions {
  /** Remove at most this many. Default: every message in the dead-letter queue. */
  limit?: number;
  /** Remove only those it returns true for; the others stay. */
  filter?: (message: DeadLetter) => boolean;
}

export interface PurgeResult {
  purged: number;
  /** Looked at and left in the dead-letter queue (not chosen by the filter). */
  skipped: number;
}

/** Removes the chosen dead letters for good (acks them); the rest go back to the queue untouched. */
export async function purgeDeadLetters(link: Link, dlq: string, options: PurgeOptions): Promise<PurgeResult> {
  if (options.filter === undefined && options.limit === undefined) {
    // All of them: one queue.purge, not a get per message.
    const purged = await withChannel(link, (ch) => ch.purgeQueue(dlq)).catch((err: unknown) => {
      throw amqpCode(err) === ReplyCode.NOT_FOUND
        ? new TopologyError(`There is no queue '${dlq}' on this vhost: is the queue name right?`, { cause: err })
        : (permissionError(err, { kind: 'purge', queue: dlq }) ?? err);
    });
    return { purged, skipped: 0 };
  }
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  let purged = 0;
  let skipped = 0;
  if (limit > 0) {
    await visit(link, dlq, Number.MAX_SAFE_INTEGER, (ch, msg) => {
      if (options.filter !== undefined && !options.filter(toDeadLetter(msg))) skipped += 1;
      else {
        ch.ack(msg.deliveryTag, false);
        purged += 1;
      }
      return purged >= limit ? 'stop' : 'next';
    });
  }
  return { purged, skipped };
}

/** Headers of a replayed copy: the failure history stays readable, the attempt count starts again. */
function replayHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const replays = headers[Header.replays];
  return { [Header.attempt]: undefined, [Header.replays]: (typeof replays === 'number' ? replays : 0) + 1 };
}

export async function replayDeadLetters(link: Link, publisher: CopyPublisher, queue: string, dlq: string, options: ReplayOptions): Promise<ReplayResult> {
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  let replayed = 0;
  let skipped = 0;
  if (limit <= 0) return { replayed, skipped };
  await visit(link, dlq, Number.MAX_SAFE_INTEGER, async (ch, msg) => {
    const dead = toDeadLetter(msg);
    if (options.filter !== undefined && !options.filter(dead)) {
      skipped += 1;
      return 'next';
    }
    const origin = str(dead.headers[Header.originQueue]) ?? queue;
    const props = copyProperties(msg, replayHeaders(dead.headers), `replay:${dlq}:${msg.deliveryTag}:${Date.now()}`);
    // Removed from the dead-letter queue only once its copy is confirmed: a crash duplicates, never loses.
    await publisher.publishCopy('', origin, msg.body, props);
    ch.ack(msg.deliveryTag, false);
    replayed += 1;
    return replayed >= limit ? 'stop' : 'next';
  });
  return { replayed, skipped };
}
