import type { Message, Options } from 'amqplib';

/** Headers the broker adds when it dead-letters; stale on a copy warren publishes itself. */
const BROKER_DEATH_HEADERS = ['x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason', 'x-last-death-exchange', 'x-last-death-queue', 'x-last-death-reason'];

/**
 * The publish properties for a copy of `msg` that warren publishes itself (a retry, a dead
 * letter, a replay): the original's properties, its headers without the broker's death
 * headers and with `headers` applied (undefined removes one), persistent and mandatory.
 */
export function copyProperties(msg: Message, headers: Record<string, unknown>, fallbackId: string): Options.Publish & { messageId: string } {
  const p = msg.properties;
  const merged: Record<string, unknown> = { ...(p.headers as Record<string, unknown> | undefined) };
  for (const h of BROKER_DEATH_HEADERS) delete merged[h];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  const out: Options.Publish & { messageId: string } = {
    messageId: (p.messageId as string | undefined) ?? fallbackId,
    headers: merged,
    persistent: true,
    mandatory: true,
  };
  if (p.contentType !== undefined) out.contentType = p.contentType as string;
  if (p.contentEncoding !== undefined) out.contentEncoding = p.contentEncoding as string;
  if (p.correlationId !== undefined) out.correlationId = p.correlationId as string;
  if (p.timestamp !== undefined) out.timestamp = p.timestamp as number;
  if (p.type !== undefined) out.type = p.type as string;
  if (p.appId !== undefined) out.appId = p.appId as string;
  if (p.replyTo !== undefined) out.replyTo = p.replyTo as string;
  if (p.priority !== undefined) out.priority = p.priority as number;
  return out;
}
