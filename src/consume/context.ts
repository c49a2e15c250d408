import type { Inbound } from '../amqp/transport.js';
import { bounded, MAX_REASON } from '../dead-letter/headers.js';
import type { ConsumerContext, ManualContext } from '../define/consumer.js';
import { toMs } from '../define/duration.js';
import { ConfigError } from '../support/errors.js';
import type { Logger } from '../support/logger.js';
import type { ManualCall } from './outcome.js';

/** What a handler gets besides the payload. A class: one shape for every message, `log` made on first use. */
export class DeliveryContext implements ConsumerContext {
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly redelivered: boolean;
  readonly deliveryCount: number | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly timestamp: Date | undefined;
  readonly attempt: number;
  readonly #consumerLog: Logger;
  #log: Logger | undefined;

  /** `quorum`: the message came from a quorum queue, which sets no `x-delivery-count` on a first delivery (it is 0 then). */
  constructor(msg: Inbound, attempt: number, quorum: boolean, consumerLog: Logger) {
    this.messageId = msg.messageId;
    this.correlationId = msg.correlationId;
    this.headers = msg.headers;
    this.redelivered = msg.redelivered;
    this.deliveryCount = msg.deliveryCount ?? (quorum ? 0 : undefined);
    this.exchange = msg.exchange;
    this.routingKey = msg.routingKey;
    this.timestamp = msg.timestamp !== undefined ? new Date(msg.timestamp * 1000) : undefined;
    this.attempt = attempt;
    this.#consumerLog = consumerLog;
  }

  get log(): Logger {
    this.#log ??= this.#consumerLog.child({ messageId: this.messageId });
    return this.#log;
  }
}

/** What the manual API needs of the pipeline: whether the delivery is settled, and a way to carry out a call. */
export interface ManualDelivery {
  readonly settled: boolean;
  /** Decides (by the rule) and carries out a call; resolves once the broker action is done. */
  call(call: ManualCall, error: Error | undefined): Promise<void> | undefined;
}

/**
 * Adds the manual API (ack, nack, reject, retry, deadLetter) to a delivery's context. Each
 * delivery is settled once: a second call is logged and ignored.
 */
export function withManualApi(base: DeliveryContext, delivery: ManualDelivery, log: Logger): ManualContext {
  const first = (what: string): boolean => {
    if (!delivery.settled) return true;
    log.warn({ messageId: base.messageId, call: what }, 'message already settled; ignoring the second call');
    return false;
  };
  const manual: Omit<ManualContext, keyof ConsumerContext> = {
    ack: () => {
      if (first('ack')) void delivery.call({ call: 'ack' }, undefined);
    },
    nack: (o) => {
      if (first('nack')) void delivery.call({ call: 'nack', requeue: o?.requeue ?? false }, undefined);
    },
    reject: () => {
      if (first('reject')) void delivery.call({ call: 'reject' }, undefined);
    },
    retry: async (o) => {
      if (!first('retry')) return;
      let delayMs: number | undefined;
      if (o?.delay !== undefined) {
        delayMs = toMs(o.delay);
        if (delayMs === undefined) throw new ConfigError('ctx.retry()', [`delay: '${String(o.delay)}' is not a duration (use ms, or '500ms', '10s', '1m', '1h')`]);
      }
      await delivery.call({ call: 'retry', delayMs }, coded('RETRY_REQUESTED', 'retry requested by the handler'));
    },
    deadLetter: async (reason) => {
      if (!first('deadLetter')) return;
      const text = reason !== undefined && reason.trim() !== '' ? bounded(reason, MAX_REASON) : undefined;
      await delivery.call({ call: 'dead-letter', reason: text }, coded('DEAD_LETTERED_BY_HANDLER', text ?? 'dead-lettered by the handler'));
    },
  };
  return Object.assign(base, manual);
}

/** An Error with a string `code`, as `x-warren-error-code` records it. */
function coded(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}
