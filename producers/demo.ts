// The main job: declares the shop topology, runs the billing and shipping consumers, publishes
// orders (and a few that go wrong on purpose), and prints what happened to each.
// Usage: npm run demo   (with a broker from `docker compose up -d`, or AMQP_URL set)
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { connect, WarrenError } from '../src/index.js';
import billing, { charged, refused } from '../consumers/billing.js';
import shipping, { shipped, unshippable } from '../consumers/shipping.js';
import { amqpUrl, managementUrl, OrderPlaced, topology } from './contracts.js';
import { exampleOrder } from './place-orders.js';

const ORDERS = 20;
const logger = pino({ level: process.env['LOG_LEVEL'] ?? 'error' });
const run = randomUUID().slice(0, 8);
const ours = (ids: string[]): string[] => ids.filter((id) => id.startsWith(`demo-${run}-`));

console.log(`warren demo (run ${run}) against ${amqpUrl.replace(/\/\/[^@/]*@/, '//')}`);
const warren = await connect({ urls: [amqpUrl], topology, logger, managementUrl, name: 'warren-demo' });
await warren.consume(billing);
await warren.consume(shipping);
console.log('topology declared; consumers attached: billing (auto ack), shipping (manual ack)');

// Good orders, one too expensive for billing, one too large for shipping.
const orders = Array.from({ length: ORDERS }, (_, i) => ({ ...exampleOrder(i + 1), orderId: `demo-${run}-${i + 1}` }));
orders[4] = { ...orders[4]!, amountCents: 250_000 };
orders[9] = { ...orders[9]!, items: [{ sku: 'pallet', quantity: 60 }] };
const receipts = await Promise.all(orders.map((o) => warren.publish(OrderPlaced, o)));
console.log(`published ${receipts.length} orders; the broker confirmed every one`);

// Two publishes that fail before anything is lost, each with a typed error.
for (const attempt of [
  { what: 'an order with a negative amount', send: () => warren.publish(OrderPlaced, { ...exampleOrder(0), amountCents: -5 }) },
  { what: 'an order with a routing key nobody binds', send: () => warren.publish(OrderPlaced, exampleOrder(0), { routingKey: 'refund.created' }) },
]) {
  try {
    await attempt.send();
    console.log(`unexpected: ${attempt.what} was accepted`);
  } catch (err) {
    const code = err instanceof WarrenError ? err.code : 'UNKNOWN';
    console.log(`refused ${attempt.what}: ${code}`);
  }
}

const deadline = Date.now() + 30_000;
const done = (): boolean =>
  ours(charged).length + ours(refused).length === ORDERS && ours(shipped).length + ours(unshippable).length === ORDERS;
while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));

console.log('');
console.log('consumer   handled  to dead-letter queue');
console.log(`billing    ${String(ours(charged).length).padStart(7)}  ${ours(refused).length} (billing.orders.dlq: ${ours(refused).join(', ')})`);
console.log(`shipping   ${String(ours(shipped).length).padStart(7)}  ${ours(unshippable).length} (shipping.orders.dlq: ${ours(unshippable).join(', ')})`);
// What an operator sees when looking into the dead-letter queue (this run's letters only).
const orderIdOf = (body: unknown): string => {
  const id = (body as { orderId?: unknown } | null)?.orderId;
  return typeof id === 'string' ? id : '';
};
for (const d of await warren.peekDeadLetters('billing.orders', 1000)) {
  if (ours([orderIdOf(d.body)]).length === 0) continue;
  console.log(`billing.orders.dlq: ${orderIdOf(d.body)} — ${d.reason}: ${d.errorMessage} (attempts: ${d.attempts})`);
}
console.log('');
console.log(`health: ${JSON.stringify({ ok: warren.health().ok, consumers: warren.health().consumers.map((c) => `${c.name}:${c.attached ? 'attached' : 'detached'}`) })}`);
console.log(`Open ${managementUrl.replace(/\/\/[^@/]*@/, '//')} (guest/guest): Queues shows billing.orders, shipping.orders and their .dlq queues;`);
console.log('Connections shows warren-demo:publish and warren-demo:consume.');
await warren.close();
if (!done()) {
  console.error(
    'demo incomplete: not every order was handled here within 30 s. Is another billing or shipping consumer ' +
      '(e.g. npx tsx consumers/shipping.ts) running against this broker and taking some of them?',
  );
  process.exit(1);
}
