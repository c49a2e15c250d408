import { z } from 'zod';
import { parseConfig } from './config.js';
import { isUtf8, kMaxLength } from 'node:buffer';
import { gunzipSync, inflateSync } from 'node:zlib';
import { DecodeError, MessageTooLargeError, messageOf, ValidationError, type ValidationIssue } from '../support/errors.js';

export const JSON_CONTENT_TYPE = 'application/json';

/**
 * A message contract: where a message goes and what it looks like. One zod schema serves both
 * sides — the producer validates before sending, the consumer validates on receipt, and the
 * handler's payload type is inferred from it.
 */
export interface MessageContract<S extends z.ZodType = z.ZodType> {
  readonly name: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly schema: S;
  readonly contentType: typeof JSON_CONTENT_TYPE;
  /** Stored to disk by the broker (delivery mode 2). Default true. */
  readonly persistent: boolean;
  /** Returned by the broker if no queue is bound for it (→ UnroutableError). Default true. */
  readonly mandatory: boolean;
}

/** What the producer passes to `publish()` for this contract. */
export type PayloadInput<M extends MessageContract> = z.input<M['schema']>;
/** What the consumer's handler receives for this contract. */
export type Payload<M extends MessageContract> = z.output<M['schema']>;

export interface MessageDefinition<S extends z.ZodType> {
  /** A name for logs and errors, e.g. `'order.placed'`. */
  name: string;
  /** The exchange to publish to; `''` is the default exchange (routing key = queue name). */
  exchange: string;
  routingKey: string;
  schema: S;
  persistent?: boolean;
  mandatory?: boolean;
}

const definitionSchema = z.strictObject({
  name: z.string().min(1, 'must not be empty'),
  exchange: z.string().max(255),
  routingKey: z.string().max(255),
  schema: z.custom<z.ZodType>((v) => v instanceof z.ZodType, {
    error: (issue) =>
      typeof issue.input === 'object' && issue.input !== null && '_def' in issue.input && !('_zod' in issue.input)
        ? "must be a zod 4 schema: this one is from zod 3. Install zod 4 (npm install zod@^4) and import { z } from 'zod'"
        : "must be a zod 4 schema (import { z } from 'zod')",
  }),
  persistent: z.boolean().default(true),
  mandatory: z.boolean().default(true),
});

/**
 * Defines a message contract. Throws a ConfigError listing every problem with the definition.
 *
 * @example
 * const OrderPlaced = defineMessage({ name: 'order.placed', exchange: 'orders', routingKey: 'order.placed',
 *   schema: z.object({ orderId: z.string(), amountCents: z.number().int().positive() }) });
 */
export function defineMessage<S extends z.ZodType>(definition: MessageDefinition<S>): MessageContract<S> {
  const parsed = parseConfig(definitionSchema, definition, `message definition '${definition.name}'`);
  return Object.freeze({
    name: parsed.name,
    exchange: parsed.exchange,
    routingKey: parsed.routingKey,
    schema: definition.schema,
    contentType: JSON_CONTENT_TYPE,
    persistent: parsed.persistent,
    mandatory: parsed.mandatory,
  });
}

function toIssues(error: z.ZodError): ValidationIssue[] {
  return error.issues.map((i) => ({ path: i.path, message: i.message, code: i.code }));
}

/** Checks a payload against the contract's schema; returns the parsed value or throws ValidationError. */
export function validatePayload<M extends MessageContract>(contract: M, payload: unknown): Payload<M> {
  const result = contract.schema.safeParse(payload);
  if (!result.success) throw new ValidationError(contract.name, toIssues(result.error));
  return result.data as Payload<M>;
}

/** Encodes a (validated) payload as JSON text; ValidationError if it cannot be. */
export function encodeJson(contract: MessageContract, payload: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (err) {
    // A BigInt or a cycle, which a schema such as z.bigint() or z.any() lets through.
    throw new ValidationError(contract.name, [{ path: [], message: `payload is not JSON-serialisable (${messageOf(err)})`, code: 'custom' }], { cause: err });
  }
  // JSON.stringify(undefined) is undefined: a schema such as z.any() can let that through.
  if (json === undefined) throw new ValidationError(contract.name, [{ path: [], message: 'payload is not JSON-serialisable', code: 'custom' }]);
  return json;
}

/** What a received body may be: its size before and after decompression, at most. */
export interface DecodeLimits {
  maxBytes: number;
}

/**
 * Decodes a received body. Accepts content type application/json (with parameters) or none,
 * and content-encoding gzip, deflate or identity (or none), decompressed to at most
 * `maxBytes`. Throws MessageTooLargeError for a body over `maxBytes` (before anything is
 * decoded), and DecodeError for another content type or encoding, or a body that is not
 * strictly valid UTF-8 JSON (invalid bytes are never replaced with U+FFFD).
 */
export function decodeBody(contract: MessageContract, content: Buffer, contentType: string | undefined, contentEncoding?: string, limits?: DecodeLimits): unknown {
  const maxBytes = limits?.maxBytes ?? Infinity;
  if (content.length > maxBytes) throw new MessageTooLargeError(contract.name, content.length, maxBytes, { what: `${content.length} bytes` });
  if (contentType !== undefined && contentType !== '') {
    const base = contentType.split(';', 1)[0]?.trim().toLowerCase();
    if (base !== JSON_CONTENT_TYPE) {
      throw new DecodeError(`Message for '${contract.name}' has content type '${contentType}', expected '${JSON_CONTENT_TYPE}'.`);
    }
  }
  const bytes = contentEncoding === undefined || contentEncoding === '' ? content : decompress(contract, content, contentEncoding, maxBytes);
  if (!isUtf8(bytes)) {
    throw new DecodeError(`Message for '${contract.name}' is not valid UTF-8 (${bytes.length} bytes); JSON must be UTF-8.`);
  }
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new DecodeError(`Message for '${contract.name}' is not valid JSON (${bytes.length} bytes).`, { cause: err });
  }
}

function decompress(contract: MessageContract, content: Buffer, encoding: string, maxBytes: number): Buffer {
  const e = encoding.trim().toLowerCase();
  if (e === 'identity') return content;
  if (e !== 'gzip' && e !== 'x-gzip' && e !== 'deflate') {
    throw new DecodeError(
      `Message for '${contract.name}' has content-encoding '${encoding}', which warren does not decode (it decodes gzip and deflate).`,
      { code: 'UNSUPPORTED_CONTENT_ENCODING' },
    );
  }
  // Bounded: a small compressed body must not expand into more memory than the limit allows.
  const options = { maxOutputLength: Number.isFinite(maxBytes) ? Math.max(1, maxBytes) : kMaxLength };
  try {
    return e === 'deflate' ? inflateSync(content, options) : gunzipSync(content, options);
  } catch (err) {
    if (err instanceof RangeError) throw new MessageTooLargeError(contract.name, content.length, maxBytes, { what: `over ${maxBytes} bytes once decompressed (${content.length} compressed)` });
    throw new DecodeError(`Message for '${contract.name}' says content-encoding '${encoding}' but could not be decompressed (${messageOf(err)}).`, { cause: err });
  }
}
