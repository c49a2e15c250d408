// THE rule (src/consume/outcome.ts): its doc comment, the README's table and this test are the
// same table, row by row. What the broker then does with each action is checked against
// RabbitMQ in test/integration (consume, retry) and, without a broker, in pipeline.test.ts.
import { describe, expect, it } from 'vitest';
import { decide, type BrokerAction, type DeliveryEvent, type Outcome, type Rule } from '../../src/consume/outcome.js';
import type { AckMode } from '../../src/define/consumer.js';
import type { RetryPolicy } from '../../src/define/retry-policy.js';
import { ConfigError, NonRetryableError } from '../../src/index.js';

const policy: RetryPolicy = { maxAttempts: 3, delays: [1_000, 5_000] };

function rule(ackMode: AckMode, o: Partial<Rule> = {}): Rule {
  return { ackMode, onError: 'dead-letter', retry: undefined, attempt: 1, deadLetterQueue: true, ...o };
}

const handled: Outcome = { kind: 'handled' };
const threw: Outcome = { kind: 'failed', error: new Error('handler threw') };
const invalid: Outcome = { kind: 'invalid', error: new Error('body is not JSON') };
const nonRetryable: Outcome = { kind: 'failed', error: new NonRetryableError('card declined') };
const done = (outcome: Outcome, settled = false): DeliveryEvent => ({ on: 'handler-done', outcome, settled });

const ACK: BrokerAction = { type: 'ack' };
const NONE: BrokerAction = { type: 'none' };
const REQUEUE: BrokerAction = { type: 'requeue' };
const REJECT: BrokerAction = { type: 'reject', reason: undefined };
const deadLetter = (reason: string): BrokerAction => ({ type: 'dead-letter', reason }) as BrokerAction;

type Row = [when: string, modes: AckMode[], what: string, event: DeliveryEvent, rule: Partial<Rule>, expected: BrokerAction];

// prettier-ignore
const TABLE: Row[] = [
  ['handler starts', ['none'], 'its handler is about to run', { on: 'handler-start' }, {}, ACK],
  ['handler starts', ['auto', 'manual'], 'its handler is about to run', { on: 'handler-start' }, {}, NONE],
  ['handler done', ['none'], 'anything: resolved', done(handled), {}, NONE],
  ['handler done', ['none'], 'anything: threw, with a policy', done(threw), { retry: policy }, NONE],
  ['handler done', ['none'], 'anything: invalid', done(invalid), {}, NONE],
  ['handler done', ['auto', 'manual'], 'body undecodable, or fails the schema', done(invalid), { onError: 'requeue', retry: policy }, deadLetter('invalid')],
  ['handler done', ['auto'], 'resolved', done(handled), {}, ACK],
  ['handler done', ['manual'], 'resolved', done(handled), {}, NONE],
  ['handler done', ['auto', 'manual'], 'threw NonRetryableError', done(nonRetryable), { onError: 'requeue', retry: policy }, deadLetter('non-retryable')],
  ['handler done', ['auto', 'manual'], 'threw; retry policy; attempt 1 of 3', done(threw), { retry: policy, attempt: 1 }, { type: 'retry', delayMs: 1_000 }],
  ['handler done', ['auto', 'manual'], 'threw; retry policy; attempt 2 of 3', done(threw), { retry: policy, attempt: 2 }, { type: 'retry', delayMs: 5_000 }],
  ['handler done', ['auto', 'manual'], 'threw; retry policy; last attempt', done(threw), { retry: policy, attempt: 3 }, deadLetter('retries-exhausted')],
  ['handler done', ['auto', 'manual'], 'threw; retry policy; past the last attempt', done(threw), { retry: policy, attempt: 7 }, deadLetter('retries-exhausted')],
  ['handler done', ['auto', 'manual'], "threw; no retry policy; onError 'requeue'", done(threw), { onError: 'requeue' }, REQUEUE],
  ['handler done', ['auto', 'manual'], "threw; maxAttempts 1 (no retry); onError 'requeue'", done(threw), { onError: 'requeue', retry: { maxAttempts: 1 } }, REQUEUE],
  ['handler done', ['auto', 'manual'], "threw; no retry policy; onError 'dead-letter'", done(threw), {}, deadLetter('handler-failed')],
  ['handler done', ['manual'], 'resolved, after the handler settled it', done(handled, true), {}, NONE],
  ['handler done', ['manual'], 'threw, after the handler settled it', done(threw, true), { retry: policy }, NONE],
  ['handler done', ['manual'], 'invalid, after the handler settled it', done(invalid, true), {}, NONE],
  ['manual call', ['manual'], 'ctx.ack()', { on: 'manual-call', call: { call: 'ack' } }, {}, ACK],
  ['manual call', ['manual'], 'ctx.nack({ requeue: true })', { on: 'manual-call', call: { call: 'nack', requeue: true } }, {}, REQUEUE],
  ['manual call', ['manual'], 'ctx.nack()', { on: 'manual-call', call: { call: 'nack', requeue: false } }, {}, REJECT],
  ['manual call', ['manual'], 'ctx.reject()', { on: 'manual-call', call: { call: 'reject' } }, {}, REJECT],
  ['manual call', ['manual'], "ctx.retry({ delay: '30s' }); attempts left", { on: 'manual-call', call: { call: 'retry', delayMs: 30_000 } }, { retry: policy, attempt: 2 }, { type: 'retry', delayMs: 30_000 }],
  ['manual call', ['manual'], 'ctx.retry(); attempts left: the policy delay', { on: 'manual-call', call: { call: 'retry', delayMs: undefined } }, { retry: policy, attempt: 2 }, { type: 'retry', delayMs: 5_000 }],
  ['manual call', ['manual'], "ctx.retry({ delay: '30s' }); no policy", { on: 'manual-call', call: { call: 'retry', delayMs: 30_000 } }, {}, { type: 'retry', delayMs: 30_000 }],
  ['manual call', ['manual'], "ctx.retry({ delay: '5s' }): a delay the policy declares", { on: 'manual-call', call: { call: 'retry', delayMs: 5_000 } }, { retry: policy }, { type: 'retry', delayMs: 5_000 }],
  ['manual call', ['manual'], "ctx.retry({ delay: '750ms' }): rounded up, not a new wait queue", { on: 'manual-call', call: { call: 'retry', delayMs: 750 } }, { retry: policy }, { type: 'retry', delayMs: 1_000 }],
  ['manual call', ['manual'], "ctx.retry({ delay: '42s' }), no policy: rounded up to the ladder", { on: 'manual-call', call: { call: 'retry', delayMs: 42_000 } }, {}, { type: 'retry', delayMs: 60_000 }],
  ['manual call', ['manual'], 'ctx.retry(); last attempt', { on: 'manual-call', call: { call: 'retry', delayMs: 30_000 } }, { retry: policy, attempt: 3 }, deadLetter('retries-exhausted')],
  ['manual call', ['manual'], "ctx.deadLetter('too small')", { on: 'manual-call', call: { call: 'dead-letter', reason: 'too small' } }, {}, { type: 'dead-letter', reason: 'handler', detail: 'too small' }],
  ['manual call', ['manual'], 'ctx.deadLetter()', { on: 'manual-call', call: { call: 'dead-letter', reason: undefined } }, {}, deadLetter('handler')],
  ['any dead-letter', ['auto', 'manual'], 'invalid, and the queue has no dead-letter queue', done(invalid), { deadLetterQueue: false }, { type: 'reject', reason: 'invalid' }],
  ['any dead-letter', ['auto', 'manual'], 'threw, last attempt, no dead-letter queue', done(threw), { retry: policy, attempt: 3, deadLetterQueue: false }, { type: 'reject', reason: 'retries-exhausted' }],
  ['any dead-letter', ['manual'], "ctx.deadLetter(), no dead-letter queue", { on: 'manual-call', call: { call: 'dead-letter', reason: 'too small' } }, { deadLetterQueue: false }, { type: 'reject', reason: 'handler' }],
  ['copy failed', ['auto', 'manual'], 'a retry copy could not be published (broker away)', { on: 'copy-failed', action: { type: 'retry', delayMs: 1_000 }, permanent: false }, {}, REQUEUE],
  ['copy failed', ['auto', 'manual'], 'a retry copy can never be published', { on: 'copy-failed', action: { type: 'retry', delayMs: 1_000 }, permanent: true }, {}, { type: 'dead-letter', reason: 'retry-failed', trimHeaders: true }],
  ['copy failed', ['auto', 'manual'], 'a retry copy can never be published, no dead-letter queue', { on: 'copy-failed', action: { type: 'retry', delayMs: 1_000 }, permanent: true }, { deadLetterQueue: false }, { type: 'reject', reason: 'retry-failed' }],
  ['copy failed', ['auto', 'manual'], 'a dead-letter copy can never be published', { on: 'copy-failed', action: { type: 'dead-letter', reason: 'invalid' }, permanent: true }, {}, { type: 'dead-letter', reason: 'invalid', trimHeaders: true }],
  ['copy failed', ['auto', 'manual'], 'a trimmed dead-letter copy can never be published either', { on: 'copy-failed', action: { type: 'dead-letter', reason: 'invalid', trimHeaders: true }, permanent: true }, {}, { type: 'reject', reason: 'invalid' }],
  ['copy failed', ['auto', 'manual'], 'a dead-letter copy could not be published (broker away)', { on: 'copy-failed', action: { type: 'dead-letter', reason: 'invalid' }, permanent: false }, {}, { type: 'reject', reason: 'invalid' }],
  ['stop deadline', ['auto', 'manual', 'none'], 'delivered, not started when stop() runs out of time', { on: 'stop-deadline' }, {}, REQUEUE],
];

describe('the rule: what happened to a delivery → what warren tells the broker', () => {
  const rows = TABLE.flatMap(([when, modes, what, event, r, expected]) => modes.map((mode) => [when, mode, what, event, r, expected] as const));
  it.each(rows)('%s | %s | %s', (_when, mode, _what, event, r, expected) => {
    expect(decide(event, rule(mode, r))).toEqual(expected);
  });

  it('refuses ctx.retry() with neither a delay nor a retry policy, and settles nothing', () => {
    expect(() => decide({ on: 'manual-call', call: { call: 'retry', delayMs: undefined } }, rule('manual'))).toThrow(ConfigError);
  });

  it('bounds the wait queues ad-hoc delays can create: any number of distinct delays use at most the ladder', () => {
    const tiers = new Set<number>();
    for (let ms = 1; ms <= 86_400_000; ms = Math.ceil(ms * 1.37)) {
      const action = decide({ on: 'manual-call', call: { call: 'retry', delayMs: ms } }, rule('manual'));
      expect(action.type).toBe('retry');
      if (action.type === 'retry') {
        expect(action.delayMs).toBeGreaterThanOrEqual(ms); // a retry delay is a minimum
        tiers.add(action.delayMs);
      }
    }
    expect(tiers.size).toBeLessThanOrEqual(11);
    expect(() => decide({ on: 'manual-call', call: { call: 'retry', delayMs: 86_400_001 } }, rule('manual'))).toThrow(ConfigError);
  });

  it('never decides a second action for a delivery the handler already settled', () => {
    for (const mode of ['auto', 'manual', 'none'] as const) {
      for (const outcome of [handled, threw, invalid, nonRetryable]) {
        for (const r of [{}, { retry: policy }, { onError: 'requeue' as const }, { deadLetterQueue: false }]) {
          expect(decide(done(outcome, true), rule(mode, r))).toEqual(NONE);
        }
      }
    }
  });
});
