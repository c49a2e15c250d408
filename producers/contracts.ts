// The example shop's message contracts and topology. Producers and consumers import the same
// objects, so the payload types on both sides come from one zod schema per message.
import { z } from 'zod';
import { defineMessage, defineTopology } from '../src/index.js';

export const topology = defineTopology({
  exchanges: {
    'shop.orders': { type: 'topic' },
  },
  queues: {
    // Billing must not lose an order: a replicated quorum queue, with a dead-letter queue
    // (billing.orders.dlq) for orders it cannot charge.
    'billing.orders': {
      type: 'quorum',
      deadLetter: true,
      bindings: [{ exchange: 'shop.orders', routingKey: 'order.placed' }],
    },
    // Shipping hears about every order event.
    'shipping.orders': {
      deadLetter: true,
      bindings: [{ exchange: 'shop.orders', routingKey: 'order.*' }],
    },
  },
});

export const OrderPlaced = defineMessage({
  name: 'order.placed',
  exchange: 'shop.orders',
  routingKey: 'order.placed',
  schema: z.object({
    orderId: z.string().min(1),
    customerId: z.string().min(1),
    amountCents: z.number().int().positive(),
    items: z.array(z.object({ sku: z.string(), quantity: z.number().int().positive() })).min(1),
  }),
});

export type OrderPlacedPayload = z.output<typeof OrderPlaced.schema>;

/** The broker URL the examples use; `docker compose up -d` starts a broker there. */
export const amqpUrl = process.env['AMQP_URL'] ?? 'amqp://guest:guest@localhost:5672';
export const managementUrl = process.env['RABBITMQ_MANAGEMENT_URL'] ?? 'http://guest:guest@localhost:15672';
