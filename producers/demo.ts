// The main job: publishes orders (and a few that go wrong on purpose) into the example shop and
// prints what became of each. The consumers are those `docker compose up -d` runs (`warren run
// consumers/app.ts`); when no consumer is attached to the shop's queues, the demo runs them itself.
// Usage: npm run demo   (with a broker from `docker compose up -d`, or AMQP_URL set)
//        npm run demo -- --in-memory   (no broker: the same code on warren/testing's in-memory one)
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { connect, WarrenError, type DeadLetter, type Warren } from '../src/index.js';
import app from '../consumers/app.js';
import { charged, refused } from '../consumers/billing.js';
import { shipped, unshippable } from '../consumers/shipping.js';
import { memory } from '../src/testing/index.js';
import { amqpUrl, managementUrl, OrderPlaced } from './contracts.js';
import { exampleOrder } from './place-orders.js';

const ORDERS = 20;
const QUEUES = ['billing.orders', 'shipping.orders'] as const;
const logger = pino({ level: process.env['LOG_LEVEL'] ?? 'error' });
const run = randomUUID().slice(0, 8);
const ours = (ids: string[]): string[] => ids.filter((id) => id.startsWith(`demo-${run}-`));
const orderIdOf = (body: unknown): string => {
  const id = (body as { orderId?: unknown } | null)?.orderId;
  return typeof id === 'string' ? id : '';
};

/** Consumers attached to the shop's queues by another process (the compose service), exact from the broker. */
async function consumersElsewhere(warren: Warren): Promise<number> {
  let n = 0;
  for (const q of QUEUES) n += (await warren.queueStatus(q)).consumers;
  return n;
}

/** This run's dead letters of `queue`, as an operator would find them. */
async function deadLettersOfThisRun(warren: Warren, queue: string): Promise<DeadLetter[]> {
  return warren.peekDeadLetters(queue, { limit: ORDERS, filter: (d) => ours([orderIdOf(d.body)]).length > 0 });
}

const inMemory = process.argv.includes('--in-memory');
console.log(inMemory ? `warren demo (run ${run}) on an in-memory broker (warren/testing): no RabbitMQ needed` : `warren demo (run ${run}) against ${amqpUrl.replace(/\/\/[^@/]*@/, '//')}`);
const where = inMemory ? { transport: memory() } : { urls: [amqpUrl], managementUrl };
const warren = await connect({ ...where, topology: app.topology, messages: app.messages, logger, name: 'warren-demo' });
const elsewhere = await consumersElsewhere(warren);
if (elsewhere > 0) {
  console.log(`the shop's queues have ${elsewhere} consumers already (docker compose's \`consumers\` service, or \`npm run warren -- run consumers/app.ts\`): they handle the orders`);
} else {
  for (const c of app.consumers) await warren.consume(c);
  console.log('topology declared; no consumer was attached, so the demo runs them here: billing (auto ack), shipping (manual ack)');
}

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

// Every order is done once the ones meant to fail (one per consumer, by design) are in the
// dead-letter queues and, when the consumers run here, each order is in their lists.
const handledHere = (): boolean => ours(charged).length + ours(refused).length === ORDERS && ours(shipped).length + ours(unshippable).length === ORDERS;
let letters: Record<(typeof QUEUES)[number], DeadLetter[]> = { 'billing.orders': [], 'shipping.orders': [] };
const settled = async (): Promise<boolean> => {
  if (elsewhere === 0 && !handledHere()) return false;
  letters = { 'billing.orders': await deadLettersOfThisRun(warren, 'billing.orders'), 'shipping.orders': await deadLettersOfThisRun(warren, 'shipping.orders') };
  return letters['billing.orders'].length >= 1 && letters['shipping.orders'].length >= 1;
};
const deadline = Date.now() + 30_000;
let complete = await settled();
while (!complete && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  complete = await settled();
}

console.log('');
console.log('consumer   handled  to dead-letter queue');
for (const [consumer, queue] of [['billing', 'billing.orders'], ['shipping', 'shipping.orders']] as const) {
  const dead = letters[queue].map((d) => orderIdOf(d.body));
  console.log(`${consumer.padEnd(8)}   ${String(ORDERS - dead.length).padStart(7)}  ${dead.length} (${queue}.dlq: ${dead.join(', ')})`);
}
// What an operator sees when looking into the dead-letter queue (this run's letters only).
for (const d of letters['billing.orders']) console.log(`billing.orders.dlq: ${orderIdOf(d.body)} — ${d.reason}: ${d.errorMessage} (attempts: ${d.attempts})`);
console.log('');
if (inMemory) {
  console.log('That ran on an in-memory broker. Against RabbitMQ: docker compose up -d, then npm run demo.');
} else {
  console.log(`Open ${managementUrl.replace(/\/\/[^@/]*@/, '//')} (guest/guest): Queues shows billing.orders, shipping.orders and their .dlq queues;`);
  console.log(`Connections shows warren-demo:publish${elsewhere === 0 ? ' and warren-demo:consume' : ', and shop:publish and shop:consume (the consumers service)'}.`);
  console.log('Then try: npm run warren -- inspect   ·   npm run warren -- dlq peek billing.orders');
}
await warren.close();
if (!complete) {
  console.error(
    elsewhere === 0
      ? 'demo incomplete: not every order was handled here within 30 s. Is another billing or shipping consumer running against this broker and taking some of them?'
      : 'demo incomplete: the dead letters did not come within 30 s. Are the consumers elsewhere running (docker compose logs consumers)?',
  );
  process.exit(1);
}
