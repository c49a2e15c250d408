import { z } from 'zod';
import { collect, durationMs } from './config.js';
import type { Duration } from './duration.js';
import { ConfigError } from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import type { MessageContract, Payload } from './message.js';
import { retryPolicySchema, type RetryPolicy, type RetryPolicyInput } from './retry-policy.js';

export type { RetryPolicyInput };

/** Who settles a delivery: warren from the handler's outcome (`auto`), the handler itself (`manual`), or nobody (`none`: acked as the handler starts). */
export type AckMode = 'auto' | 'manual' | 'none';

/** What happens to a message whose handler throws when there is no retry policy: dead-letter it (default) or requeue it. */
export type OnError = 'dead-letter' | 'requeue';

/** What a handler knows about the delivery it is handling. */
export interface ConsumerContext {
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  /** The broker delivered this message before (to this or another consumer) without an ack. */
  readonly redelivered: boolean;
  /** How many times a quorum queue of the topology has delivered it before (`x-delivery-count`): 0 on its first delivery; undefined on other queues. */
  readonly deliveryCount: number | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly timestamp: Date | undefined;
  /** Which attempt this is: 1 the first time, 2 after one retry, … (warren's `x-warren-attempt` header). */
  readonly attempt: number;
  /** The consumer's logger, bound to this message's id. */
  readonly log: Logger;
}

/** In manual ack mode the handler settles each message itself, once. */
export interface ManualContext extends ConsumerContext {
  /** The message is done: remove it from the queue. */
  ack(): void;
  /** The message failed: requeue it (`requeue: true`) or dead-letter it (default). */
  nack(options?: { requeue?: boolean }): void;
  /** Dead-letter the message through the broker (no reason headers; dropped if the queue has no dead-letter exchange). */
  reject(): void;
  /**
   * Retry later: a copy waits `delay` (default: the retry policy's next delay) in a wait queue,
   * then comes back. Past the policy's maxAttempts it is dead-lettered instead. Resolves once done.
   */
  retry(options?: { delay?: Duration }): Promise<void>;
  /** Send the message to the dead-letter queue now, with `reason` in its headers. Resolves once done. */
  deadLetter(reason?: string): Promise<void>;
}

export type ContextFor<A extends AckMode> = A extends 'manual' ? ManualContext : ConsumerContext;

export interface ConsumerDefinition<M extends MessageContract, A extends AckMode = 'auto'> {
  /** The queue to consume from; declare it in the topology. */
  queue: string;
  /** The contract that incoming bodies are checked against; the handler's payload type comes from it. */
  message: M;
  /** Shown in logs, events and health. Default: the queue name. */
  name?: string;
  /** Unacked messages the broker sends ahead (basic.qos). Default 10. */
  prefetch?: number;
  /** Handlers running at once, ≤ prefetch. Default 1. */
  concurrency?: number;
  /** `auto` (default): resolve = ack, throw = onError. `manual`: the handler calls ctx.ack/nack/reject. `none`: each message is acked as its handler starts (at-most-once). */
  ackMode?: A;
  /** When the handler throws and there is no retry policy: `'dead-letter'` (default) or `'requeue'`. */
  onError?: OnError;
  /**
   * Retry a failing message later, through the broker: `{ maxAttempts: 5, delays: ['1s', '10s', '1m'] }`
   * (the last delay repeats) or `{ maxAttempts: 5, backoff: { initialDelay: '1s', factor: 2, maxDelay: '5m' } }`.
   * After the last attempt the message goes to the dead-letter queue. Default: connect()'s `retry`, else none.
   */
  retry?: RetryPolicyInput;
  /** How long `stop()` waits for running handlers before closing the channel (their messages are then redelivered). Default 30 000 ms. */
  stopTimeoutMs?: number;
  /**
   * A delivery still unsettled after this long is logged as a warning (a manual-mode handler that
   * never called ack/nack/…, or a handler that hangs), and a consumer whose whole prefetch has
   * been unsettled this long is reported `stalled` (health().ok false). Default '1m'.
   */
  stalledAfter?: Duration;
  /** Largest body accepted, in bytes, checked before decoding (and the most a gzip / deflate body may expand to); a larger one is dead-lettered (`invalid`, MESSAGE_TOO_LARGE). Default 16 MiB. */
  maxMessageBytes?: number;
  /** Resolve to ack (auto mode); throw to dead-letter or requeue (onError). */
  handle: (payload: Payload<M>, context: ContextFor<A>) => Promise<void> | void;
}

/** A consumer module: a validated ConsumerDefinition. Pass it to `warren.consume()`. */
export interface Consumer<M extends MessageContract = MessageContract, A extends AckMode = AckMode> {
  readonly name: string;
  readonly queue: string;
  readonly message: M;
  readonly prefetch: number;
  readonly concurrency: number;
  readonly ackMode: A;
  readonly onError: OnError;
  readonly retry: RetryPolicy | undefined;
  readonly stopTimeoutMs: number;
  readonly maxMessageBytes: number;
  /** In ms. */
  readonly stalledAfterMs: number;
  readonly handle: (payload: Payload<M>, context: ContextFor<A>) => Promise<void> | void;
}

const consumerSchema = z.strictObject({
  queue: z.string().min(1, 'must name a queue'),
  name: z.string().min(1).optional(),
  prefetch: z.number().int().min(1).max(65_535).default(10),
  concurrency: z.number().int().min(1).default(1),
  ackMode: z.enum(['auto', 'manual', 'none']).default('auto'),
  onError: z.enum(['dead-letter', 'requeue']).default('dead-letter'),
  stopTimeoutMs: z.number().int().nonnegative().default(30_000),
  maxMessageBytes: z.number().int().min(1).default(16 * 1024 * 1024),
  stalledAfter: durationMs.default(60_000),
  retry: retryPolicySchema.optional(),
  handle: z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', 'must be a function'),
  message: z.custom<MessageContract>((v) => typeof v === 'object' && v !== null && 'schema' in v, 'must be a contract from defineMessage()'),
});

/** Checks across options, on the raw definition, so they are reported even when a field failed to parse. */
function crossChecks(d: Partial<Record<keyof ConsumerDefinition<MessageContract>, unknown>>): string[] {
  const problems: string[] = [];
  const prefetch = typeof d.prefetch === 'number' ? d.prefetch : 10;
  const concurrency = typeof d.concurrency === 'number' ? d.concurrency : 1;
  if (concurrency > prefetch) {
    problems.push(`concurrency: ${concurrency} must not exceed prefetch (${prefetch}): handlers beyond prefetch would never get a message`);
  }
  if (d.ackMode === 'none' && (d.onError !== undefined || d.retry !== undefined)) {
    problems.push('onError / retry: have no effect with ackMode none (the broker does not wait for an outcome); remove them');
  }
  const retry = d.retry as { maxAttempts?: unknown } | undefined;
  if (d.onError === 'requeue' && typeof retry?.maxAttempts === 'number' && retry.maxAttempts > 1) {
    problems.push("onError: 'requeue' contradicts the retry policy (which retries with a delay, then dead-letters); remove one");
  }
  return problems;
}

/**
 * Defines a consumer module. Throws a ConfigError listing every problem with the options.
 *
 * @example
 * export default defineConsumer({ queue: 'billing.orders', message: OrderPlaced, prefetch: 20, concurrency: 10,
 *   async handle(order, ctx) { await charge(order.orderId); } }); // resolve = ack; throw = dead-letter
 */
export function defineConsumer<M extends MessageContract, const A extends AckMode = 'auto'>(definition: ConsumerDefinition<M, A>): Consumer<M, A> {
  const where = `consumer${typeof definition.queue === 'string' ? ` for queue '${definition.queue}'` : ''}`;
  const problems: string[] = [];
  const parsed = collect(consumerSchema, definition, '', problems);
  problems.push(...crossChecks(definition));
  if (parsed === undefined || problems.length > 0) throw new ConfigError(where, problems);
  return Object.freeze({
    name: parsed.name ?? parsed.queue,
    queue: parsed.queue,
    message: definition.message,
    prefetch: parsed.prefetch,
    concurrency: parsed.concurrency,
    ackMode: parsed.ackMode as A,
    onError: parsed.onError,
    retry: parsed.retry,
    stopTimeoutMs: parsed.stopTimeoutMs,
    maxMessageBytes: parsed.maxMessageBytes,
    stalledAfterMs: parsed.stalledAfter,
    handle: definition.handle,
  });
}

/**
 * The retry policy a consumer runs with: its own, else the client's default — which is only for
 * consumers that could have declared one themselves (defineConsumer refuses a policy with
 * ackMode 'none' or beside onError 'requeue').
 */
export function effectiveRetry(consumer: Consumer, defaultRetry: RetryPolicy | undefined): RetryPolicy | undefined {
  return consumer.retry ?? (consumer.ackMode === 'none' || consumer.onError === 'requeue' ? undefined : defaultRetry);
}
