// Publishes example orders and waits for the broker to confirm each one.
// Usage: npx tsx producers/place-orders.ts [count]
import { pino } from 'pino';
import { connect, type PublishReceipt, type Warren } from '../src/index.js';
import { amqpUrl, managementUrl, OrderPlaced, topology, type OrderPlacedPayload } from './contracts.js';
import { pathToFileURL } from 'node:url';

export function exampleOrder(i: number): OrderPlacedPayload {
  return {
    orderId: `order-${i}`,
    customerId: `customer-${i % 7}`,
    amountCents: 500 + ((i * 1337) % 20_000),
    items: [{ sku: `sku-${i % 13}`, quantity: 1 + (i % 3) }],
  };
}

/** Publishes `count` orders concurrently; resolves when every one is confirmed by the broker. */
export async function placeOrders(warren: Warren, count: number, first = 1): Promise<PublishReceipt[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => warren.publish(OrderPlaced, exampleOrder(first + i))));
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const count = Number(process.argv[2] ?? 10);
  const logger = pino({ level: process.env['LOG_LEVEL'] ?? 'info' });
  const warren = await connect({ urls: [amqpUrl], topology, logger, managementUrl, name: 'order-producer' });
  const receipts = await placeOrders(warren, count);
  logger.info({ confirmed: receipts.length }, 'orders confirmed by the broker');
  await warren.close();
}
