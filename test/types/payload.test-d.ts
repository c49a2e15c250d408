import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  defineConsumer,
  defineMessage,
  type Consumer,
  type ConsumerContext,
  type ManualContext,
  type Payload,
  type PayloadInput,
  type PublishReceipt,
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
    note: z.string().optional(),
    placedAt: z.string().transform((s) => new Date(s)),
  }),
});

/** What the handler receives: z.output of the schema. */
interface OrderOut {
  orderId: string;
  amountCents: number;
  currency: string;
  note?: string | undefined;
  placedAt: Date;
}

/** What publish() takes: z.input of the schema. */
interface OrderIn {
  orderId: string;
  amountCents: number;
  currency?: string | undefined;
  note?: string | undefined;
  placedAt: string;
}

declare const warren: Warren;

describe('payload types come from the contract', () => {
  it('the handler receives z.output of the schema', () => {
    defineConsumer({
      queue: 'billing.orders',
      message: OrderPlaced,
      handle(order, ctx) {
        expectTypeOf(order).toEqualTypeOf<OrderOut>();
        expectTypeOf(order.placedAt).toEqualTypeOf<Date>();
        expectTypeOf(order.currency).toEqualTypeOf<string>();
        expectTypeOf(ctx).toEqualTypeOf<ConsumerContext>();
        // @ts-expect-error the contract has no such field
        void order.customerId;
      },
    });
  });

  it('Payload<typeof C> is z.output and PayloadInput<typeof C> is z.input', () => {
    expectTypeOf<Payload<typeof OrderPlaced>>().toEqualTypeOf<OrderOut>();
    expectTypeOf<PayloadInput<typeof OrderPlaced>>().toEqualTypeOf<OrderIn>();
    expectTypeOf<Payload<typeof OrderPlaced>>().toEqualTypeOf<z.output<typeof OrderPlaced.schema>>();
    expectTypeOf<PayloadInput<typeof OrderPlaced>>().toEqualTypeOf<z.input<typeof OrderPlaced.schema>>();
  });

  it('publish() takes z.input: a defaulted field may be left out, a transformed one takes its input type', () => {
    expectTypeOf(warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: 5, placedAt: '2026-01-01' })).toEqualTypeOf<Promise<PublishReceipt>>();
    void warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: 5, currency: 'USD', note: 'gift', placedAt: '2026-01-01' });
    // @ts-expect-error placedAt is a string on input (the schema turns it into a Date)
    void warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: 5, placedAt: new Date() });
  });

  it('a wrong payload shape is a type error', () => {
    // @ts-expect-error amountCents must be a number
    void warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: '5', placedAt: '2026-01-01' });
    // @ts-expect-error orderId is required
    void warren.publish(OrderPlaced, { amountCents: 5, placedAt: '2026-01-01' });
    // @ts-expect-error customerId is not part of the contract
    void warren.publish(OrderPlaced, { orderId: 'o-1', amountCents: 5, placedAt: '2026-01-01', customerId: 'c-1' });
    // @ts-expect-error the payload is an object
    void warren.publish(OrderPlaced, 'o-1');
  });

  it('a handler that expects another payload is a type error', () => {
    defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      // @ts-expect-error the handler wants a number id; the contract gives a string
      handle(order: { orderId: number }) {
        void order;
      },
    });
    const Other = defineMessage({ name: 'other', exchange: '', routingKey: 'o', schema: z.object({ n: z.number() }) });
    defineConsumer({
      queue: 'q',
      message: Other,
      handle(payload) {
        expectTypeOf(payload).toEqualTypeOf<{ n: number }>();
        // @ts-expect-error Other has no orderId
        void payload.orderId;
      },
    });
  });
});

describe('the context depends on the ack mode', () => {
  it("ackMode 'manual' gives ack, nack and reject", () => {
    const consumer = defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      ackMode: 'manual',
      handle(_order, ctx) {
        expectTypeOf(ctx).toEqualTypeOf<ManualContext>();
        expectTypeOf<ManualContext['ack']>().toEqualTypeOf<() => void>();
        ctx.ack();
        ctx.nack();
        ctx.nack({ requeue: true });
        ctx.reject();
        expectTypeOf(ctx.retry({ delay: '30s' })).toEqualTypeOf<Promise<void>>();
        expectTypeOf(ctx.deadLetter('out of stock')).toEqualTypeOf<Promise<void>>();
        // @ts-expect-error requeue is a boolean
        ctx.nack({ requeue: 'yes' });
      },
    });
    expectTypeOf(consumer).toEqualTypeOf<Consumer<typeof OrderPlaced, 'manual'>>();
    expectTypeOf(consumer.ackMode).toEqualTypeOf<'manual'>();
  });

  it("ackMode 'auto' (the default) and 'none' have no ack, nack or reject", () => {
    const auto = defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      handle(_order, ctx) {
        expectTypeOf(ctx).toEqualTypeOf<ConsumerContext>();
        // @ts-expect-error ack() exists only in manual mode
        ctx.ack();
        // @ts-expect-error nack() exists only in manual mode
        ctx.nack();
        // @ts-expect-error reject() exists only in manual mode
        ctx.reject();
        // @ts-expect-error retry() exists only in manual mode (auto mode retries by the policy)
        void ctx.retry();
      },
    });
    expectTypeOf(auto.ackMode).toEqualTypeOf<'auto'>();
    defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      ackMode: 'auto',
      handle(_order, ctx) {
        // @ts-expect-error ack() exists only in manual mode
        ctx.ack();
      },
    });
    defineConsumer({
      queue: 'q',
      message: OrderPlaced,
      ackMode: 'none',
      handle(_order, ctx) {
        expectTypeOf(ctx).toEqualTypeOf<ConsumerContext>();
        // @ts-expect-error ack() exists only in manual mode
        ctx.ack();
      },
    });
  });

  it('the context carries the delivery details', () => {
    expectTypeOf<ConsumerContext['messageId']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<ConsumerContext['redelivered']>().toEqualTypeOf<boolean>();
    expectTypeOf<ConsumerContext['attempt']>().toEqualTypeOf<number>();
    expectTypeOf<ConsumerContext['deliveryCount']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ConsumerContext['timestamp']>().toEqualTypeOf<Date | undefined>();
    expectTypeOf<ConsumerContext['headers']>().toEqualTypeOf<Readonly<Record<string, unknown>>>();
  });
});
