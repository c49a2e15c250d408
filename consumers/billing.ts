// Billing: charges each placed order. Auto ack mode — resolving acks the message; throwing sends
// it to billing.orders.dlq (the queue has deadLetter: true), where an operator can look at it.
import { defineConsumer } from '../src/index.js';
import { OrderPlaced } from '../producers/contracts.js';
import { isMain, runConsumers } from './run.js';

/** Orders above this are refused by the (pretend) payment provider. */
export const CHARGE_LIMIT_CENTS = 100_000;

/** Order ids this process charged, and refused (for the demo's summary). */
export const charged: string[] = [];
export const refused: string[] = [];

export class ChargeRefused extends Error {}

const billing = defineConsumer({
  name: 'billing',
  queue: 'billing.orders',
  message: OrderPlaced,
  prefetch: 20,
  concurrency: 5,
  async handle(order, ctx) {
    // `order` is typed from OrderPlaced's schema and was validated on receipt.
    if (order.amountCents > CHARGE_LIMIT_CENTS) {
      refused.push(order.orderId);
      throw new ChargeRefused(`charge of ${order.amountCents} cents refused for order ${order.orderId}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5)); // the payment provider's round trip
    charged.push(order.orderId);
    ctx.log.info({ orderId: order.orderId, amountCents: order.amountCents }, 'charged');
  },
});

export default billing;

if (isMain(import.meta.url)) await runConsumers([billing]);
