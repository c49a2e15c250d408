import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { decodeBody, defineMessage, encodeJson, validatePayload } from '../../src/define/message.js';
import { deflateSync, gzipSync } from 'node:zlib';
import { ConfigError, DecodeError, MessageTooLargeError, ValidationError } from '../../src/support/errors.js';

const Order = defineMessage({
  name: 'order.placed',
  exchange: 'orders',
  routingKey: 'order.placed',
  schema: z.object({
    orderId: z.string(),
    amountCents: z.number().int().positive(),
    currency: z.string().default('EUR'),
    items: z.array(z.object({ sku: z.string(), qty: z.number().int() })).default([]),
  }),
});

/** What `fn` throws (fails the test if it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected it to throw');
}

describe('defineMessage', () => {
  it('defaults to persistent, mandatory JSON', () => {
    expect(Order).toMatchObject({
      name: 'order.placed',
      exchange: 'orders',
      routingKey: 'order.placed',
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
    });
  });

  it('keeps persistent: false and mandatory: false when asked', () => {
    const Tick = defineMessage({ name: 'tick', exchange: '', routingKey: 'ticks', schema: z.number(), persistent: false, mandatory: false });
    expect(Tick).toMatchObject({ persistent: false, mandatory: false, contentType: 'application/json' });
  });

  it('rejects a schema that is not a zod schema with CONFIG_INVALID', () => {
    const notZod = { parse: (v: unknown) => v, safeParse: (v: unknown) => ({ success: true, data: v }) } as unknown as z.ZodString;
    const err = thrown(() => defineMessage({ name: 'x', exchange: '', routingKey: 'q', schema: notZod }));
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).problems).toHaveLength(1);
  });

  it('lists every problem of a definition at once', () => {
    const err = thrown(() => defineMessage({ name: '', exchange: 'x', routingKey: 'y', schema: {} as z.ZodString, mandatry: false } as never));
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toHaveLength(3);
  });
});

describe('validatePayload', () => {
  it('returns the parsed payload, with schema defaults filled in', () => {
    expect(validatePayload(Order, { orderId: 'o-1', amountCents: 5 })).toEqual({ orderId: 'o-1', amountCents: 5, currency: 'EUR', items: [] });
  });

  it('throws ValidationError (VALIDATION_FAILED) carrying zod issues with path and code', () => {
    const err = thrown(() => validatePayload(Order, { orderId: 1, amountCents: -5, items: [{ sku: 'a', qty: 1 }, { sku: 2, qty: 1 }] }));
    expect(err).toBeInstanceOf(ValidationError);
    const v = err as ValidationError;
    expect(v.code).toBe('VALIDATION_FAILED');
    expect(v.messageName).toBe('order.placed');
    expect(v.issues.map(({ path, code }) => ({ path, code }))).toEqual(
      expect.arrayContaining([
        { path: ['orderId'], code: 'invalid_type' },
        { path: ['amountCents'], code: 'too_small' },
        { path: ['items', 1, 'sku'], code: 'invalid_type' },
      ]),
    );
    expect(v.issues).toHaveLength(3);
  });

  it('reports a payload that is not an object at the root (empty path)', () => {
    const err = thrown(() => validatePayload(Order, 'o-1'));
    expect((err as ValidationError).issues).toEqual([expect.objectContaining({ path: [], code: 'invalid_type' })]);
  });
});

describe('defineMessage with a schema that is not zod 4', () => {
  it('says it needs zod 4, and recognises a zod 3 schema', () => {
    // What a zod 3 schema looks like from the outside: a _def, parse methods, no _zod.
    const zod3 = { _def: { typeName: 'ZodObject' }, parse: () => ({}), safeParse: () => ({ success: true }) };
    const err = thrown(() => defineMessage({ name: 'm', exchange: '', routingKey: 'q', schema: zod3 as unknown as z.ZodType }));
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([expect.stringMatching(/schema: must be a zod 4 schema: this one is from zod 3/)]);
    const other = thrown(() => defineMessage({ name: 'm', exchange: '', routingKey: 'q', schema: {} as unknown as z.ZodType }));
    expect((other as ConfigError).problems).toEqual([expect.stringMatching(/schema: must be a zod 4 schema/)]);
  });
});

describe('encodeJson / decodeBody', () => {
  const Anything = defineMessage({ name: 'any', exchange: '', routingKey: 'q', schema: z.any() });

  it('round-trips a payload through a UTF-8 JSON body', () => {
    const payload = { orderId: 'ö-1 ✓ 😀', amountCents: 5, currency: 'EUR', items: [{ sku: 'a"b\\c', qty: 2 }] };
    const json = encodeJson(Order, payload);
    expect(json).toBe(JSON.stringify(payload));
    // The publisher sends it as UTF-8 bytes.
    const body = Buffer.from(json, 'utf8');
    expect(body.toString('utf8')).toBe(JSON.stringify(payload));
    expect(decodeBody(Order, body, 'application/json')).toEqual(payload);
  });

  it.each([['application/json; charset=utf-8'], ['Application/JSON'], [''], [undefined]])('accepts content type %o', (contentType) => {
    expect(decodeBody(Order, Buffer.from('{"orderId":"o-1"}'), contentType)).toEqual({ orderId: 'o-1' });
  });

  it.each([['{not json'], ['{"orderId":"o-1"'], ['']])('refuses body %o with DecodeError (DECODE_FAILED)', (text) => {
    const err = thrown(() => decodeBody(Order, Buffer.from(text, 'latin1'), 'application/json'));
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).code).toBe('DECODE_FAILED');
    expect((err as DecodeError).cause).toBeInstanceOf(SyntaxError);
  });

  it('refuses invalid UTF-8 inside JSON instead of handing the handler U+FFFD', () => {
    // A valid JSON string whose bytes include a lone 0xFF: a lenient decoder turns it into '\ufffd'.
    const body = Buffer.concat([Buffer.from('{"orderId":"o-'), Buffer.from([0xff]), Buffer.from('1"}')]);
    expect(body.toString('utf8')).toContain('\ufffd');
    const err = thrown(() => decodeBody(Order, body, 'application/json'));
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).code).toBe('DECODE_FAILED');
    expect((err as DecodeError).message).toMatch(/not valid UTF-8/);
  });

  it('refuses a body over maxBytes with MessageTooLargeError before decoding it', () => {
    const body = Buffer.from(JSON.stringify({ orderId: 'x'.repeat(2000) }));
    const err = thrown(() => decodeBody(Order, body, 'application/json', undefined, { maxBytes: 1000 }));
    expect(err).toBeInstanceOf(MessageTooLargeError);
    expect((err as MessageTooLargeError).code).toBe('MESSAGE_TOO_LARGE');
    expect(decodeBody(Order, body, 'application/json', undefined, { maxBytes: body.length })).toEqual({ orderId: 'x'.repeat(2000) });
  });

  it('decodes gzip and deflate bodies, bounded by maxBytes once decompressed', () => {
    const payload = { orderId: 'o-1', note: 'n'.repeat(5000) };
    const json = Buffer.from(JSON.stringify(payload));
    expect(decodeBody(Order, gzipSync(json), 'application/json', 'gzip', { maxBytes: 10_000 })).toEqual(payload);
    expect(decodeBody(Order, deflateSync(json), 'application/json', 'deflate', { maxBytes: 10_000 })).toEqual(payload);
    expect(decodeBody(Order, json, 'application/json', 'identity', { maxBytes: 10_000 })).toEqual(payload);
    // 5 KB of JSON compresses to ~60 bytes: the limit applies to what it expands to.
    const bomb = thrown(() => decodeBody(Order, gzipSync(json), 'application/json', 'gzip', { maxBytes: 1000 }));
    expect((bomb as MessageTooLargeError).code).toBe('MESSAGE_TOO_LARGE');
    expect((bomb as Error).message).toMatch(/once decompressed/);
    const broken = thrown(() => decodeBody(Order, json, 'application/json', 'gzip'));
    expect((broken as DecodeError).code).toBe('DECODE_FAILED');
  });

  it('refuses a content-encoding it does not decode, naming it (UNSUPPORTED_CONTENT_ENCODING)', () => {
    const err = thrown(() => decodeBody(Order, Buffer.from('{}'), 'application/json', 'br'));
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).code).toBe('UNSUPPORTED_CONTENT_ENCODING');
    expect((err as DecodeError).message).toContain("'br'");
  });

  it.each([['text/plain'], ['application/xml'], ['application/octet-stream'], ['application/jsonp']])(
    'refuses content type %o with DecodeError, even for a JSON body',
    (contentType) => {
      const err = thrown(() => decodeBody(Order, Buffer.from('{"orderId":"o-1"}'), contentType));
      expect(err).toBeInstanceOf(DecodeError);
      expect((err as DecodeError).code).toBe('DECODE_FAILED');
    },
  );

  it('refuses a payload that JSON.stringify turns into nothing with ValidationError', () => {
    for (const payload of [undefined, () => 1]) {
      const err = thrown(() => encodeJson(Anything, payload));
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).code).toBe('VALIDATION_FAILED');
    }
  });

  it('refuses a payload JSON.stringify throws on (BigInt, a cycle) with ValidationError, not a raw TypeError', () => {
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    for (const payload of [{ n: 10n }, circular]) {
      const err = thrown(() => encodeJson(Anything, payload));
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).code).toBe('VALIDATION_FAILED');
    }
  });
});
