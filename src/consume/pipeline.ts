import { attemptOf, Header } from '../dead-letter/headers.js';
import type { Consumer, ConsumerContext, ManualContext } from '../define/consumer.js';
import { decodeBody, validatePayload, type DecodeLimits } from '../define/message.js';
import type { RetryPolicy } from '../define/retry-policy.js';
import { consumeChannel, type ConsumeTrace } from '../instrument/channels.js';
import type { Logger } from '../support/logger.js';
import { DeliveryContext, withManualApi, type ManualDelivery } from './context.js';
import type { Delivery } from './delivery.js';
import { decide, type DeliveryEvent, type ManualCall, type Outcome, type Rule } from './outcome.js';
import type { Settler } from './settler.js';

export interface PipelineDeps {
  client: string;
  consumer: Consumer;
  /** The consumer's retry policy, or connect()'s. */
  retry: RetryPolicy | undefined;
  /** The queue has a dead-letter target warren publishes copies to. */
  deadLetterQueue: boolean;
  /** The queue is a quorum queue (per the topology). */
  quorum: boolean;
  settler: Settler;
  log: Logger;
}

const HANDLED: Outcome = Object.freeze({ kind: 'handled' });
const HANDLER_START: DeliveryEvent = Object.freeze({ on: 'handler-start' });

/**
 * One delivery, from its start to its broker action: decode → validate → handler → Outcome →
 * the rule (consume/outcome.ts) → the Settler. Stays synchronous until something returns a
 * promise, so a synchronous handler's message is acked in the same turn.
 */
export class Pipeline {
  readonly #d: PipelineDeps;
  readonly #limits: DecodeLimits;

  constructor(deps: PipelineDeps) {
    this.#d = deps;
    this.#limits = { maxBytes: deps.consumer.maxMessageBytes };
  }

  /** Runs a delivery to its broker action; returns a promise only when something on the way was asynchronous. Never throws. */
  process(delivery: Delivery): Promise<void> | undefined {
    delivery.rule = this.#rule(delivery);
    if (!consumeChannel.hasSubscribers) return this.#process(delivery);
    const msg = delivery.msg;
    const trace: ConsumeTrace = {
      client: this.#d.client,
      consumer: this.#d.consumer.name,
      queue: this.#d.consumer.queue,
      contract: this.#d.consumer.message.name,
      exchange: msg.exchange,
      routingKey: msg.routingKey,
      messageId: msg.messageId,
      attempt: delivery.rule.attempt,
      redelivered: msg.redelivered,
      headers: msg.headers,
    };
    delivery.trace = trace;
    delivery.startedAt = performance.now();
    // The handler runs inside the stores subscribers bound to the start channel (bindStore).
    return consumeChannel.start.runStores(trace, () => this.#process(delivery));
  }

  #process(delivery: Delivery): Promise<void> | undefined {
    try {
      const onStart = decide(HANDLER_START, delivery.rule as Rule);
      // ackMode 'none' still consumes with acks, so prefetch bounds what is buffered here and
      // stop() can give unstarted messages back; each is acked as its handler starts.
      if (onStart.type !== 'none') void this.#d.settler.settle(delivery, onStart);
      const outcome = this.#run(delivery);
      if (outcome instanceof Promise) {
        return outcome.then(
          (o) => this.#finish(delivery, o),
          (err: unknown) => this.#internalError(delivery, err),
        );
      }
      return this.#finish(delivery, outcome);
    } catch (err) {
      this.#internalError(delivery, err);
      return undefined;
    }
  }

  #rule(delivery: Delivery): Rule {
    const c = this.#d.consumer;
    const headers = delivery.msg.headers;
    const attempt = attemptOf(headers, this.#d.retry?.maxAttempts);
    if (attempt === 1 && headers[Header.attempt] !== undefined && headers[Header.attempt] !== 1) {
      this.#d.log.debug({ messageId: delivery.msg.messageId, header: headers[Header.attempt] }, `${Header.attempt} is not a whole number within the retry policy's attempts; counting this delivery as attempt 1`);
    }
    return { ackMode: c.ackMode, onError: c.onError, retry: this.#d.retry, attempt, deadLetterQueue: this.#d.deadLetterQueue };
  }

  #run(delivery: Delivery): Outcome | Promise<Outcome> {
    const { msg } = delivery;
    const contract = this.#d.consumer.message;
    let payload: unknown;
    try {
      payload = validatePayload(contract, decodeBody(contract, msg.body, msg.contentType, msg.contentEncoding, this.#limits));
    } catch (error) {
      return { kind: 'invalid', error };
    }
    let result: unknown;
    try {
      result = (this.#d.consumer.handle as (p: unknown, c: ConsumerContext | ManualContext) => unknown)(payload, this.#context(delivery));
    } catch (error) {
      return { kind: 'failed', error };
    }
    if (!isThenable(result)) return HANDLED;
    return Promise.resolve(result).then(
      () => HANDLED,
      (error: unknown) => ({ kind: 'failed', error }),
    );
  }

  #context(delivery: Delivery): ConsumerContext | ManualContext {
    const base = new DeliveryContext(delivery.msg, (delivery.rule as Rule).attempt, this.#d.quorum, this.#d.log);
    if (this.#d.consumer.ackMode !== 'manual') return base;
    const manual: ManualDelivery = {
      get settled() {
        return delivery.settled;
      },
      call: (call: ManualCall, error: Error | undefined) => this.#d.settler.settle(delivery, decide({ on: 'manual-call', call }, delivery.rule as Rule), error),
    };
    return withManualApi(base, manual, this.#d.log);
  }

  /** Settles per the outcome, then ends the trace. */
  #finish(delivery: Delivery, outcome: Outcome): Promise<void> | undefined {
    const action = decide({ on: 'handler-done', outcome, settled: delivery.settled }, delivery.rule as Rule);
    if (delivery.settled && outcome.kind !== 'handled') {
      // Nothing more is done with the message, but the error is not hidden.
      const messageId = delivery.msg.messageId;
      if (this.#d.consumer.ackMode === 'none') {
        this.#d.log.warn({ messageId, err: outcome.error }, "handler failed; with ackMode 'none' the message was acked as it started, so it is not retried");
      } else {
        this.#d.log.warn({ messageId, err: outcome.error, settledWith: delivery.action?.type }, 'handler threw after it had settled the message; the error changes nothing (the message was already settled)');
      }
    } else if (action.type === 'requeue' && outcome.kind === 'failed') {
      this.#d.log.warn({ messageId: delivery.msg.messageId, err: outcome.error }, 'handler failed; message requeued');
    }
    // Ended once the broker action is done: also a manual ctx.retry() / deadLetter() the handler did not await.
    const settling = this.#d.settler.settle(delivery, action, outcome.kind === 'handled' ? undefined : outcome.error) ?? delivery.settling;
    if (settling !== undefined) {
      return settling.then(
        () => this.#end(delivery, outcome),
        (err: unknown) => this.#internalError(delivery, err),
      );
    }
    this.#end(delivery, outcome);
    return undefined;
  }

  #end(delivery: Delivery, outcome: Outcome): void {
    const trace = delivery.trace;
    if (trace === undefined) return;
    const action = delivery.action;
    trace.outcome = outcome.kind;
    trace.action = action?.type ?? 'none';
    if ((action?.type === 'dead-letter' || action?.type === 'reject') && action.reason !== undefined) trace.reason = action.reason;
    if (action?.type === 'retry') trace.delayMs = action.delayMs;
    trace.durationMs = performance.now() - delivery.startedAt;
    if (outcome.kind !== 'handled') {
      trace.error = outcome.error;
      consumeChannel.error.publish(trace);
    }
    consumeChannel.end.publish(trace);
  }

  /**
   * A bug of ours must not become an unhandled rejection; the unsettled message is redelivered
   * when the channel closes. Its `warren:consume` operation still ends (failed, with the error), so
   * no span or histogram is left waiting for it.
   */
  #internalError(delivery: Delivery, err: unknown): void {
    this.#d.log.error({ messageId: delivery.msg.messageId, err }, 'internal error while settling a message');
    if (delivery.trace !== undefined && delivery.trace.outcome === undefined) this.#end(delivery, { kind: 'failed', error: err });
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}
