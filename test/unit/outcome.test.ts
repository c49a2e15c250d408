import { describe, expect, it } from 'vitest';
import { decideAction, type AckMode, type BrokerAction, type OnError, type Outcome, type Rule } from '../../src/outcome.js';
import { NonRetryableError } from '../../src/index.js';
import { retryDelay, type RetryPolicy } from '../../src/retry.js';

const handled: Outcome = { kind: 'handled' };
const failed: Outcome = { kind: 'failed', error: new Error('handler threw') };
const invalid: Outcome = { kind: 'invalid', error: new Error('body is not JSON') };
const outcomes = { handled, failed, invalid };

const ACK: BrokerAction = { type: 'ack' };
const NONE: BrokerAction = { type: 'none' };
const REQUEUE: BrokerAction = { type: 'requeue' };
const DEAD_LETTER_FAILED: BrokerAction = { type: 'dead-letter', reason: 'handler-failed' };
const DEAD_LETTER_INVALID: BrokerAction = { type: 'dead-letter', reason: 'invalid' };

function rule(ackMode: AckMode, onError: OnError, retry?: RetryPolicy, attempt = 1): Rule {
  return { ackMode, onError, retry, attempt, delayFor: retryDelay };
}

describe('the outcome → broker action rule (no retry policy)', () => {
  // Every ack mode × outcome × onError, as in the README's table.
  it.each<[AckMode, keyof typeof outcomes, OnError, BrokerAction]>([
    ['auto', 'handled', 'dead-letter', ACK],
    ['auto', 'handled', 'requeue', ACK],
    ['auto', 'failed', 'dead-letter', DEAD_LETTER_FAILED],
    ['auto', 'failed', 'requeue', REQUEUE],
    ['auto', 'invalid', 'dead-letter', DEAD_LETTER_INVALID],
    ['auto', 'invalid', 'requeue', DEAD_LETTER_INVALID],
    ['manual', 'handled', 'dead-letter', NONE],
    ['manual', 'handled', 'requeue', NONE],
    ['manual', 'failed', 'dead-letter', DEAD_LETTER_FAILED],
    ['manual', 'failed', 'requeue', REQUEUE],
    ['manual', 'invalid', 'dead-letter', DEAD_LETTER_INVALID],
    ['manual', 'invalid', 'requeue', DEAD_LETTER_INVALID],
    ['none', 'handled', 'dead-letter', NONE],
    ['none', 'handled', 'requeue', NONE],
    ['none', 'failed', 'dead-letter', NONE],
    ['none', 'failed', 'requeue', NONE],
    ['none', 'invalid', 'dead-letter', NONE],
    ['none', 'invalid', 'requeue', NONE],
  ])('ackMode %s, %s, onError %s → %o', (ackMode, outcome, onError, expected) => {
    expect(decideAction(outcomes[outcome], rule(ackMode, onError))).toEqual(expected);
  });

  it('never settles a delivery twice: one the handler already settled gets no action, whatever the outcome', () => {
    for (const ackMode of ['auto', 'manual', 'none'] as const) {
      for (const onError of ['dead-letter', 'requeue'] as const) {
        for (const outcome of [handled, failed, invalid]) {
          expect(decideAction(outcome, rule(ackMode, onError), true)).toEqual(NONE);
          expect(decideAction(outcome, rule(ackMode, onError, { maxAttempts: 3, delays: [1_000] }), true)).toEqual(NONE);
        }
      }
    }
  });

  it('a NonRetryableError dead-letters even with onError requeue', () => {
    const nonRetryable: Outcome = { kind: 'failed', error: new NonRetryableError('card declined') };
    for (const ackMode of ['auto', 'manual'] as const) {
      expect(decideAction(nonRetryable, rule(ackMode, 'requeue'))).toEqual({ type: 'dead-letter', reason: 'non-retryable' });
    }
    expect(decideAction(nonRetryable, rule('none', 'requeue'))).toEqual(NONE);
  });
});

describe('the outcome → broker action rule with a retry policy', () => {
  const policy: RetryPolicy = { maxAttempts: 3, delays: [1_000, 5_000] };

  it('retries a failure after the delay for that attempt until maxAttempts, then dead-letters', () => {
    for (const ackMode of ['auto', 'manual'] as const) {
      expect(decideAction(failed, rule(ackMode, 'dead-letter', policy, 1))).toEqual({ type: 'retry', delayMs: 1_000 });
      expect(decideAction(failed, rule(ackMode, 'dead-letter', policy, 2))).toEqual({ type: 'retry', delayMs: 5_000 });
      expect(decideAction(failed, rule(ackMode, 'dead-letter', policy, 3))).toEqual({ type: 'dead-letter', reason: 'retries-exhausted' });
      expect(decideAction(failed, rule(ackMode, 'dead-letter', policy, 7))).toEqual({ type: 'dead-letter', reason: 'retries-exhausted' });
    }
  });

  it('does not retry invalid input, a NonRetryableError, or a success', () => {
    expect(decideAction(invalid, rule('auto', 'dead-letter', policy))).toEqual(DEAD_LETTER_INVALID);
    expect(decideAction({ kind: 'failed', error: new NonRetryableError('no') }, rule('auto', 'dead-letter', policy))).toEqual({
      type: 'dead-letter',
      reason: 'non-retryable',
    });
    expect(decideAction(handled, rule('auto', 'dead-letter', policy))).toEqual(ACK);
    expect(decideAction(handled, rule('manual', 'dead-letter', policy))).toEqual(NONE);
  });

  it('maxAttempts 1 means no retry: onError decides', () => {
    const once: RetryPolicy = { maxAttempts: 1 };
    expect(decideAction(failed, rule('auto', 'requeue', once))).toEqual(REQUEUE);
    expect(decideAction(failed, rule('auto', 'dead-letter', once))).toEqual(DEAD_LETTER_FAILED);
  });

  it('ackMode none ignores the policy', () => {
    expect(decideAction(failed, rule('none', 'dead-letter', policy))).toEqual(NONE);
  });
});
