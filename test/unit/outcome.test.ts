import { describe, expect, it } from 'vitest';
import { decideAction, type AckMode, type OnError, type Outcome } from '../../src/outcome.js';

const handled: Outcome = { kind: 'handled' };
const failed: Outcome = { kind: 'failed', error: new Error('x') };
const invalid: Outcome = { kind: 'invalid', error: new Error('bad json') };

describe('the outcome → broker action rule', () => {
  it.each<[AckMode, Outcome, OnError, ReturnType<typeof decideAction>]>([
    ['auto', handled, 'dead-letter', { type: 'ack' }],
    ['auto', handled, 'requeue', { type: 'ack' }],
    ['auto', failed, 'dead-letter', { type: 'nack', requeue: false }],
    ['auto', failed, 'requeue', { type: 'nack', requeue: true }],
    ['auto', invalid, 'dead-letter', { type: 'nack', requeue: false }],
    ['auto', invalid, 'requeue', { type: 'nack', requeue: false }],
    ['manual', handled, 'dead-letter', { type: 'none' }],
    ['manual', failed, 'dead-letter', { type: 'nack', requeue: false }],
    ['manual', failed, 'requeue', { type: 'nack', requeue: true }],
    ['manual', invalid, 'requeue', { type: 'nack', requeue: false }],
    ['none', handled, 'dead-letter', { type: 'none' }],
    ['none', failed, 'requeue', { type: 'none' }],
    ['none', invalid, 'dead-letter', { type: 'none' }],
  ])('%s mode, %o, onError %s → %o', (mode, outcome, onError, expected) => {
    expect(decideAction(outcome, mode, onError)).toEqual(expected);
  });

  it('never settles a delivery twice: a message the handler already settled gets no action', () => {
    for (const outcome of [handled, failed, invalid]) {
      expect(decideAction(outcome, 'manual', 'requeue', true)).toEqual({ type: 'none' });
    }
  });

  it('never requeues an invalid message, whatever onError says (no requeue loop)', () => {
    for (const mode of ['auto', 'manual'] as const) {
      expect(decideAction(invalid, mode, 'requeue')).toEqual({ type: 'nack', requeue: false });
    }
  });
});
