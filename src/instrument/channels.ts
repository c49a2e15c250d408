import diagnostics from 'node:diagnostics_channel';

/**
 * warren's instrumentation point: `node:diagnostics_channel` channels that metrics, tracing and
 * tests subscribe to. The core publishes to them and never imports a subscriber. Every publish
 * site checks `hasSubscribers` first: with nobody subscribed, nothing is allocated.
 *
 * Tracing channels (`diagnostics_channel.tracingChannel(name)`):
 * - `warren:publish`: one operation per `publish()` call. `start` when it is called, before
 *   validation, with a mutable `headers` object that is sent with the message (a tracer injects
 *   `traceparent` there); `end` when the publish settles (the broker's confirm, or the failure),
 *   with `outcome`, `durationMs` and, on failure, `error`; `error` just before `end` on failure.
 * - `warren:consume`: one operation per delivery handed to a consumer's pipeline. `start` as it
 *   begins, published with `runStores`, so the handler runs inside the subscriber's bound
 *   AsyncLocalStorage context; `end` once the broker action is taken (ack, retry copy confirmed,
 *   …), with `outcome`, `action` and `durationMs`; `error` just before `end` when the handler
 *   failed or the message was invalid.
 *   Between them, `asyncStart` marks the publish accepted (valid, taken into the buffer: what
 *   `health().publisher.published` counts; `accepted` is then true).
 * Unlike `tracePromise()`, `end` marks completion, so one span per operation opens on `start`
 * and closes on `end`; `asyncEnd` is not used.
 *
 * Plain channels: `warren:connection` (a connection's state changed), `warren:consumer` (a
 * consumer attached, detached or was cancelled), `warren:retry` (a retry copy was confirmed)
 * and `warren:dead-letter` (a message was dead-lettered).
 */
export const ChannelName = {
  publish: 'warren:publish',
  consume: 'warren:consume',
  connection: 'warren:connection',
  consumer: 'warren:consumer',
  retry: 'warren:retry',
  deadLetter: 'warren:dead-letter',
} as const;

/** How a publish ended. */
export type PublishOutcome = 'confirmed' | 'returned' | 'nacked' | 'timed-out' | 'failed';

/** The context of one `warren:publish` operation: the same object on start, error and end. */
export interface PublishTrace {
  /** The warren client's `name`. */
  readonly client: string;
  /** The contract's name. */
  readonly contract: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string;
  /** Sent with the message: add to it on `start` (e.g. `traceparent`). */
  readonly headers: Record<string, unknown>;
  /** Set on `end`. */
  outcome?: PublishOutcome;
  /**
   * True once the publish was accepted: valid, and taken into the buffer to be sent (what
   * `health().publisher.published` counts). Absent on `end` when it was refused before that
   * (invalid, too large, a full buffer, a closed client): then `outcome` is 'failed'.
   */
  accepted?: boolean;
  /** Set on `error` and `end` when it failed: a WarrenError. */
  error?: Error;
  /** From the `publish()` call to the confirm or failure, in ms. Set on `end`. */
  durationMs?: number;
}

/** What the pipeline made of a delivery. */
export type ConsumeOutcome = 'handled' | 'failed' | 'invalid';

/** What warren told the broker about a delivery (see consume/outcome.ts). */
export type ConsumeAction = 'ack' | 'requeue' | 'reject' | 'retry' | 'dead-letter' | 'none';

/** The context of one `warren:consume` operation: the same object on start, error and end. */
export interface ConsumeTrace {
  readonly client: string;
  readonly consumer: string;
  readonly queue: string;
  /** The consumer's contract name. */
  readonly contract: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  /** 1 for the first attempt (warren's `x-warren-attempt`). */
  readonly attempt: number;
  readonly redelivered: boolean;
  /** The delivered message's headers, read-only (a tracer extracts `traceparent` here). */
  readonly headers: Readonly<Record<string, unknown>>;
  /** Set on `end`. */
  outcome?: ConsumeOutcome;
  /** Set on `end`: the broker action taken. */
  action?: ConsumeAction;
  /** With action 'dead-letter': why (`invalid`, `retries-exhausted`, …). */
  reason?: string;
  /** With action 'retry': the wait, in ms. */
  delayMs?: number;
  /** The handler's error, or the decode / validation error. Set on `error` and `end`. */
  error?: unknown;
  /** From the delivery entering the pipeline to the broker action, in ms. Set on `end`. */
  durationMs?: number;
}

export interface ConnectionStateChange {
  readonly client: string;
  readonly role: 'publish' | 'consume';
  readonly state: 'connecting' | 'open' | 'blocked' | 'closing' | 'closed';
  readonly previous: 'connecting' | 'open' | 'blocked' | 'closing' | 'closed';
  /** The broker URL, password redacted, when connected. */
  readonly url: string | undefined;
  /** Why it left `open` / `blocked`, where known (the error, or the broker's block reason). */
  readonly reason: string | undefined;
}

export interface ConsumerStateChange {
  readonly client: string;
  readonly consumer: string;
  readonly queue: string;
  readonly type: 'attached' | 'detached' | 'cancelled';
  readonly consumerTag: string | undefined;
  readonly reason: string | undefined;
}

export interface RetryDecision {
  readonly client: string;
  readonly consumer: string;
  readonly queue: string;
  readonly messageId: string | undefined;
  /** The attempt that failed. */
  readonly attempt: number;
  readonly delayMs: number;
  readonly waitQueue: string;
}

export interface DeadLetterDecision {
  readonly client: string;
  readonly consumer: string;
  readonly queue: string;
  readonly messageId: string | undefined;
  readonly reason: string;
  /** `x-warren-error-code` of the copy, when there is one. */
  readonly errorCode: string | undefined;
  /** Where the copy with warren's headers went (exchange '' and the dead-letter queue's name, by default), or undefined when the message was rejected to the broker instead (no dead-letter queue, or the copy failed). */
  readonly copiedTo: { readonly exchange: string; readonly routingKey: string } | undefined;
}

export const publishChannel = diagnostics.tracingChannel<unknown, PublishTrace & object>(ChannelName.publish);
export const consumeChannel = diagnostics.tracingChannel<unknown, ConsumeTrace & object>(ChannelName.consume);
export const connectionChannel = diagnostics.channel(ChannelName.connection);
export const consumerChannel = diagnostics.channel(ChannelName.consumer);
export const retryChannel = diagnostics.channel(ChannelName.retry);
export const deadLetterChannel = diagnostics.channel(ChannelName.deadLetter);
