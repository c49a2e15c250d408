import type { Channel, ConsumeMessage } from 'amqplib';
import type { Acker, AckSlot } from './acker.js';
import { copyProperties } from './copy.js';
import { messageOf, ValidationError, WarrenError } from './errors.js';
import type { Logger } from './logger.js';
import type { BrokerAction, DeadLetterReason } from './outcome.js';
import type { Publisher } from './producer.js';
import { attemptOf, bounded, Header, MAX_ERROR_MESSAGE, MAX_ISSUES_JSON, waitQueueName } from './retry.js';

/** A delivery and the channel it came on: it is settled on that channel or not at all. */
export interface Delivery {
  readonly msg: ConsumeMessage;
  readonly channel: Channel;
  /** The channel's ack coalescer and this delivery's place in it. */
  readonly acker: Acker;
  readonly slot: AckSlot;
  settled: boolean;
}

export interface SettlerDeps {
  consumer: string;
  queue: string;
  /** Where dead letters go (from the queue's topology), or undefined: then the broker's own DLX, if any, gets a plain nack. */
  deadLetter: { exchange: string; routingKey: string | undefined } | undefined;
  publisher: Publisher;
  log: Logger;
  /** True while `channel` is the consumer's live channel. */
  isCurrent: (channel: Channel) => boolean;
  /** Declares the wait queue for a delay tier (idempotent). */
  ensureWaitQueue: (delayMs: number) => Promise<void>;
}

/**
 * Carries out a BrokerAction on one delivery. Retry and dead-letter publish a copy with
 * confirms first and ack the original only after: a crash in between duplicates, never loses.
 */
export class Settler {
  readonly #d: SettlerDeps;

  constructor(deps: SettlerDeps) {
    this.#d = deps;
  }

  /** Synchronous for ack, requeue and none; retry and dead-letter return the copy's publish. */
  settle(delivery: Delivery, action: BrokerAction, error?: unknown): Promise<void> | undefined {
    if (action.type === 'none') return;
    delivery.settled = true;
    const messageId = delivery.msg.properties.messageId as string | undefined;
    if (!this.#d.isCurrent(delivery.channel)) {
      // The channel this came on is gone: the broker has already requeued the message. Acking its
      // tag on a new channel would ack a different message, or close the channel (406 unknown tag).
      this.#d.log.debug({ messageId, action: action.type }, 'delivery from a closed channel; not settling it (the broker redelivers it)');
      return;
    }
    switch (action.type) {
      case 'ack':
        delivery.acker.ack(delivery.slot);
        return;
      case 'requeue':
        delivery.acker.nack(delivery.slot, true);
        return;
      case 'retry':
        return this.#retry(delivery, action.delayMs, error);
      case 'dead-letter':
        return this.#deadLetter(delivery, action.reason, error);
    }
  }

  /** Manual mode's plain nack / reject: no copy, the broker dead-letters (or drops) it. */
  nack(delivery: Delivery, requeue: boolean): void {
    delivery.settled = true;
    if (this.#d.isCurrent(delivery.channel)) delivery.acker.nack(delivery.slot, requeue);
  }

  async #retry(delivery: Delivery, delayMs: number, error: unknown): Promise<void> {
    const { msg } = delivery;
    const attempt = attemptOf(msg.properties.headers);
    const waitQueue = waitQueueName(this.#d.queue, delayMs);
    const headers = { ...this.#failureHeaders(msg, error), [Header.attempt]: attempt + 1 };
    try {
      await this.#d.ensureWaitQueue(delayMs);
      await this.#d.publisher.publishRaw('', waitQueue, msg.content, copyProperties(msg, headers, `${this.#d.queue}:${msg.fields.deliveryTag}:${Date.now()}`));
    } catch (err) {
      this.#d.log.error({ messageId: msg.properties.messageId as unknown, waitQueue, err: messageOf(err) }, 'could not schedule the retry; requeueing the message instead');
      if (this.#d.isCurrent(delivery.channel)) delivery.acker.nack(delivery.slot, true);
      return;
    }
    this.#d.log.warn({ messageId: msg.properties.messageId as unknown, attempt, nextAttempt: attempt + 1, delayMs, err: errorText(error) }, 'handler failed; retrying later');
    this.#ackAfterCopy(delivery);
  }

  async #deadLetter(delivery: Delivery, reason: DeadLetterReason, error: unknown): Promise<void> {
    const { msg } = delivery;
    const messageId = msg.properties.messageId as string | undefined;
    const target = this.#d.deadLetter;
    // A decision (invalid input, a refusal, the handler's choice) is a warning; a failure that ran out of chances is an error.
    const level = reason === 'invalid' || reason === 'handler' || reason === 'non-retryable' ? 'warn' : 'error';
    if (target === undefined) {
      this.#d.log[level === 'warn' ? 'warn' : 'error']({ messageId, reason, err: errorText(error) }, 'message rejected; its queue has no dead-letter queue, so the broker discards it');
      delivery.acker.nack(delivery.slot, false);
      return;
    }
    const headers: Record<string, unknown> = {
      ...this.#failureHeaders(msg, error),
      [Header.reason]: reason,
      [Header.attempts]: attemptOf(msg.properties.headers),
      [Header.originQueue]: this.#d.queue,
    };
    if (error instanceof ValidationError) headers[Header.validationIssues] = bounded(JSON.stringify(error.issues), MAX_ISSUES_JSON);
    try {
      await this.#d.publisher.publishRaw(target.exchange, target.routingKey ?? msg.fields.routingKey, msg.content, copyProperties(msg, headers, `${this.#d.queue}:${msg.fields.deliveryTag}:${Date.now()}`));
    } catch (err) {
      // The copy failed: a plain reject still reaches the queue's dead-letter exchange, without the reason headers.
      this.#d.log.error({ messageId, err: messageOf(err) }, 'could not publish the dead letter; rejecting the message to the broker instead');
      if (this.#d.isCurrent(delivery.channel)) delivery.acker.nack(delivery.slot, false);
      return;
    }
    this.#d.log[level]({ messageId, reason, err: errorText(error) }, 'message dead-lettered');
    this.#ackAfterCopy(delivery);
  }

  #ackAfterCopy(delivery: Delivery): void {
    if (this.#d.isCurrent(delivery.channel)) {
      delivery.acker.ack(delivery.slot);
    } else {
      this.#d.log.warn({ messageId: delivery.msg.properties.messageId as unknown }, 'channel closed after the copy was confirmed; the broker will redeliver the original too (a duplicate)');
    }
  }

  /** Warren's failure headers: what went wrong, when, and where the message was first published. */
  #failureHeaders(msg: ConsumeMessage, error: unknown): Record<string, unknown> {
    const old = (msg.properties.headers ?? {}) as Record<string, unknown>;
    const now = new Date().toISOString();
    return {
      [Header.errorCode]: error instanceof WarrenError ? error.code : error instanceof Error ? error.name : 'UNKNOWN',
      [Header.errorMessage]: bounded(errorText(error), MAX_ERROR_MESSAGE),
      [Header.originalExchange]: old[Header.originalExchange] ?? msg.fields.exchange,
      [Header.originalRoutingKey]: old[Header.originalRoutingKey] ?? msg.fields.routingKey,
      [Header.firstFailureAt]: old[Header.firstFailureAt] ?? now,
      [Header.lastFailureAt]: now,
      [Header.consumer]: this.#d.consumer,
    };
  }
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
