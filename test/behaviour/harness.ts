// The behaviour suite's one seam: the same tests run on the in-memory transport (warren/testing)
// and on a real RabbitMQ. WARREN_BEHAVIOUR=broker picks the broker (vitest project
// `behaviour-broker`); anything else the in-memory broker (project `behaviour-memory`).
// Tests use only what both sides offer: a Warren client, the deliveries it recorded, queue
// counts and contents, waiting for a condition, and letting time pass.
import amqp from 'amqplib';
import { setImmediate as nextTurn, setTimeout as realSleep } from 'node:timers/promises';
import { connect, defineApp, WarrenChannel, type ConnectOptions, type Consumer, type ConsumeTrace, type MessageContract, type Topology, type Warren } from '../../src/index.js';
import { createTestWarren, type DeliveryRecord, type MemoryBroker, type TestWarren } from '../../src/testing/index.js';
import { deliveryRecord } from '../../src/testing/test-warren.js';
import diagnostics from 'node:diagnostics_channel';
import { brokerUrls, management, uniqueName } from '../helpers/broker.js';

export type Side = 'memory' | 'broker';
export const side: Side = process.env['WARREN_BEHAVIOUR'] === 'broker' ? 'broker' : 'memory';

export interface QueuedMessage {
  body: unknown;
  headers: Record<string, unknown>;
  redelivered: boolean;
}

export interface Harness {
  readonly side: Side;
  /** A name unique to this test (queues and exchanges on a shared broker must not collide). */
  name(prefix: string): string;
  /** Connects a client with this topology and starts these consumers. */
  start(options: { topology: Topology; messages?: MessageContract[]; consumers?: Consumer[]; connect?: Partial<ConnectOptions> }): Promise<Warren>;
  /** Every delivery the started clients' consumers handled, in order. */
  readonly deliveries: DeliveryRecord[];
  /** Waits (real time, up to 10 s) until `check` passes; fails naming `what`. */
  until(check: () => boolean | Promise<boolean>, what: string): Promise<void>;
  /** Lets `ms` of broker time pass (TTLs, retry delays). */
  elapse(ms: number): Promise<void>;
  /** Ready messages in a queue now. */
  count(queue: string): Promise<number>;
  /** The ready messages of a queue, head first, left in place. */
  messages(queue: string): Promise<QueuedMessage[]>;
  /** Publishes a raw message (any body and headers) to an exchange, as another service would. */
  sendRaw(exchange: string, routingKey: string, body: string, properties?: { headers?: Record<string, unknown>; messageId?: string; expiration?: string; contentType?: string }): Promise<void>;
  /** Binds exchange `destination` to `source` (exchange.bind): warren's topology has no such binding, so the test makes it. */
  bindExchange(destination: string, source: string, routingKey: string): Promise<void>;
  /** Closes every connection of the started clients from the broker's side; they reconnect. */
  dropConnections(): Promise<void>;
  close(): Promise<void>;
}

/** A harness for one test: create it in beforeEach, close it in afterEach. */
export function harness(): Harness {
  return side === 'memory' ? memoryHarness() : brokerHarness();
}

function waitUntil(poll: () => Promise<void>) {
  return async (check: () => boolean | Promise<boolean>, what: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await poll();
    }
  };
}

function memoryHarness(): Harness {
  const clients: TestWarren[] = [];
  const pulls: (() => void)[] = [];
  let broker: MemoryBroker | undefined;
  const deliveries: DeliveryRecord[] = [];
  let n = 0;
  /** Copies each client's new deliveries into the one list. */
  const pull = (): void => {
    for (const p of pulls) p();
  };
  const need = (): MemoryBroker => {
    if (broker === undefined) throw new Error('start() a client first');
    return broker;
  };
  return {
    side: 'memory',
    name: (prefix) => `${prefix}.${++n}`,
    get deliveries() {
      pull();
      return deliveries;
    },
    async start({ topology, messages = [], consumers = [], connect: options }) {
      const app = defineApp({ name: `behaviour-${clients.length + 1}`, topology, messages, consumers, ...(options !== undefined ? { connect: options } : {}) });
      const t = await createTestWarren(app, broker !== undefined ? { broker } : {});
      broker ??= t.broker;
      clients.push(t);
      let index = 0;
      pulls.push(() => {
        for (; index < t.deliveries.length; index++) deliveries.push(t.deliveries[index] as DeliveryRecord);
      });
      pull();
      return t.warren;
    },
    until: waitUntil(async () => {
      await nextTurn();
      pull();
    }),
    async elapse(ms) {
      const first = clients[0];
      if (first === undefined) throw new Error('start() a client first');
      await first.advance(ms);
      for (const c of clients) await c.settle();
      pull();
    },
    count: (queue) => Promise.resolve(need().queue(queue)?.messageCount ?? 0),
    messages: (queue) => Promise.resolve((need().queue(queue)?.messages ?? []).map((m) => ({ body: parse(m.body), headers: { ...m.headers }, redelivered: m.redelivered }))),
    sendRaw(exchange, routingKey, body, properties = {}) {
      need().send(exchange, routingKey, body, properties);
      return Promise.resolve();
    },
    bindExchange(destination, source, routingKey) {
      need().bindExchange(destination, source, routingKey);
      return Promise.resolve();
    },
    dropConnections() {
      need().dropConnections();
      return Promise.resolve();
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}

function brokerHarness(): Harness {
  const clients: Warren[] = [];
  const names = new Set<string>();
  const deliveries: DeliveryRecord[] = [];
  const prefixes: string[] = [];
  const onEnd = (message: unknown): void => {
    const t = message as ConsumeTrace;
    if (!names.has(t.client)) return;
    deliveries.push(deliveryRecord(t));
  };
  const endChannel = diagnostics.channel(`tracing:${WarrenChannel.consume}:end`);
  endChannel.subscribe(onEnd);
  const url = brokerUrls().amqpUrl;
  return {
    side: 'broker',
    name: (prefix) => {
      const name = uniqueName(prefix);
      prefixes.push(name);
      return name;
    },
    deliveries,
    async start({ topology, messages = [], consumers = [], connect: options = {} }) {
      const name = uniqueName('behaviour');
      names.add(name);
      const warren = await connect({ urls: [url], name, topology, messages, ...options });
      clients.push(warren);
      for (const c of consumers) await warren.consume(c);
      return warren;
    },
    until: waitUntil(() => realSleep(10)),
    async elapse(ms) {
      await realSleep(ms);
    },
    async count(queue) {
      return withChannel(url, async (ch) => (await ch.checkQueue(queue)).messageCount);
    },
    messages(queue) {
      return withChannel(url, async (ch) => {
        const out: QueuedMessage[] = [];
        for (;;) {
          const m = await ch.get(queue, { noAck: false });
          if (m === false) break;
          out.push({ body: parse(m.content), headers: { ...(m.properties.headers ?? {}) }, redelivered: m.fields.redelivered });
        }
        // Closing the channel returns every message, in order, unacked.
        return out;
      });
    },
    async sendRaw(exchange, routingKey, body, properties = {}) {
      await withChannel(url, async (_ch, conn) => {
        const ch = await conn.createConfirmChannel();
        ch.publish(exchange, routingKey, Buffer.from(body), properties);
        await ch.waitForConfirms();
        await ch.close();
      });
    },
    async bindExchange(destination, source, routingKey) {
      await withChannel(url, async (ch) => {
        await ch.bindExchange(destination, source, routingKey);
      });
    },
    async dropConnections() {
      // The management API lists a new connection only after its next stats round: wait for each client's two.
      for (const name of names) {
        const mine = (c: { client_properties: { connection_name?: string } }): boolean => c.client_properties.connection_name?.startsWith(`${name}:`) === true;
        await waitUntil(() => realSleep(100))(async () => (await management.connections()).filter(mine).length === 2, `the management API lists ${name}'s connections`);
        await management.closeConnections(mine);
      }
    },
    async close() {
      endChannel.unsubscribe(onEnd);
      await Promise.all(clients.map((c) => c.close()));
      // Everything the test declared is named under one of its prefixes (wait queues and .dlq included).
      const all = (await management.json<{ name: string }[]>('/api/queues/%2F?columns=name')) ?? [];
      const mine = (n: string): boolean => prefixes.some((p) => n === p || n.startsWith(`${p}.`));
      for (const q of all.filter((q) => mine(q.name))) await management.deleteQueue(q.name);
      const exchanges = (await management.json<{ name: string }[]>('/api/exchanges/%2F?columns=name')) ?? [];
      for (const e of exchanges.filter((e) => mine(e.name))) await management.deleteExchange(e.name);
    },
  };
}

async function withChannel<T>(url: string, fn: (ch: amqp.Channel, conn: amqp.ChannelModel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    return await fn(ch, conn);
  } finally {
    await conn.close();
  }
}

function parse(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return body.toString('utf8');
  }
}
