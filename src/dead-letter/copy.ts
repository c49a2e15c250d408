import type { Inbound, PublishProperties } from '../amqp/transport.js';

/**
 * Headers the broker adds (when it dead-letters; a quorum queue's delivery count): stale on a copy
 * warren publishes itself, which is a new message to the broker.
 */
const BROKER_HEADERS = [
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-delivery-count',
];

/**
 * The publish properties for a copy of `msg` that warren publishes itself (a retry, a dead
 * letter, a replay): the original's properties, its headers (unless `keepHeaders` is false)
 * without the broker's own headers and with `headers` applied (undefined removes one),
 * persistent and mandatory.
 */
export function copyProperties(msg: Inbound, headers: Record<string, unknown>, fallbackId: string, options: { keepHeaders: boolean } = { keepHeaders: true }): PublishProperties {
  const merged: Record<string, unknown> = options.keepHeaders ? { ...msg.headers } : {};
  for (const h of BROKER_HEADERS) delete merged[h];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  const out: PublishProperties = { messageId: msg.messageId ?? fallbackId, headers: merged, persistent: true, mandatory: true };
  if (msg.contentType !== undefined) out.contentType = msg.contentType;
  if (msg.contentEncoding !== undefined) out.contentEncoding = msg.contentEncoding;
  if (msg.correlationId !== undefined) out.correlationId = msg.correlationId;
  if (msg.timestamp !== undefined) out.timestamp = msg.timestamp;
  if (msg.type !== undefined) out.type = msg.type;
  if (msg.appId !== undefined) out.appId = msg.appId;
  if (msg.replyTo !== undefined) out.replyTo = msg.replyTo;
  if (msg.priority !== undefined) out.priority = msg.priority;
  return out;
}

/**
 * What warren's own copies (retries, dead letters, replays) are published through: confirmed
 * publishing of bytes it already has. The Publisher implements it; consume/ and dead-letter/
 * see nothing else of it.
 */
export interface CopyPublisher {
  /** Resolves once the broker confirmed the copy; rejects with a WarrenError otherwise. */
  publishCopy(exchange: string, routingKey: string, body: Buffer, properties: PublishProperties): Promise<unknown>;
}
