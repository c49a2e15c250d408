/**
 * The one rule that maps what happened to a delivery onto what warren tells the broker.
 *
 * | ack mode | handler / decoding outcome           | broker action                         |
 * |----------|--------------------------------------|---------------------------------------|
 * | none     | anything                             | nothing (the broker acked on delivery) |
 * | any      | body undecodable or fails the schema | nack, no requeue → dead-letter queue  |
 * | auto     | handler resolved                     | ack                                   |
 * | manual   | handler resolved                     | nothing (the handler settles itself)  |
 * | auto/manual | handler threw, onError 'dead-letter' | nack, no requeue → dead-letter queue |
 * | auto/manual | handler threw, onError 'requeue'     | nack, requeue                       |
 *
 * In manual mode a delivery the handler already settled is never settled again.
 */

export type AckMode = 'auto' | 'manual' | 'none';

/** What happens to a message whose handler throws: dead-letter it (default) or put it back on the queue. */
export type OnError = 'dead-letter' | 'requeue';

export type Outcome = { kind: 'handled' } | { kind: 'failed'; error: unknown } | { kind: 'invalid'; error: unknown };

export type BrokerAction = { type: 'ack' } | { type: 'nack'; requeue: boolean } | { type: 'none' };

const ACK: BrokerAction = { type: 'ack' };
const NONE: BrokerAction = { type: 'none' };
const DEAD_LETTER: BrokerAction = { type: 'nack', requeue: false };
const REQUEUE: BrokerAction = { type: 'nack', requeue: true };

export function decideAction(outcome: Outcome, ackMode: AckMode, onError: OnError, alreadySettled = false): BrokerAction {
  if (ackMode === 'none' || alreadySettled) return NONE;
  switch (outcome.kind) {
    case 'invalid':
      return DEAD_LETTER;
    case 'handled':
      return ackMode === 'auto' ? ACK : NONE;
    case 'failed':
      return onError === 'requeue' ? REQUEUE : DEAD_LETTER;
  }
}
