import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { decodeBody, defineMessage, encodePayload, validatePayload } from '../../src/message.js';
import { ConfigError, DecodeError, ValidationError } from '../../src/errors.js';

const Order = defineMessage({
  name: 'order.placed',
  exchange: 'orders',
  routingKey: 'order.placed',
  schema: z.object({ orderId: z.string(), amountCents: z.number().int().positive() }),
});

describe('defineMessage', () => {
  it('defaults to persistent, mandatory JSON', () => {
    expect(Order).toMatchObject({ name: 'order.placed', exchange: 'orders', routingKey: 'order.placed', persistent: true, mandatory: true, contentType: 'application/json' });
  });

  it('rejects a definition without a zod schema and an empty name, listing both', () => {
    try {
      defineMessage({ name: '', exchange: 'x', routingKey: 'y', schema: {} as z.ZodString });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('CONFIG_INVALID');
      expect((err as ConfigError).problems.length).toBe(2);
    }
  });
});

describe('validate, encode, decode', () => {
  it('returns the parsed payload, or a ValidationError with zod issues and paths', () => {
    expect(validatePayload(Order, { orderId: 'o-1', amountCents: 5 })).toEqual({ orderId: 'o-1', amountCents: 5 });
    try {
      validatePayload(Order, { orderId: 1, amountCents: -5 });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      const v = err as ValidationError;
      expect(v.code).toBe('VALIDATION_FAILED');
      expect(v.messageName).toBe('order.placed');
      expect(v.issues.map((i) => i.path.join('.')).sort()).toEqual(['amountCents', 'orderId']);
    }
  });

  it('round-trips a payload through JSON', () => {
    const body = encodePayload(Order, { orderId: 'o-1', amountCents: 5 });
    expect(decodeBody(Order, body, 'application/json')).toEqual({ orderId: 'o-1', amountCents: 5 });
    expect(decodeBody(Order, body, 'application/json; charset=utf-8')).toEqual({ orderId: 'o-1', amountCents: 5 });
    expect(decodeBody(Order, body, undefined)).toEqual({ orderId: 'o-1', amountCents: 5 });
  });

  it('refuses a body that is not JSON, or has another content type, with DECODE_FAILED', () => {
    expect(() => decodeBody(Order, Buffer.from('{not json'), 'application/json')).toThrow(DecodeError);
    const err = (() => {
      try {
        decodeBody(Order, Buffer.from('{}'), 'text/plain');
      } catch (e) {
        return e;
      }
    })();
    expect((err as DecodeError).code).toBe('DECODE_FAILED');
  });

  it('refuses a payload JSON cannot represent', () => {
    const Anything = defineMessage({ name: 'any', exchange: '', routingKey: 'q', schema: z.any() });
    expect(() => encodePayload(Anything, undefined)).toThrow(ValidationError);
  });
});
