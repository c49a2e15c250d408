// Shipping: books a parcel for each order. Manual ack mode — the handler settles each message
// itself, so it can ack only once the parcel is booked and dead-letter an order it can never ship.
import { defineConsumer } from '../src/index.js';
import { OrderPlaced } from '../producers/contracts.js';

/** Order ids this process shipped, and dead-lettered (for the demo's summary). */
export const shipped: string[] = [];
export const unshippable: string[] = [];

const shipping = defineConsumer({
  name: 'shipping',
  queue: 'shipping.orders',
  message: OrderPlaced,
  ackMode: 'manual',
  prefetch: 10,
  concurrency: 2,
  async handle(order, ctx) {
    const parcels = order.items.reduce((n, item) => n + item.quantity, 0);
    if (parcels > 50) {
      ctx.log.warn({ orderId: order.orderId, parcels }, 'too many parcels for one shipment; dead-lettering');
      unshippable.push(order.orderId);
      ctx.reject();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2)); // book with the carrier
    shipped.push(order.orderId);
    ctx.ack();
  },
});

export default shipping;
