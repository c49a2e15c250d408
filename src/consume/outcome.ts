import type { AckMode, OnError } from '../define/consumer.js';
import { retryDelay, retryTierFor, type RetryPolicy } from '../define/retry-policy.js';
import { ConfigError, errorCode, NonRetryableError } from '../support/errors.js';

/**
 * THE rule: every broker action a consumer takes is decided here, and only here.
 *
 * | when            | ack mode     | what happened                                            | broker action                                  |
 * |-----------------|--------------|----------------------------------------------------------|------------------------------------------------|
 * | handler starts  | none         | its handler is about to run                              | ack, before it runs (at-most-once)             |
 * | handler starts  | auto, manual | its handler is about to run                              | none yet                                       |
 * | handler done    | none         | anything                                                 | none (acked as its handler started)            |
 * | handler done    | auto, manual | body undecodable, or fails the schema                    | dead-letter `invalid`                          |
 * | handler done    | auto         | resolved                                                 | ack                                            |
 * | handler done    | manual       | resolved                                                 | none (the handler's call decided)              |
 * | handler done    | auto, manual | threw NonRetryableError                                  | dead-letter `non-retryable`                    |
 * | handler done    | auto, manual | threw; retry policy; attempts left                       | retry after the policy's delay                 |
 * | handler done    | auto, manual | threw; retry policy; last attempt                        | dead-letter `retries-exhausted`                |
 * | handler done    | auto, manual | threw; no retry policy; onError 'requeue'                | requeue                                        |
 * | handler done    | auto, manual | threw; no retry policy; onError 'dead-letter'            | dead-letter `handler-failed`                   |
 * | handler done    | manual       | anything, after the handler settled it                   | none (a delivery is settled once)              |
 * | manual call     | manual       | ctx.ack()                                                | ack                                            |
 * | manual call     | manual       | ctx.nack({ requeue: true })                              | requeue                                        |
 * | manual call     | manual       | ctx.nack() or ctx.reject()                               | reject (the broker's dead-lettering, no copy)  |
 * | manual call     | manual       | ctx.retry(); attempts left, or no policy                 | retry after the policy's delay, or the given   |
 * |                 |              |                                                          | one rounded up to a declared or ladder delay   |
 * | manual call     | manual       | ctx.retry(); last attempt                                | dead-letter `retries-exhausted`                |
 * | manual call     | manual       | ctx.deadLetter(reason)                                   | dead-letter `handler` (reason text in the copy)|
 * | any dead-letter | auto, manual | the queue has no dead-letter queue in the topology       | reject (the broker discards it)                |
 * | copy failed     | auto, manual | a retry copy could not be published (broker away)        | requeue (as it was), after a hold of 1 s, then |
 * |                 |              |                                                          | doubling to 30 s while copies keep failing     |
 * | copy failed     | auto, manual | a retry copy can never be published (headers too large)  | dead-letter `retry-failed`, own headers left out|
 * | copy failed     | auto, manual | a dead-letter copy can never be published                | dead-letter again, own headers left out        |
 * | copy failed     | auto, manual | a dead-letter copy could not be published (otherwise)    | reject (the broker's dead-lettering, no copy)  |
 * | stop deadline   | any          | delivered, not yet started when stop() runs out of time  | requeue                                        |
 *
 * "Dead-letter" publishes a copy with warren's reason headers to the queue's dead-letter queue
 * and acks the original once the copy is confirmed; "retry" publishes a copy to the delay's wait
 * queue the same way. The README's rule table and test/unit/outcome.test.ts are this table.
 */

/** Why a message was dead-lettered (`x-warren-reason`). */
export type DeadLetterReason = 'invalid' | 'non-retryable' | 'retries-exhausted' | 'handler-failed' | 'handler' | 'retry-failed';

/** What the pipeline made of a delivery. */
export type Outcome = { kind: 'handled' } | { kind: 'failed'; error: unknown } | { kind: 'invalid'; error: unknown };

/** A call a manual-mode handler made on its context. */
export type ManualCall =
  | { call: 'ack' }
  | { call: 'nack'; requeue: boolean }
  | { call: 'reject' }
  | { call: 'retry'; delayMs: number | undefined }
  | { call: 'dead-letter'; reason: string | undefined };

export type BrokerAction =
  | { type: 'ack' }
  | { type: 'requeue' }
  /** basic.nack without requeue: the broker dead-letters it through the queue's DLX, or drops it. */
  | { type: 'reject'; reason: DeadLetterReason | undefined }
  | { type: 'retry'; delayMs: number }
  /**
   * `detail`: the handler's own words, from ctx.deadLetter(reason), kept as `x-warren-reason`.
   * `trimHeaders`: the copy leaves out the message's own headers (they could not be copied).
   */
  | { type: 'dead-letter'; reason: DeadLetterReason; detail?: string; trimHeaders?: boolean }
  | { type: 'none' };

/** What happened to a delivery that calls for a decision. */
export type DeliveryEvent =
  /** The delivery's handler is about to run (it may have waited for a free concurrency slot). */
  | { on: 'handler-start' }
  /** The handler finished (or the body was refused before it); `settled`: the handler already settled the delivery. */
  | { on: 'handler-done'; outcome: Outcome; settled: boolean }
  | { on: 'manual-call'; call: ManualCall }
  /** The copy a retry or dead-letter needs was not confirmed; `permanent`: it can never be published (its headers cannot be encoded). */
  | { on: 'copy-failed'; action: Extract<BrokerAction, { type: 'retry' | 'dead-letter' }>; permanent: boolean }
  /** stop() reached its deadline with this delivery still waiting for a handler. */
  | { on: 'stop-deadline' };

/** The consumer's settings and this delivery's facts that the rule reads. */
export interface Rule {
  ackMode: AckMode;
  onError: OnError;
  /** Undefined, or maxAttempts 1: no retry. */
  retry: RetryPolicy | undefined;
  /** The attempt this delivery is (1 for the first). */
  attempt: number;
  /** The queue dead-letters to a queue warren can publish copies to (`deadLetter` in the topology). */
  deadLetterQueue: boolean;
}

const NONE: BrokerAction = Object.freeze({ type: 'none' });
/** The plain ack, shared: the hot path allocates no action for it. */
export const ACK: BrokerAction = Object.freeze({ type: 'ack' });
const REQUEUE: BrokerAction = Object.freeze({ type: 'requeue' });

/** Decides the broker action for `event`. Throws ConfigError only for ctx.retry() with no delay to use. */
export function decide(event: DeliveryEvent, rule: Rule): BrokerAction {
  switch (event.on) {
    case 'handler-start':
      return rule.ackMode === 'none' ? ACK : NONE;
    case 'handler-done':
      if (rule.ackMode === 'none' || event.settled) return NONE;
      return afterHandler(event.outcome, rule);
    case 'manual-call':
      return manual(event.call, rule);
    case 'copy-failed':
      return copyFailed(event.action, event.permanent, rule);
    case 'stop-deadline':
      return REQUEUE;
  }
}

function afterHandler(outcome: Outcome, rule: Rule): BrokerAction {
  switch (outcome.kind) {
    case 'invalid':
      return deadLetter('invalid', rule);
    case 'handled':
      return rule.ackMode === 'auto' ? ACK : NONE;
    case 'failed': {
      if (isNonRetryable(outcome.error)) return deadLetter('non-retryable', rule);
      const policy = rule.retry;
      if (policy !== undefined && policy.maxAttempts > 1) {
        return rule.attempt < policy.maxAttempts ? { type: 'retry', delayMs: retryDelay(policy, rule.attempt) } : deadLetter('retries-exhausted', rule);
      }
      return rule.onError === 'requeue' ? REQUEUE : deadLetter('handler-failed', rule);
    }
  }
}

function manual(call: ManualCall, rule: Rule): BrokerAction {
  switch (call.call) {
    case 'ack':
      return ACK;
    case 'nack':
      return call.requeue ? REQUEUE : { type: 'reject', reason: undefined };
    case 'reject':
      return { type: 'reject', reason: undefined };
    case 'dead-letter': {
      const action = deadLetter('handler', rule);
      return call.reason !== undefined && action.type === 'dead-letter' ? { ...action, detail: call.reason } : action;
    }
    case 'retry': {
      const policy = rule.retry;
      if (policy !== undefined && rule.attempt >= policy.maxAttempts) return deadLetter('retries-exhausted', rule);
      if (call.delayMs !== undefined) {
        // Bounded: a delay the policy does not declare is rounded up to a fixed ladder of waits.
        const delayMs = retryTierFor(call.delayMs, policy);
        if (delayMs === undefined) throw new ConfigError('ctx.retry()', [`delay: ${call.delayMs} ms is longer than the longest retry wait (24 h); schedule it some other way`]);
        return { type: 'retry', delayMs };
      }
      const delayMs = policy !== undefined && policy.maxAttempts > 1 ? retryDelay(policy, rule.attempt) : undefined;
      if (delayMs === undefined || !(delayMs >= 1)) {
        throw new ConfigError('ctx.retry()', ["delay: give a delay (e.g. { delay: '10s' }) or a retry policy on the consumer"]);
      }
      return { type: 'retry', delayMs };
    }
  }
}

/** A copy that failed for now (the broker is away) is given back or rejected; one that can never be published becomes a dead letter without the message's own headers, and a requeue that could never make progress is never chosen. */
function copyFailed(action: Extract<BrokerAction, { type: 'retry' | 'dead-letter' }>, permanent: boolean, rule: Rule): BrokerAction {
  if (action.type === 'retry') {
    if (!permanent) return REQUEUE;
    const dl = deadLetter('retry-failed', rule);
    return dl.type === 'dead-letter' ? { ...dl, trimHeaders: true } : dl;
  }
  if (permanent && action.trimHeaders !== true) return { ...action, trimHeaders: true };
  return { type: 'reject', reason: action.reason };
}

function deadLetter(reason: DeadLetterReason, rule: Rule): BrokerAction {
  return rule.deadLetterQueue ? { type: 'dead-letter', reason } : { type: 'reject', reason };
}

/**
 * By its code, not only by class: the handler may throw the NonRetryableError of another copy of
 * warren (an app module loaded by the `warren` command from its own node_modules or sources).
 */
function isNonRetryable(error: unknown): boolean {
  return error instanceof NonRetryableError || (error instanceof Error && errorCode(error) === 'NON_RETRYABLE');
}
