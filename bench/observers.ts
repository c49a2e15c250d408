// npm run bench:observers — what warren's metrics and tracing subscribers cost per message, without
// a broker: the channel events of one publish (start, accepted, end) and one delivery (start + end), a million
// times, with registerMetrics / registerTracing on and off. (`BENCH_OBSERVED=1 npm run bench`
// measures the same against a broker, where the noise is larger than these costs.)
import diagnostics from 'node:diagnostics_channel';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { WarrenChannel } from '../src/index.js';
import { registerMetrics } from '../src/metrics/index.js';
import { registerTracing } from '../src/otel/index.js';

const N = Number(process.env['BENCH_EVENTS'] ?? 1_000_000);
const publish = diagnostics.tracingChannel(WarrenChannel.publish);
const consume = diagnostics.tracingChannel(WarrenChannel.consume);

const onePublish = (): void => {
  const t = { client: 'shop', contract: 'order.placed', exchange: 'shop.orders', routingKey: 'order.placed', messageId: 'm-1', headers: {}, accepted: true, outcome: 'confirmed', durationMs: 3.2 };
  publish.start.publish(t);
  publish.asyncStart.publish(t); // accepted
  publish.end.publish(t);
};
const oneDelivery = (): void => {
  const t = { client: 'shop', consumer: 'billing', queue: 'billing.orders', contract: 'order.placed', exchange: 'shop.orders', routingKey: 'order.placed', messageId: 'm-1', attempt: 1, redelivered: false, headers: {}, outcome: 'handled', action: 'ack', durationMs: 1.1 };
  consume.start.runStores(t, () => undefined);
  consume.end.publish(t);
};

/** ns per call of `fn`, after a warm-up. */
function measure(fn: () => void): number {
  for (let i = 0; i < 50_000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) fn();
  return Number(process.hrtime.bigint() - t0) / N;
}

const rows: { subscribers: string; 'publish ns/msg': string; 'delivery ns/msg': string }[] = [];
const row = (subscribers: string): void => void rows.push({ subscribers, 'publish ns/msg': measure(onePublish).toFixed(0), 'delivery ns/msg': measure(oneDelivery).toFixed(0) });

row('none');
const metrics = registerMetrics(new Registry());
row('metrics');
metrics.close();
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
trace.setGlobalTracerProvider(new BasicTracerProvider());
const tracing = registerTracing();
row('tracing (spans recorded, not exported)');
tracing.close();
console.table(rows);
