import { backoffCeiling, type BackoffOptions } from '../amqp/backoff.js';
import type { Channel, Inbound } from '../amqp/transport.js';
import { copyProperties, type CopyPublisher } from '../dead-letter/copy.js';
import { bounded, Header, MAX_ERROR_CODE, MAX_ERROR_MESSAGE, MAX_ISSUES_JSON } from '../dead-letter/headers.js';
import { waitQueueName } from '../dead-letter/wait-queues.js';
import { deadLetterChannel, retryChannel } from '../instrument/channels.js';
import { UnroutableError, ValidationError } from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import { count, type ConsumerCounts } from './counters.js';
import type { Delivery } from './delivery.js';
import { decide, type BrokerAction, type DeadLetterReason, type Rule } from './outcome.js';

export interface SettlerDeps {
  client: string;
  consumer: string;
  queue: string;
  /** Where dead-letter copies go (from the queue's topology), or undefined: the rule then rejects instead. */
  deadLetter: { exchange: string; routingKey: string | undefined } | undefined;
  publisher: CopyPublisher;
  log: Logger;
  counts: ConsumerCounts;
  /** True while `channel` is the consumer's live channel. */
  isCurrent: (channel: Channel) => boolean;
  /** Declares the wait queue for a delay tier (idempotent: once per connection). */
  ensureWaitQueue: (delayMs: number) => Promise<void>;
  /** Forgets that a wait queue was declared (it was deleted under us), so the next ensureWaitQueue declares it again. */
  forgetWaitQueue: (delayMs: number) => void;
}

type CopyAction = Extract<BrokerAction, { type: 'retry' | 'dead-letter' }>;

/** What a delivery from a closed channel got: nothing (the broker redelivers it). */
const LEFT_TO_BROKER: BrokerAction = Object.freeze({ type: 'none' });

/**
 * Carries out the BrokerAction the rule decided for one delivery, and counts it. Retry and
 * dead-letter publish a copy with confirms first and ack the original only after: a crash in
 * between duplicates, never loses. When the copy fails, the rule decides again.
 */
/** How long a message whose retry copy failed for now is held before it is requeued: 1 s, doubling to 30 s while copies keep failing. */
const HOLD: BackoffOptions = { initialDelayMs: 1_000, maxDelayMs: 30_000, factor: 2 };

export class Settler {
  readonly #d: SettlerDeps;
  /** Retry copies that failed in a row (reset by one that is confirmed). */
  #copyFailures = 0;
  /** Messages held before their requeue: released at once by releaseHolds(). */
  readonly #holds = new Set<() => void>();
  #released = false;

  constructor(deps: SettlerDeps) {
    this.#d = deps;
  }

  /** Synchronous for ack, requeue, reject and none; retry and dead-letter return the copy's publish. */
  settle(delivery: Delivery, action: BrokerAction, error?: unknown): Promise<void> | undefined {
    if (action.type === 'none') return;
    delivery.settled = true;
    if (!this.#d.isCurrent(delivery.channel)) {
      // The channel this came on is gone: the broker has already requeued the message. Acking its
      // tag on a new channel would ack a different message, or close the channel (406 unknown tag).
      this.#d.log.debug({ messageId: delivery.msg.messageId, action: action.type }, 'delivery from a closed channel; not settling it (the broker redelivers it)');
      delivery.action = LEFT_TO_BROKER;
      return;
    }
    delivery.action = action;
    if (action.type === 'retry' || action.type === 'dead-letter') {
      delivery.settling = this.#copy(delivery, action, error);
      return delivery.settling;
    }
    this.#wire(delivery, action, error, false);
    return undefined;
  }

  /** The actions that are one frame on the channel. `fallback`: instead of a copy that failed (already logged). */
  #wire(delivery: Delivery, action: BrokerAction, error: unknown, fallback: boolean): void {
    switch (action.type) {
      case 'ack':
        delivery.acker.ack(delivery.slot);
        break;
      case 'requeue':
        delivery.acker.nack(delivery.slot, true);
        break;
      case 'reject':
        if (action.reason !== undefined) {
          // A dead-letter without a dead-letter queue in the topology, or whose copy failed.
          if (!fallback) {
            this.#d.log[isDecision(action.reason) ? 'warn' : 'error'](
              { messageId: delivery.msg.messageId, reason: action.reason, err: error },
              'message rejected; its queue has no dead-letter queue, so the broker discards it',
            );
          }
          this.#announceDeadLetter(delivery.msg, action.reason, error, undefined);
        }
        delivery.acker.nack(delivery.slot, false);
        break;
      default:
        return;
    }
    count(this.#d.counts, action);
  }

  async #copy(delivery: Delivery, first: CopyAction, error: unknown): Promise<void> {
    const { msg } = delivery;
    const rule = delivery.rule as Rule;
    let action = first;
    let redeclared = false;
    for (;;) {
      try {
        if (action.type === 'retry') await this.#publishRetry(msg, rule.attempt, action.delayMs, error);
        else await this.#publishDeadLetterCopy(msg, rule.attempt, action, error);
        break;
      } catch (err) {
        if (action.type === 'retry' && err instanceof UnroutableError && !redeclared) {
          // Its wait queue was deleted (the broker returned the copy): declare it again, once, and
          // try again, rather than requeue the message into the same failure.
          this.#d.log.warn({ messageId: msg.messageId, waitQueue: waitQueueName(this.#d.queue, action.delayMs) }, 'the retry wait queue is gone; declaring it again');
          this.#d.forgetWaitQueue(action.delayMs);
          redeclared = true;
          continue;
        }
        // A copy that can never be published (its headers cannot be encoded) must still end the
        // message: the rule turns it into a dead letter with the original's headers trimmed.
        const next = decide({ on: 'copy-failed', action, permanent: err instanceof ValidationError }, rule);
        // A requeue brings the message straight back as it was: held first (its prefetch slot and
        // handler slot with it), so a copy that keeps failing cannot become a tight loop.
        const holdMs = next.type === 'requeue' ? backoffCeiling(this.#copyFailures++, HOLD) : 0;
        this.#d.log.error(
          { messageId: msg.messageId, err, instead: next.type === 'dead-letter' ? `dead-letter (${next.reason}, headers trimmed)` : next.type, holdMs },
          copyFailureText(action, next),
        );
        delivery.action = next;
        if (next.type === 'dead-letter') {
          action = next;
          continue;
        }
        if (holdMs > 0) await this.#hold(holdMs);
        if (this.#d.isCurrent(delivery.channel)) this.#wire(delivery, next, error, true);
        return;
      }
    }
    if (action.type === 'retry') {
      this.#copyFailures = 0;
      const { attempt } = rule;
      this.#d.log.warn({ messageId: msg.messageId, attempt, nextAttempt: attempt + 1, delayMs: action.delayMs, err: error }, 'handler failed; retrying later');
      if (retryChannel.hasSubscribers) {
        retryChannel.publish({ client: this.#d.client, consumer: this.#d.consumer, queue: this.#d.queue, messageId: msg.messageId, attempt, delayMs: action.delayMs, waitQueue: waitQueueName(this.#d.queue, action.delayMs) });
      }
    } else {
      this.#d.log[isDecision(action.reason) ? 'warn' : 'error']({ messageId: msg.messageId, reason: action.reason, err: error }, 'message dead-lettered');
      const target = this.#d.deadLetter;
      this.#announceDeadLetter(msg, action.reason, error, target !== undefined ? { exchange: target.exchange, routingKey: target.routingKey ?? msg.routingKey } : undefined);
    }
    count(this.#d.counts, action);
    if (this.#d.isCurrent(delivery.channel)) {
      delivery.acker.ack(delivery.slot);
    } else {
      this.#d.log.warn({ messageId: msg.messageId }, 'channel closed after the copy was confirmed; the broker will redeliver the original too (a duplicate)');
    }
  }

  /** Ends every hold now (stop() calls it: a held message is requeued before the channel closes). */
  releaseHolds(): void {
    this.#released = true;
    for (const release of [...this.#holds]) release();
  }

  #hold(ms: number): Promise<void> {
    if (this.#released) return Promise.resolve();
    return new Promise((resolve) => {
      const release = (): void => {
        clearTimeout(timer);
        this.#holds.delete(release);
        resolve();
      };
      const timer = setTimeout(release, ms);
      this.#holds.add(release);
    });
  }

  async #publishRetry(msg: Inbound, attempt: number, delayMs: number, error: unknown): Promise<void> {
    const waitQueue = waitQueueName(this.#d.queue, delayMs);
    const headers = { ...this.#failureHeaders(msg, error, false), [Header.attempt]: attempt + 1 };
    await this.#d.ensureWaitQueue(delayMs);
    await this.#d.publisher.publishCopy('', waitQueue, msg.body, copyProperties(msg, headers, this.#fallbackId(msg)));
  }

  async #publishDeadLetterCopy(msg: Inbound, attempt: number, action: Extract<BrokerAction, { type: 'dead-letter' }>, error: unknown): Promise<void> {
    const target = this.#d.deadLetter;
    if (target === undefined) throw new Error('the queue has no dead-letter target'); // the rule rejects instead; never reached
    const trim = action.trimHeaders === true;
    const headers: Record<string, unknown> = {
      ...this.#failureHeaders(msg, error, trim),
      [Header.reason]: action.detail ?? action.reason,
      [Header.attempts]: attempt,
      [Header.originQueue]: this.#d.queue,
    };
    if (error instanceof ValidationError) headers[Header.validationIssues] = bounded(JSON.stringify(error.issues), MAX_ISSUES_JSON);
    if (trim) headers[Header.trimmedHeaders] = trimmedNames(msg.headers);
    const properties = copyProperties(msg, headers, this.#fallbackId(msg), { keepHeaders: !trim });
    await this.#d.publisher.publishCopy(target.exchange, target.routingKey ?? msg.routingKey, msg.body, properties);
  }

  #fallbackId(msg: Inbound): string {
    return `${this.#d.queue}:${msg.deliveryTag}:${Date.now()}`;
  }

  #announceDeadLetter(msg: Inbound, reason: DeadLetterReason, error: unknown, copiedTo: { exchange: string; routingKey: string } | undefined): void {
    if (!deadLetterChannel.hasSubscribers) return;
    deadLetterChannel.publish({ client: this.#d.client, consumer: this.#d.consumer, queue: this.#d.queue, messageId: msg.messageId, reason, errorCode: errorCode(error), copiedTo });
  }

  /** Warren's failure headers: what went wrong, when, and where the message was first published (`fresh`: ignoring the message's own headers). */
  #failureHeaders(msg: Inbound, error: unknown, fresh: boolean): Record<string, unknown> {
    const old = fresh ? {} : msg.headers;
    const now = new Date().toISOString();
    return {
      [Header.errorCode]: errorCode(error),
      [Header.errorMessage]: bounded(errorText(error), MAX_ERROR_MESSAGE),
      [Header.originalExchange]: old[Header.originalExchange] ?? msg.exchange,
      [Header.originalRoutingKey]: old[Header.originalRoutingKey] ?? msg.routingKey,
      [Header.firstFailureAt]: old[Header.firstFailureAt] ?? now,
      [Header.lastFailureAt]: now,
      [Header.consumer]: this.#d.consumer,
    };
  }
}

function copyFailureText(action: CopyAction, next: BrokerAction): string {
  const what = action.type === 'retry' ? 'the retry copy' : action.trimHeaders === true ? 'the dead letter, even with its headers trimmed' : 'the dead letter';
  const instead =
    next.type === 'dead-letter' ? 'dead-lettering it with its own headers left out instead' : next.type === 'requeue' ? 'requeueing the message instead' : 'rejecting the message to the broker instead';
  return `could not publish ${what}; ${instead}`;
}

/** The names of the headers a trimmed dead letter leaves out (bounded: the list itself must fit). */
function trimmedNames(headers: Readonly<Record<string, unknown>>): string {
  return bounded(Object.keys(headers).join(', '), MAX_ERROR_MESSAGE);
}

/** A decision (invalid input, a refusal, the handler's choice) is a warning; a failure that ran out of chances is an error. */
function isDecision(reason: DeadLetterReason): boolean {
  return reason === 'invalid' || reason === 'handler' || reason === 'non-retryable';
}

/** `x-warren-error-code`: the error's own string `code` when it has one (every WarrenError does), else its class name. */
function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return bounded(code, MAX_ERROR_CODE);
    if (error instanceof Error) return error.name;
  }
  return 'UNKNOWN';
}

function errorText(error: unknown): string {
  if (error === undefined) return '';
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error) ?? 'unknown error';
  } catch {
    return 'a non-Error value that cannot be shown (a cycle or a BigInt)';
  }
}
