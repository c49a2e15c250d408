import { defineApp } from '../client/app.js';
import { effectiveRetry, type AckMode, type Consumer } from '../define/consumer.js';
import type { Duration } from '../define/duration.js';
import { retryPolicySchema } from '../define/retry-policy.js';
import type { MessageContract, PayloadInput } from '../define/message.js';
import { defineTopology, type Topology } from '../define/topology.js';
import { Header } from '../dead-letter/headers.js';
import type { PublishProperties } from '../amqp/transport.js';
import type { ConsumeAction, ConsumeOutcome } from '../instrument/channels.js';
import type { RetryPolicyInput } from '../define/retry-policy.js';
import { ConfigError } from '../support/errors.js';
import type { PublishedMessage } from '../memory/broker.js';
import { createTestWarren } from './test-warren.js';

const RAW = Symbol('warren.testing.raw');

/** A message as it arrives from the wire: any body and headers, not validated on the way in. */
export interface RawMessage {
  readonly [RAW]: true;
  readonly body: Buffer;
  readonly headers: Record<string, unknown>;
  readonly properties: Partial<Omit<PublishProperties, 'mandatory' | 'headers'>>;
}

/**
 * A raw delivery for runHandler(): a body (a Buffer, a string, or a value sent as JSON) and
 * headers, exactly as given; the consumer decodes and validates it as it would a broker's.
 */
export function raw(body: Buffer | string | object, headers: Record<string, unknown> = {}, properties: RawMessage['properties'] = {}): RawMessage {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const contentType = Buffer.isBuffer(body) || typeof body === 'string' ? properties.contentType : (properties.contentType ?? 'application/json');
  return { [RAW]: true, body: bytes, headers, properties: { ...properties, ...(contentType !== undefined ? { contentType } : {}) } };
}

export interface RunHandlerOptions {
  /** Run it as this attempt (1 = first). The last attempt of a retry policy dead-letters on failure instead of retrying. */
  attempt?: number;
  /** The topology the consumer's queue is declared in. Default: the queue alone, classic, with a dead-letter queue. */
  topology?: Topology;
  /** The client's default retry policy (connect()'s `retry`), for a consumer without its own. */
  retry?: RetryPolicyInput;
  /** How long (real time) to wait for the delivery to settle before failing with NOT_SETTLED. Default '5s'. */
  settleTimeout?: Duration;
}

/** What the rule did with one delivery. */
export interface HandlerResult {
  /** The broker action: ack, retry, dead-letter, requeue, reject or none. */
  readonly action: ConsumeAction;
  /** handled, failed (the handler threw) or invalid (undecodable, or failed the schema). */
  readonly outcome: ConsumeOutcome;
  readonly attempt: number;
  /** With action 'retry': the wait before the next attempt, in ms. */
  readonly delayMs: number | undefined;
  /** With action 'dead-letter': why (`invalid`, `non-retryable`, `retries-exhausted`, …). */
  readonly reason: string | undefined;
  /** The handler's error, or the decode / validation error. */
  readonly error: unknown;
  /** The copy warren published for a retry (in the wait queue) or a dead-letter (in the DLQ): where it went, and its headers. */
  readonly copy: { readonly queue: string; readonly headers: Readonly<Record<string, unknown>> } | undefined;
}

/**
 * Runs one delivery through a consumer — the real pipeline and outcome rule, on an in-memory
 * broker — and returns the broker action the rule took. Give a payload (published through the
 * contract, so it must be valid) or `raw(body, headers)` for anything a wire could carry.
 *
 * @example
 * expect((await runHandler(billing, order)).action).toBe('ack');
 * expect((await runHandler(billing, raw('{"orderId":')).reason).toBe('invalid');
 */
export async function runHandler<M extends MessageContract, A extends AckMode>(
  consumer: Consumer<M, A>,
  input: PayloadInput<M> | RawMessage,
  options: RunHandlerOptions = {},
): Promise<HandlerResult> {
  const topology = options.topology ?? soloTopology(consumer);
  if (topology.queue(consumer.queue) === undefined) {
    throw new ConfigError('runHandler() options', [`topology: does not declare the consumer's queue '${consumer.queue}'`]);
  }
  const app = defineApp({ name: `test-${consumer.name}`, topology, consumers: [consumer], ...(options.retry !== undefined ? { connect: { retry: options.retry } } : {}) });
  const maxAttempts = effectiveRetry(consumer, options.retry !== undefined ? retryPolicySchema.parse(options.retry) : undefined)?.maxAttempts ?? 1;
  if (options.attempt !== undefined && !(Number.isInteger(options.attempt) && options.attempt >= 1 && options.attempt <= maxAttempts)) {
    throw new ConfigError('runHandler() options', [
      `attempt: ${String(options.attempt)} is not an attempt of '${consumer.name}' (a whole number from 1 to ${maxAttempts}, its retry policy's maxAttempts); warren would treat a delivery claiming it as attempt 1`,
    ]);
  }
  const t = await createTestWarren(app, options.settleTimeout !== undefined ? { settleTimeout: options.settleTimeout } : {});
  try {
    const attemptHeader = options.attempt !== undefined && options.attempt > 1 ? { [Header.attempt]: options.attempt } : {};
    let records;
    if (isRaw(input)) {
      records = await t.send('', consumer.queue, input.body, { ...input.properties, headers: { ...input.headers, ...attemptHeader } });
    } else {
      records = await t.publish(consumer.message, input, { headers: attemptHeader });
    }
    const record = records.find((r) => r.consumer === consumer.name);
    if (record === undefined) throw new Error(`runHandler(): the consumer '${consumer.name}' never saw the message`);
    const copy = record.action === 'retry' || record.action === 'dead-letter' ? findCopy(t.published(), record.messageId, consumer.queue) : undefined;
    return { action: record.action, outcome: record.outcome, attempt: record.attempt, delayMs: record.delayMs, reason: record.reason, error: record.error, copy };
  } finally {
    await t.close();
  }
}

function isRaw(input: unknown): input is RawMessage {
  return typeof input === 'object' && input !== null && (input as { [RAW]?: unknown })[RAW] === true;
}

/** The queue alone, classic, with a dead-letter queue, bound to its contract's exchange (declared as direct unless built in). */
function soloTopology(consumer: Consumer): Topology {
  const { exchange, routingKey } = consumer.message;
  const builtIn = exchange === '' || exchange.startsWith('amq.');
  return defineTopology({
    exchanges: builtIn ? {} : { [exchange]: { type: 'direct' } },
    queues: { [consumer.queue]: { type: 'classic', deadLetter: true, bindings: exchange === '' ? [] : [{ exchange, routingKey }] } },
  });
}

/** The last copy of the message warren published elsewhere than its queue: the retry copy (wait queue) or the dead-letter copy (DLQ). */
function findCopy(published: readonly PublishedMessage[], messageId: string | undefined, queue: string): HandlerResult['copy'] {
  // A message that came without a messageId is copied under a new one: then any copy will do (runHandler sends one message).
  const copy = published.filter((m) => (messageId === undefined || m.properties.messageId === messageId) && m.queues.length > 0 && !m.queues.includes(queue)).at(-1);
  return copy === undefined ? undefined : { queue: copy.queues[0] ?? '', headers: copy.properties.headers };
}
