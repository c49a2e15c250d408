import type { BrokerAction, DeadLetterReason } from './outcome.js';

/** What became of a consumer's deliveries since it started, as `health().consumers[i]` shows. */
export interface ConsumerCounts {
  /** Deliveries received. */
  delivered: number;
  /** Acked as handled (with ackMode 'none': acked as the handler started). */
  acked: number;
  /** Sent to a wait queue to be retried later. */
  retried: number;
  /** Returned to the queue (basic.nack with requeue). */
  requeued: number;
  /** Nacked without requeue, left to the broker's own dead-lettering: ctx.reject() / ctx.nack(), or a dead-letter with no dead-letter queue or whose copy failed. */
  rejected: number;
  /** Copied to the dead-letter queue with warren's reason headers, by reason. */
  deadLettered: Record<DeadLetterReason, number>;
}

export function newCounts(): ConsumerCounts {
  return {
    delivered: 0,
    acked: 0,
    retried: 0,
    requeued: 0,
    rejected: 0,
    deadLettered: { invalid: 0, 'non-retryable': 0, 'retries-exhausted': 0, 'handler-failed': 0, handler: 0, 'retry-failed': 0 },
  };
}

export function copyCounts(c: ConsumerCounts): ConsumerCounts {
  return { ...c, deadLettered: { ...c.deadLettered } };
}

/** Counts an action carried out. */
export function count(c: ConsumerCounts, action: BrokerAction): void {
  switch (action.type) {
    case 'ack':
      c.acked += 1;
      return;
    case 'requeue':
      c.requeued += 1;
      return;
    case 'reject':
      c.rejected += 1;
      return;
    case 'retry':
      c.retried += 1;
      return;
    case 'dead-letter':
      c.deadLettered[action.reason] += 1;
      return;
    case 'none':
      return;
  }
}
