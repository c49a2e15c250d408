// Billing: charges each placed order. Auto ack mode — resolving acks the message. A failure the
// payment provider may get over (a timeout) is retried after 200 ms, then 1 s; a refusal that no
// retry can fix throws NonRetryableError and goes straight to billing.orders.dlq, where an
// operator can look at it (warren.peekDeadLetters) and send it back (warren.replayDeadLetters).
import { defineConsumer, NonRetryableError } from '../src/index.js';
import { OrderPlaced } from '../producers/contracts.js';

/** Orders above this are refused by the (pretend) payment provider. */
export const CHARGE_LIMIT_CENTS = 100_000;

/** Order ids this process charged, and refused (for the demo's summary). */
export const charged: string[] = [];
export const refused: string[] = [];


const billing = defineConsumer({
  name: 'billing',
  queue: 'billing.orders',
  message: OrderPlaced,
  prefetch: 20,
  concurrency: 5,
  retry: { maxAttempts: 3, delays: ['200ms', '1s'] },
  async handle(order, ctx) {
    // `order` is typed from OrderPlaced's schema and was validated on receipt.
    if (order.amountCents > CHARGE_LIMIT_CENTS) {
      refused.push(order.orderId);
      throw new NonRetryableError(`charge of ${order.amountCents} cents refused for order ${order.orderId}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5)); // the payment provider's round trip
    charged.push(order.orderId);
    ctx.log.info({ orderId: order.orderId, amountCents: order.amountCents }, 'charged');
  },
});

export default billing;
