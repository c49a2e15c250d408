import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type TracerProvider } from '@opentelemetry/api';
import { ChannelName, type ConsumeTrace, type PublishTrace } from '../instrument/channels.js';
import { VERSION } from '../support/version.js';

/**
 * OpenTelemetry spans for warren's messages, from its diagnostics channels: a PRODUCER span per
 * publish (ended at the confirm; error status when it failed) whose W3C trace context goes into
 * the message's headers, and a CONSUMER span per delivery, a child of the producer's context it
 * carries (ended once the broker action is taken, with the outcome). Retry and dead-letter copies
 * keep the headers, so every attempt of a message is in its trace.
 */
export interface WarrenTracing {
  /** Stops making spans. */
  close(): void;
}

export interface TracingOptions {
  /** Default: the global tracer provider (what the OpenTelemetry SDK registers). */
  tracerProvider?: TracerProvider;
}

const INSTRUMENTATION = 'warren';

/** The exchange as OpenTelemetry's messaging conventions name it: the default exchange is `amq.default`. */
function destination(exchange: string): string {
  return exchange === '' ? 'amq.default' : exchange;
}

/** A header carrier for the propagator: only string values are read back. */
const getter = {
  keys: (carrier: Readonly<Record<string, unknown>>) => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, unknown>>, key: string) => {
    const v = carrier[key];
    return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString() : undefined;
  },
};

/**
 * The AsyncLocalStorage of the registered OpenTelemetry context manager
 * (`@opentelemetry/context-async-hooks`), so the handler can run inside the consumer span's
 * context: spans it starts become the consumer span's children. Read from a private field,
 * checked first; without it, spans are still made, just not made current in the handler.
 */
function contextStorage(): AsyncLocalStorage<Context> | undefined {
  const api = context as unknown as { _getContextManager?: () => unknown };
  const manager = api._getContextManager?.() as { _asyncLocalStorage?: unknown } | undefined;
  const storage = manager?._asyncLocalStorage;
  return storage instanceof AsyncLocalStorage ? (storage as AsyncLocalStorage<Context>) : undefined;
}

/**
 * Starts making spans for every warren client in the process. Opt-in, and free until called:
 * warren itself never imports OpenTelemetry. Register the SDK (tracer provider, W3C propagator,
 * async-hooks context manager) first.
 */
export function registerTracing(options: TracingOptions = {}): WarrenTracing {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION, VERSION);
  const spans = new WeakMap<object, Span>();
  const publish = diagnostics.tracingChannel(ChannelName.publish);
  const consume = diagnostics.tracingChannel(ChannelName.consume);

  const onPublishStart = (message: unknown): void => {
    const t = message as PublishTrace;
    const span = tracer.startSpan(
      `publish ${destination(t.exchange)}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'rabbitmq',
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'publish',
          'messaging.destination.name': destination(t.exchange),
          'messaging.rabbitmq.destination.routing_key': t.routingKey,
          'messaging.message.id': t.messageId,
          'warren.client': t.client,
          'warren.message': t.contract,
        },
      },
      context.active(),
    );
    spans.set(t, span);
    // The headers object is what is sent: the consumer continues this trace from it.
    propagation.inject(trace.setSpan(context.active(), span), t.headers);
  };
  const onPublishEnd = (message: unknown): void => {
    const t = message as PublishTrace;
    const span = spans.get(t);
    if (span === undefined) return;
    spans.delete(t);
    span.setAttribute('warren.outcome', t.outcome ?? 'failed');
    if (t.outcome !== 'confirmed') {
      if (t.error !== undefined) span.recordException(t.error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: t.error?.message ?? t.outcome ?? 'failed' });
    }
    span.end();
  };

  /** The consumer span of a delivery: a child of the context its headers carry. */
  const consumerSpan = (t: ConsumeTrace): Span => {
    const existing = spans.get(t);
    if (existing !== undefined) return existing;
    const parent = propagation.extract(ROOT_CONTEXT, t.headers, getter);
    const span = tracer.startSpan(
      `process ${t.queue}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.system': 'rabbitmq',
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'messaging.destination.name': destination(t.exchange),
          'messaging.destination.subscription.name': t.queue,
          'messaging.consumer.group.name': t.consumer,
          'messaging.rabbitmq.destination.routing_key': t.routingKey,
          ...(t.messageId !== undefined ? { 'messaging.message.id': t.messageId } : {}),
          'warren.client': t.client,
          'warren.message': t.contract,
          'warren.attempt': t.attempt,
          'warren.redelivered': t.redelivered,
        },
      },
      parent,
    );
    spans.set(t, span);
    return span;
  };
  const onConsumeStart = (message: unknown): void => void consumerSpan(message as ConsumeTrace);
  const onConsumeEnd = (message: unknown): void => {
    const t = message as ConsumeTrace;
    const span = spans.get(t);
    if (span === undefined) return;
    spans.delete(t);
    span.setAttributes({ 'warren.outcome': t.outcome ?? 'failed', 'warren.action': t.action ?? 'none', ...(t.reason !== undefined ? { 'warren.reason': t.reason } : {}) });
    if (t.outcome !== 'handled') {
      if (t.error instanceof Error) span.recordException(t.error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: t.error instanceof Error ? t.error.message : (t.outcome ?? 'failed') });
    }
    span.end();
  };

  // The handler runs inside `start.runStores()`: bound to the context manager's storage, it runs
  // with the consumer span current. The store's transform runs before the subscribers.
  const storage = contextStorage();
  const bind = (t: ConsumeTrace): Context => trace.setSpan(ROOT_CONTEXT, consumerSpan(t));
  if (storage !== undefined) consume.start.bindStore(storage, bind as (message: unknown) => Context);
  publish.start.subscribe(onPublishStart);
  publish.end.subscribe(onPublishEnd);
  consume.start.subscribe(onConsumeStart);
  consume.end.subscribe(onConsumeEnd);
  return {
    close() {
      publish.start.unsubscribe(onPublishStart);
      publish.end.unsubscribe(onPublishEnd);
      consume.start.unsubscribe(onConsumeStart);
      consume.end.unsubscribe(onConsumeEnd);
      if (storage !== undefined) consume.start.unbindStore(storage);
    },
  };
}
