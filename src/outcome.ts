import { NonRetryableError, type RetryPolicy } from './retry.js';

/**
 * The one rule that maps what happened to a delivery onto what warren tells the broker.
 *
 * | ack mode     | outcome                                   | action                                  |
 * |--------------|-------------------------------------------|-----------------------------------------|
 * | none         | anything                                  | none (acked as the handler started)      |
 * | auto, manual | body undecodable or fails the schema      | dead-letter (reason `invalid`), at once  |
 * | auto         | handler resolved                          | ack                                     |
 * | manual       | handler resolved                          | none (the handler settled it)            |
 * | auto, manual | handler threw NonRetryableError           | dead-letter (`non-retryable`)            |
 * | auto, manual | handler threw, retry policy, attempts left | retry after the policy's delay          |
 * | auto, manual | handler threw, retry policy, none left    | dead-letter (`retries-exhausted`)        |
 * | auto, manual | handler threw, no retry, onError requeue  | requeue                                 |
 * | auto, manual | handler threw, no retry, onError dead-letter | dead-letter (`handler-failed`)       |
 *
 * A delivery the handler already settled (manual mode) is never settled again.
 */

export type AckMode = 'auto' | 'manual' | 'none';

/** What happens to a message whose handler throws when there is no retry policy: dead-letter it (default) or requeue it. */
export type OnError = 'dead-letter' | 'requeue';

export type DeadLetterReason = 'invalid' | 'non-retryable' | 'retries-exhausted' | 'handler-failed' | 'handler';

export type Outcome = { kind: 'handled' } | { kind: 'failed'; error: unknown } | { kind: 'invalid'; error: unknown };

export type BrokerAction =
  | { type: 'ack' }
  | { type: 'requeue' }
  | { type: 'retry'; delayMs: number }
  | { type: 'dead-letter'; reason: DeadLetterReason }
  | { type: 'none' };

export interface Rule {
  ackMode: AckMode;
  onError: OnError;
  /** Undefined, or maxAttempts 1: no retry. */
  retry: RetryPolicy | undefined;
  /** The attempt this delivery is (1 for the first). */
  attempt: number;
  delayFor: (policy: RetryPolicy, retry: number) => number;
}

const NONE: BrokerAction = Object.freeze({ type: 'none' });
/** The plain ack, shared: the hot path allocates no action for it. */
export const ACK: BrokerAction = Object.freeze({ type: 'ack' });

export function decideAction(outcome: Outcome, rule: Rule, alreadySettled = false): BrokerAction {
  if (rule.ackMode === 'none' || alreadySettled) return NONE;
  switch (outcome.kind) {
    case 'invalid':
      return { type: 'dead-letter', reason: 'invalid' };
    case 'handled':
      return rule.ackMode === 'auto' ? ACK : NONE;
    case 'failed': {
      if (outcome.error instanceof NonRetryableError) return { type: 'dead-letter', reason: 'non-retryable' };
      const policy = rule.retry;
      if (policy !== undefined && policy.maxAttempts > 1) {
        return rule.attempt < policy.maxAttempts
          ? { type: 'retry', delayMs: rule.delayFor(policy, rule.attempt) }
          : { type: 'dead-letter', reason: 'retries-exhausted' };
      }
      return rule.onError === 'requeue' ? { type: 'requeue' } : { type: 'dead-letter', reason: 'handler-failed' };
    }
  }
}
