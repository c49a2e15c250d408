import type { PublishProperties } from '../amqp/transport.js';
import type { MessageContract } from '../define/message.js';
import { encodedTableSize, headerProblems, MAX_HEADERS_BYTES } from '../amqp/field-table.js';
import { ConfigError, ValidationError } from '../support/errors.js';

/** Per-call options of `publish()`. */
export interface PublishOptions {
  /** Defaults to a random UUID. Re-publishes after a reconnect keep it, so consumers can deduplicate. */
  messageId?: string;
  correlationId?: string;
  headers?: Record<string, unknown>;
  /** Defaults to now. */
  timestamp?: Date;
  /** Overrides the contract's routing key. */
  routingKey?: string;
  /** Per-message TTL in ms. */
  expirationMs?: number;
  priority?: number;
  replyTo?: string;
  /** Override the contract's `persistent` / `mandatory`. */
  persistent?: boolean;
  mandatory?: boolean;
  /** Overrides `publisher.timeoutMs` for this message. */
  timeoutMs?: number;
}

/** Options the broker would answer by closing the channel (406): refused here, before anything is sent. */
export function checkOptions(o: PublishOptions): void {
  if (o.expirationMs === undefined && o.priority === undefined && o.timeoutMs === undefined) return;
  const problems: string[] = [];
  if (o.expirationMs !== undefined && !(Number.isInteger(o.expirationMs) && o.expirationMs >= 0)) problems.push('expirationMs: must be a whole number of ms, 0 or more');
  if (o.priority !== undefined && !(Number.isInteger(o.priority) && o.priority >= 0 && o.priority <= 255)) problems.push('priority: must be a whole number from 0 to 255');
  if (o.timeoutMs !== undefined && !(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0)) problems.push('timeoutMs: must be a positive number of ms');
  if (problems.length > 0) throw new ConfigError('publish() options', problems);
}

/** The AMQP properties of a message published through `contract`. */
export function propertiesFor(contract: MessageContract, options: PublishOptions, messageId: string, appId: string, headers: Record<string, unknown> | undefined): PublishProperties {
  const props: PublishProperties = {
    persistent: options.persistent ?? contract.persistent,
    mandatory: options.mandatory ?? contract.mandatory,
    contentType: contract.contentType,
    messageId,
    type: contract.name,
    appId,
    timestamp: Math.floor((options.timestamp?.getTime() ?? Date.now()) / 1000),
  };
  if (options.correlationId !== undefined) props.correlationId = options.correlationId;
  if (headers !== undefined) props.headers = headers;
  if (options.expirationMs !== undefined) props.expiration = String(options.expirationMs);
  if (options.priority !== undefined) props.priority = options.priority;
  if (options.replyTo !== undefined) props.replyTo = options.replyTo;
  return props;
}

/** Refuses headers the encoder or the broker would refuse (the latter by closing the connection for everything in flight). */
export function checkHeaders(messageName: string, headers: Readonly<Record<string, unknown>>): void {
  const problems = headerProblems(headers);
  if (problems.length === 0) {
    const size = encodedTableSize(headers);
    if (size <= MAX_HEADERS_BYTES) return;
    problems.push({ path: ['headers'], message: `${size} bytes once encoded, over the ${MAX_HEADERS_BYTES}-byte limit of an AMQP headers table; send large data in the body` });
  }
  throw new ValidationError(messageName, problems.map((p) => ({ path: p.path, message: p.message, code: 'custom' })));
}
