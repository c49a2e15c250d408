import { describe, expect, it } from 'vitest';
import { diff } from '../../src/declare.js';

describe('topology mismatch diff', () => {
  it('lists flags and arguments that differ, and nothing else', () => {
    expect(
      diff(
        { durable: true, auto_delete: false, exclusive: false, arguments: { 'x-max-length': 10, 'x-queue-type': 'quorum' } },
        { durable: true, auto_delete: false, exclusive: false, arguments: { 'x-max-length': 5, 'x-queue-type': 'quorum' } },
      ),
    ).toEqual([{ argument: 'x-max-length', declared: 10, actual: 5 }]);
  });

  it('names an argument present on one side only, and a differing exchange type', () => {
    expect(diff({ type: 'topic', durable: true, arguments: {} }, { type: 'direct', durable: false, arguments: { 'alternate-exchange': 'ae' } })).toEqual([
      { argument: 'type', declared: 'topic', actual: 'direct' },
      { argument: 'durable', declared: true, actual: false },
      { argument: 'alternate-exchange', declared: undefined, actual: 'ae' },
    ]);
  });
});
