import { describe, expect, it } from 'vitest';
import { NonRetryableError } from '../../src/index.js';
import { decideAction, type AckMode, type BrokerAction, type OnError, type Outcome, type Rule } from '../../src/outcome.js';
import { retryDelay, retryPolicySchema } from '../../src/retry.js';

const handled: Outcome = { kind: 'handled' };
const failed: Outcome = { kind: 'failed', error: new Error('x') };
const fatal: Outcome = { kind: 'failed', error: new NonRetryableError('card declined') };
const invalid: Outcome = { kind: 'invalid', error: new Error('bad json') };
const policy = retryPolicySchema.parse({ maxAttempts: 3, delays: ['1s', '10s'] });

function rule(ackMode: AckMode, onError: OnError = 'dead-letter', attempt = 1, retry = false): Rule {
  return { ackMode, onError, attempt, retry: retry ? policy : undefined, delayFor: retryDelay };
}

describe('the outcome → broker action rule', () => {
  it.each<[string, Outcome, Rule, BrokerAction]>([
    ['auto, handled', handled, rule('auto'), { type: 'ack' }],
    ['manual, handled', handled, rule('manual'), { type: 'none' }],
    ['auto, failed, no retry', failed, rule('auto'), { type: 'dead-letter', reason: 'handler-failed' }],
    ['auto, failed, no retry, onError requeue', failed, rule('auto', 'requeue'), { type: 'requeue' }],
    ['manual, failed, no retry, onError requeue', failed, rule('manual', 'requeue'), { type: 'requeue' }],
    ['auto, failed, attempt 1 of 3', failed, rule('auto', 'dead-letter', 1, true), { type: 'retry', delayMs: 1000 }],
    ['auto, failed, attempt 2 of 3', failed, rule('auto', 'dead-letter', 2, true), { type: 'retry', delayMs: 10_000 }],
    ['auto, failed, attempt 3 of 3', failed, rule('auto', 'dead-letter', 3, true), { type: 'dead-letter', reason: 'retries-exhausted' }],
    ['auto, NonRetryableError with attempts left', fatal, rule('auto', 'dead-letter', 1, true), { type: 'dead-letter', reason: 'non-retryable' }],
    ['auto, invalid, even with requeue and retry', invalid, rule('auto', 'requeue', 1, true), { type: 'dead-letter', reason: 'invalid' }],
    ['manual, invalid', invalid, rule('manual'), { type: 'dead-letter', reason: 'invalid' }],
    ['none, failed', failed, rule('none', 'requeue', 1, true), { type: 'none' }],
    ['none, invalid', invalid, rule('none'), { type: 'none' }],
  ])('%s', (_name, outcome, r, expected) => {
    expect(decideAction(outcome, r)).toEqual(expected);
  });

  it('never settles a delivery twice: a message the handler already settled gets no action', () => {
    for (const outcome of [handled, failed, invalid, fatal]) {
      expect(decideAction(outcome, rule('manual', 'requeue', 1, true), true)).toEqual({ type: 'none' });
    }
  });
});
