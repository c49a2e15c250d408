/**
 * AMQP reply codes, and what warren reads out of the errors a transport raises: the code, the
 * broker's own text, and the entity a refusal names. The only place that knows amqplib's wording.
 */
import type { Permission, Refusal } from '../support/errors.js';

/** AMQP 0-9-1 reply codes, by name. */
export const ReplyCode = {
  CONTENT_TOO_LARGE: 311,
  NO_ROUTE: 312,
  NO_CONSUMERS: 313,
  CONNECTION_FORCED: 320,
  INVALID_PATH: 402,
  ACCESS_REFUSED: 403,
  NOT_FOUND: 404,
  RESOURCE_LOCKED: 405,
  PRECONDITION_FAILED: 406,
  FRAME_ERROR: 501,
  SYNTAX_ERROR: 502,
  COMMAND_INVALID: 503,
  CHANNEL_ERROR: 504,
  UNEXPECTED_FRAME: 505,
  RESOURCE_ERROR: 506,
  NOT_ALLOWED: 530,
  NOT_IMPLEMENTED: 540,
  INTERNAL_ERROR: 541,
} as const;

export type ReplyCodeName = keyof typeof ReplyCode;

/** The name of an AMQP reply code (`404` → `'NOT_FOUND'`), or undefined for an unknown code. */
export function replyCodeName(code: number | undefined): ReplyCodeName | undefined {
  if (code === undefined) return undefined;
  for (const [name, value] of Object.entries(ReplyCode)) {
    if (value === code) return name as ReplyCodeName;
  }
  return undefined;
}

/** The AMQP reply code a transport error carries, if any (amqplib sets a numeric `code`). */
export function amqpCode(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = err.code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

function textOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The text the broker sent with a channel or connection close, without amqplib's wrapping. */
export function brokerText(err: unknown): string {
  const msg = textOf(err);
  return /with message "(.*)"$/s.exec(msg)?.[1] ?? msg;
}

/**
 * The exchange a channel-close error says the broker refused, e.g. "NOT_FOUND - no exchange 'x' in
 * vhost '/'", as a publish names it: the default exchange, which a refusal calls 'amq.default', is ''.
 */
export function refusedExchange(err: unknown): string | undefined {
  const code = amqpCode(err);
  if (code === undefined || code < 400) return undefined;
  const name = /exchange '([^']*)'/.exec(textOf(err))?.[1];
  return name === 'amq.default' && code === ReplyCode.ACCESS_REFUSED ? '' : name;
}

/**
 * What a 403 on a channel says was refused: "ACCESS_REFUSED - access to queue 'q' in vhost 'v'
 * refused for user 'u'" (RabbitMQ 3.x), with the permission before "access" from 4.0 on ("read
 * access to queue …"). Undefined for any other error (a refused login, a reserved `amq.` name).
 */
export function accessRefusal(err: unknown): Refusal | undefined {
  if (amqpCode(err) !== ReplyCode.ACCESS_REFUSED) return undefined;
  const m = /(?:(configure|write|read) )?access to (exchange|queue) '(.*)' in vhost '(.*)' refused for user '(.*)'/s.exec(brokerText(err));
  if (m === null) return undefined;
  const [, permission, resource, name, vhost, user] = m;
  return { permission: permission as Permission | undefined, resource: resource as 'exchange' | 'queue', name: name ?? '', vhost: vhost ?? '', user: user ?? '' };
}

/**
 * The consumer timeout (ms) when a channel-close error is RabbitMQ's "delivery acknowledgement on
 * channel N timed out" (a delivery held unacked longer than `consumer_timeout`, 3.8.15 to 4.2;
 * 4.3 cancels the consumer instead); undefined for any other error.
 */
export function consumerTimeoutOf(err: unknown): number | undefined {
  if (amqpCode(err) !== ReplyCode.PRECONDITION_FAILED) return undefined;
  const m = /delivery acknowledgement on channel \d+ timed out(?:\. Timeout value used: (\d+))?/.exec(textOf(err));
  if (m === null) return undefined;
  return m[1] !== undefined ? Number(m[1]) : Number.NaN;
}

/** What a failed connection attempt's text says went wrong. */
export type ConnectFailure = 'login-refused' | 'vhost-refused' | 'mechanism-not-offered' | 'other';

/** Reads amqplib's connection errors: a refused login, a refused vhost, a login mechanism the broker does not offer, or anything else. */
export function connectFailure(text: string): ConnectFailure {
  if (/^SASL mechanism \S+ is not provided by the server/.test(text)) return 'mechanism-not-offered';
  if (/403|ACCESS[-_]REFUSED/.test(text)) return 'login-refused';
  if (/Expected ConnectionOpenOk; got <ConnectionClose/.test(text)) return 'vhost-refused';
  return 'other';
}
