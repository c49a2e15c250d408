import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  defineConsumer,
  defineMessage,
  type ConsumerContext,
  type ManualContext,
  type Payload,
  type PayloadInput,
  type Warren,
} from '../../src/index.js';

const OrderPlaced = defineMessage({
  name: 'order.placed',
  exchange: 'orders',
  routingKey: 'order.placed',
  schema: z.object({
    orderId: z.string(),
    amountCents: z.number().int(),
    currency: z.string().default('EUR'),
    placedAt: z.string().transform((s) => new Date(s)),
  }),
});

declare const warren: Warren;

describe('payload types come from the contract', () => {
  it('the handler receives z.output of the schema', () => {
    defineConsumer({
      queue: 'billing.orders',
      message: OrderPlaced,
      handle(order, ctx) {
        expectTypeOf(order).toEqualTypeOf<{ orderId: string; amountCents: number; currency: string; placedAt: Date }>();
        expectTypeOf(ctx).toEqualTypeOf<ConsumerContext>();
      },
    });
    expectTypeOf<Payload<typeof OrderPlaced>>().toEqualTypeOf<{ orderId: string; amountCents: number; currency: string; placedAt: Date }>();
  });

  it('publish() takes z.input: defaults are optional, transforms take their input type', () => {
    expectTypeOf<PayloadInput<typeof OrderPlaced>>().toEqualTypeOf<{ orderId: string; amountCents: number; currency?: string | undefined; placedAt: string }>();
    void warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: 5, placedAt: '2026-01-01' });
    // @ts-expect-error amountCents must be a number
    void warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: '5', placedAt: '2026-01-01' });
    // @ts-expect-error orderId is required
    void warren.publish(OrderPlaced, { amountCents: 5, placedAt: '2026-01-01' });
  });

  it('manual mode gives ack/nack/reject; auto mode does not', () => {
    defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      ackMode: 'manual',
      handle(_order, ctx) {
        expectTypeOf(ctx).toEqualTypeOf<ManualContext>();
        ctx.ack();
        ctx.nack({ requeue: true });
        ctx.reject();
      },
    });
    defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      handle(_order, ctx) {
        // @ts-expect-error ack() exists only in manual mode
        ctx.ack();
      },
    });
  });

  it('a handler for another contract is a type error', () => {
    const Other = defineMessage({ name: 'other', exchange: '', routingKey: 'o', schema: z.object({ n: z.number() }) });
    defineConsumer({
      queue: 'q',
      message: Other,
      handle(payload) {
        // @ts-expect-error Other has no orderId
        void payload.orderId;
      },
    });
  });
});
