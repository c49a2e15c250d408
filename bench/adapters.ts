// The same workload through each client, each used the way its documentation recommends for
// reliable messaging: publisher confirms, persistent messages, manual acks with prefetch.
import { randomUUID } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import amqplib from 'amqplib';
import { AMQPClient } from '@cloudamqp/amqp-client';
import amqpConnectionManager from 'amqp-connection-manager';
import { Connection as RabbitClient } from 'rabbitmq-client';
import rascal from 'rascal';
import { z } from 'zod';
import * as current from '../src/index.js';

export interface Adapter {
  readonly name: string;
  /**
   * Publishes `count` persistent messages to `queue`, confirmed, with at most `window` in flight.
   * `bodies(i)` is the encoded message; `payloads(i)` the same message as an object, for clients
   * (warren) that validate and encode it themselves.
   */
  publish(queue: string, bodies: (i: number) => Buffer, count: number, window: number, payloads: (i: number) => unknown): Promise<void>;
  /** Consumes until `count` messages were received and acked; `onMessage` sees each body. */
  consume(queue: string, count: number, prefetch: number, onMessage?: (body: Buffer) => void): Promise<void>;
  close(): Promise<void>;
}

/** Runs `count` tasks with at most `window` at once. */
async function windowed(count: number, window: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
}

function countdown(count: number): { tick: () => void; done: Promise<void> } {
  let left = count;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  if (count === 0) resolve();
  return {
    tick: () => {
      left -= 1;
      if (left === 0) resolve();
    },
    done,
  };
}

/**
 * Raw amqplib on a confirm channel. `sameProperties`: also sends what every warren publish
 * carries (a UUID messageId, timestamp, type, app-id, mandatory), to tell the cost of those
 * properties apart from the cost of warren's code.
 */
export async function rawAmqplib(url: string, sameProperties = false): Promise<Adapter> {
  const pubConn = await amqplib.connect(url, { noDelay: true });
  const subConn = await amqplib.connect(url, { noDelay: true });
  const ch = await pubConn.createConfirmChannel();
  // Socket backpressure: when publish returns false, wait for 'drain' before the next one.
  let drained: Promise<void> | undefined;
  return {
    name: sameProperties ? 'amqplib (warren properties)' : 'amqplib',
    async publish(queue, bodies, count, window) {
      await windowed(count, window, async (i) => {
        if (drained !== undefined) await drained;
        await new Promise<void>((resolve, reject) => {
          const options: amqplib.Options.Publish = sameProperties
            ? { persistent: true, contentType: 'application/json', mandatory: true, messageId: randomUUID(), type: 'bench', appId: 'bench', timestamp: Math.floor(Date.now() / 1000) }
            : { persistent: true, contentType: 'application/json' };
          const ok = ch.sendToQueue(queue, bodies(i), options, (err: unknown) =>
            err ? reject(err instanceof Error ? err : new Error('publish failed')) : resolve(),
          );
          if (!ok && drained === undefined) {
            drained = new Promise<void>((r) => ch.once('drain', () => ((drained = undefined), r())));
          }
        });
      });
    },
    async consume(queue, count, prefetch, onMessage) {
      const c = await subConn.createChannel();
      await c.prefetch(prefetch);
      const { tick, done } = countdown(count);
      const { consumerTag } = await c.consume(queue, (msg) => {
        if (msg === null) return;
        onMessage?.(msg.content);
        c.ack(msg);
        tick();
      });
      await done;
      await c.cancel(consumerTag);
      await c.close();
    },
    async close() {
      await pubConn.close();
      await subConn.close();
    },
  };
}

const Payload = z.object({ i: z.number().int(), sentAt: z.number(), data: z.string() });

/** What the bench uses of warren: the working tree's src/, or a build of another revision (bench/baseline.ts). */
export type WarrenLib = Pick<typeof current, 'connect' | 'defineConsumer' | 'defineMessage'>;

/**
 * warren, the working tree's by default. `lib` and `label` run a baseline build through this
 * same code, with the same options, as the client `<label>` / `<label> (no validation)`.
 */
export async function warren(url: string, validate = true, lib: WarrenLib = current, label = 'warren'): Promise<Adapter> {
  const { connect, defineConsumer, defineMessage } = lib;
  const schema = validate ? Payload : (z.any() as unknown as typeof Payload);
  const w = await connect({ urls: [url], name: validate ? 'bench-warren' : 'bench-warren-novalidate' });
  let contracts = new Map<string, ReturnType<typeof current.defineMessage<typeof Payload>>>();
  const contract = (queue: string) => {
    let c = contracts.get(queue);
    if (c === undefined) {
      c = defineMessage({ name: 'bench', exchange: '', routingKey: queue, schema });
      contracts.set(queue, c);
    }
    return c;
  };
  return {
    name: validate ? label : `${label} (no validation)`,
    async publish(queue, _bodies, count, window, payloads) {
      const c = contract(queue);
      // warren encodes the payload itself: hand it the object the raw clients get as bytes.
      await windowed(count, window, (i) => w.publish(c, payloads(i) as z.input<typeof Payload>));
    },
    async consume(queue, count, prefetch, onMessage) {
      const { tick, done } = countdown(count);
      const handle = await w.consume(
        defineConsumer({
          name: `bench-${queue}`,
          queue,
          message: contract(queue),
          prefetch,
          concurrency: prefetch,
          handle: (p) => {
            onMessage?.(Buffer.from(String(p.sentAt)));
            tick();
          },
        }),
      );
      await done;
      await handle.stop();
    },
    async close() {
      contracts = new Map();
      await w.close();
    },
  };
}

/**
 * The working tree's warren with a no-op subscriber on the `warren:publish` and `warren:consume`
 * tracing channels, from its connect to its close (so only this client's rounds have one): what
 * the instrumentation costs once someone listens.
 */
export async function warrenSubscribed(url: string): Promise<Adapter> {
  const adapter = await warren(url, true);
  const noop: diagnostics.TracingChannelSubscribers<object> = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
  const channels = ['warren:publish', 'warren:consume'].map((name) => diagnostics.tracingChannel(name));
  for (const channel of channels) channel.subscribe(noop);
  return {
    name: 'warren (subscribed)',
    publish: (...args) => adapter.publish(...args),
    consume: (...args) => adapter.consume(...args),
    async close() {
      for (const channel of channels) channel.unsubscribe(noop);
      await adapter.close();
    },
  };
}

/** warren with its Prometheus metrics registered (registerMetrics; the message-path counting, no gauges tracked). */
export async function warrenMetrics(url: string): Promise<Adapter> {
  const { Registry } = await import('prom-client');
  const { registerMetrics } = await import('../src/metrics/index.js');
  const metrics = registerMetrics(new Registry());
  return observed(await warren(url, true), 'warren (metrics)', () => metrics.close());
}

/** warren with OpenTelemetry tracing: an SDK tracer provider (spans recorded, none exported), W3C propagation. */
export async function warrenTracing(url: string): Promise<Adapter> {
  const { context, propagation, trace } = await import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
  const { BasicTracerProvider } = await import('@opentelemetry/sdk-trace-base');
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(new BasicTracerProvider());
  const { registerTracing } = await import('../src/otel/index.js');
  const tracing = registerTracing();
  return observed(await warren(url, true), 'warren (tracing)', () => {
    tracing.close();
    // The context manager would otherwise tax every row after this one (async hooks on).
    context.disable();
  });
}

function observed(adapter: Adapter, name: string, stop: () => void): Adapter {
  return {
    name,
    publish: (...args) => adapter.publish(...args),
    consume: (...args) => adapter.consume(...args),
    async close() {
      stop();
      await adapter.close();
    },
  };
}

export async function connectionManager(url: string): Promise<Adapter> {
  const conn = amqpConnectionManager.connect([url]);
  const pub = conn.createChannel({ json: false, confirm: true });
  await pub.waitForConnect();
  return {
    name: 'amqp-connection-manager',
    async publish(queue, bodies, count, window) {
      await windowed(count, window, (i) => pub.sendToQueue(queue, bodies(i), { persistent: true, contentType: 'application/json' }));
    },
    async consume(queue, count, prefetch, onMessage) {
      const { tick, done } = countdown(count);
      // The wrapper's own consume(): it re-subscribes after a reconnect, and cancelAll() knows the consumer.
      const sub = conn.createChannel({ json: false, confirm: false });
      await sub.waitForConnect();
      await sub.consume(
        queue,
        (msg) => {
          onMessage?.(msg.content);
          sub.ack(msg);
          tick();
        },
        { prefetch },
      );
      await done;
      // cancel is a round trip on the same channel: once it returns, the broker has every ack.
      await sub.cancelAll();
      await sub.close();
    },
    async close() {
      await pub.close();
      await conn.close();
    },
  };
}

export async function rabbitmqClient(url: string): Promise<Adapter> {
  const rabbit = new RabbitClient(url);
  await rabbit.onConnect(10_000);
  const pub = rabbit.createPublisher({ confirm: true, maxAttempts: 1 });
  return {
    name: 'rabbitmq-client',
    async publish(queue, bodies, count, window) {
      await windowed(count, window, (i) => pub.send({ routingKey: queue, durable: true, contentType: 'application/json' }, bodies(i)));
    },
    async consume(queue, count, prefetch, onMessage) {
      const { tick, done } = countdown(count);
      const sub = rabbit.createConsumer({ queue, queueOptions: { passive: true }, qos: { prefetchCount: prefetch }, concurrency: prefetch }, (msg) => {
        // rabbitmq-client decodes application/json bodies itself; hand the harness bytes like the others.
        onMessage?.(Buffer.isBuffer(msg.body) ? msg.body : Buffer.from(JSON.stringify(msg.body)));
        tick();
      });
      await done;
      await sub.close();
    },
    async close() {
      await pub.close();
      await rabbit.close();
    },
  };
}

export async function cloudamqp(url: string): Promise<Adapter> {
  const client = new AMQPClient(url);
  const conn = await client.connect();
  const ch = await conn.channel();
  await ch.confirmSelect();
  const subClient = new AMQPClient(url);
  const subConn = await subClient.connect();
  return {
    name: '@cloudamqp/amqp-client',
    async publish(queue, bodies, count, window) {
      await windowed(count, window, (i) => ch.basicPublish('', queue, bodies(i), { deliveryMode: 2, contentType: 'application/json' }));
    },
    async consume(queue, count, prefetch, onMessage) {
      const c = await subConn.channel();
      await c.prefetch(prefetch);
      const { tick, done } = countdown(count);
      const consumer = await c.basicConsume(queue, { noAck: false }, (msg) => {
        if (msg.body !== null) onMessage?.(Buffer.from(msg.body));
        void msg.ack();
        tick();
      });
      await done;
      await consumer.cancel();
      await c.close();
    },
    async close() {
      await conn.close();
      await subConn.close();
    },
  };
}

/**
 * rascal is configured up front: one broker (one connection) per queue, with a confirmed,
 * persistent publication and a subscription, created on first use and shut down once the
 * queue has been consumed. (A broker per call would open thousands of connections in the
 * latency run, one per message.)
 */
export async function rascalAdapter(url: string): Promise<Adapter> {
  const brokers = new Map<string, Promise<rascal.BrokerAsPromised>>();
  const brokerFor = (queue: string, prefetch = 100): Promise<rascal.BrokerAsPromised> => {
    let b = brokers.get(queue);
    if (b === undefined) {
      const config = rascal.withDefaultConfig({
        vhosts: {
          '/': {
            connection: { url },
            queues: { [queue]: { assert: false, check: true } },
            publications: { pub: { queue, confirm: true, options: { persistent: true, contentType: 'application/json' } } },
            subscriptions: { sub: { queue, prefetch } },
          },
        },
      });
      b = rascal.BrokerAsPromised.create(config).then((broker) => {
        broker.on('error', (err: unknown) => console.error('rascal broker error', err));
        return broker;
      });
      brokers.set(queue, b);
    }
    return b;
  };
  const shutdown = async (queue: string): Promise<void> => {
    const b = brokers.get(queue);
    brokers.delete(queue);
    if (b !== undefined) await (await b).shutdown();
  };
  return {
    name: 'rascal',
    async publish(queue, bodies, count, window) {
      const broker = await brokerFor(queue);
      await windowed(
        count,
        window,
        async (i) =>
          new Promise<void>((resolve, reject) => {
            broker.publish('pub', bodies(i)).then(
              (publication) =>
                publication
                  .on('success', () => resolve())
                  .on('error', (err: Error) => reject(err))
                  .on('return', () => reject(new Error('rascal: message returned'))),
              reject,
            );
          }),
      );
    },
    async consume(queue, count, prefetch, onMessage) {
      const broker = await brokerFor(queue, prefetch);
      const { tick, done } = countdown(count);
      const sub = await broker.subscribe('sub', { prefetch });
      sub.on('message', (message: amqplib.Message, _content: unknown, ackOrNack: () => void) => {
        onMessage?.(message.content);
        ackOrNack();
        tick();
      });
      sub.on('error', (err: unknown) => console.error('rascal subscription error', err));
      await done;
      await sub.cancel();
      await shutdown(queue);
    },
    async close() {
      for (const q of [...brokers.keys()]) await shutdown(q);
    },
  };
}
