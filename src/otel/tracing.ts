import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import { context, diag, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type TracerProvider } from '@opentelemetry/api';
import { ChannelName, type ConsumeTrace, type PublishTrace } from '../instrument/channels.js';
import { ConfigError, errorCode } from '../support/errors.js';
import { VERSION } from '../support/version.js';

/**
 * OpenTelemetry spans for warren's messages, from its diagnostics channels: a PRODUCER span per
 * publish (ended at the confirm; error status when it failed) whose W3C trace context goes into
 * the message's headers, and a CONSUMER span per delivery, a child of the producer's context it
 * carries (ended once the broker action is taken, with the outcome). Retry and dead-letter copies
 * keep the headers, so every attempt of a message is in its trace.
 */
export interface WarrenTracing {
  /** Stops making spans, and ends those still open (`warren.outcome` 'unknown'). Idempotent. */
  close(): void;
}

export interface TracingOptions {
  /** Default: the global tracer provider (what the OpenTelemetry SDK registers). */
  tracerProvider?: TracerProvider;
}

const INSTRUMENTATION = 'warren';

/**
 * `messaging.destination.name` as OpenTelemetry's RabbitMQ conventions build it: the non-empty
 * parts of `{exchange}:{routing key}` (a consumer adds `:{queue}`), or `amq.default` when there
 * are none.
 */
function destination(...parts: string[]): string {
  const named = parts.filter((p) => p !== '');
  return named.length > 0 ? named.join(':') : 'amq.default';
}

/** `error.type`: the WarrenError's code, else `_OTHER`. */
function errorType(err: unknown): string {
  return errorCode(err) ?? '_OTHER';
}

/** Only one registration at a time: two would make two spans per message and fight over the handler's context. */
let active = false;

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
  if (active) throw new ConfigError('registerTracing()', ['it is already registered: close() the one you have before registering again']);
  active = true;
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION, VERSION);
  const spans = new WeakMap<object, Span>();
  /** Spans started and not ended: close() ends them, so none is lost unexported. */
  const open = new Set<Span>();
  const publish = diagnostics.tracingChannel(ChannelName.publish);
  const consume = diagnostics.tracingChannel(ChannelName.consume);

  const onPublishStart = (message: unknown): void => {
    const t = message as PublishTrace;
    const span = tracer.startSpan(
      // Named by the exchange alone: a routing key may carry ids, and a span name must stay low in cardinality.
      `publish ${destination(t.exchange)}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'rabbitmq',
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'publish',
          'messaging.destination.name': destination(t.exchange, t.routingKey),
          'messaging.rabbitmq.destination.routing_key': t.routingKey,
          'messaging.message.id': t.messageId,
          'warren.client': t.client,
          'warren.message': t.contract,
        },
      },
      context.active(),
    );
    spans.set(t, span);
    open.add(span);
    // The headers object is what is sent: the consumer continues this trace from it.
    propagation.inject(trace.setSpan(context.active(), span), t.headers);
  };
  const onPublishEnd = (message: unknown): void => {
    const t = message as PublishTrace;
    const span = spans.get(t);
    if (span === undefined) return;
    spans.delete(t);
    open.delete(span);
    span.setAttribute('warren.outcome', t.outcome ?? 'failed');
    if (t.outcome !== 'confirmed') {
      if (t.error !== undefined) span.recordException(t.error);
      span.setAttribute('error.type', errorType(t.error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: t.error?.message ?? t.outcome ?? 'failed' });
    }
    span.end();
  };

  /** The consumer span of a delivery, and the context it runs in: a child of the one its headers carry (baggage included). */
  const contexts = new WeakMap<object, Context>();
  const consumerSpan = (t: ConsumeTrace): Context => {
    const existing = contexts.get(t);
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
          'messaging.destination.name': destination(t.exchange, t.routingKey, t.queue),
          'messaging.rabbitmq.destination.routing_key': t.routingKey,
          'warren.queue': t.queue,
          'warren.consumer': t.consumer,
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
    open.add(span);
    const ctx = trace.setSpan(parent, span);
    contexts.set(t, ctx);
    return ctx;
  };
  const onConsumeStart = (message: unknown): void => void consumerSpan(message as ConsumeTrace);
  const onConsumeEnd = (message: unknown): void => {
    const t = message as ConsumeTrace;
    const span = spans.get(t);
    if (span === undefined) return;
    spans.delete(t);
    open.delete(span);
    span.setAttributes({ 'warren.outcome': t.outcome ?? 'failed', 'warren.action': t.action ?? 'none', ...(t.reason !== undefined ? { 'warren.reason': t.reason } : {}) });
    if (t.outcome !== 'handled') {
      if (t.error instanceof Error) span.recordException(t.error);
      span.setAttribute('error.type', errorType(t.error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: t.error instanceof Error ? t.error.message : (t.outcome ?? 'failed') });
    }
    span.end();
  };

  // The handler runs inside `start.runStores()`: bound to the context manager's storage, it runs
  // with the consumer span current. The store's transform runs before the subscribers.
  const storage = contextStorage();
  if (storage !== undefined) consume.start.bindStore(storage, consumerSpan as (message: unknown) => Context);
  else {
    // Said loudly (a process warning, on stderr by default) and to OpenTelemetry's diag: with no
    // diag logger set, diag alone would say nothing.
    const text = 'warren: registerTracing() found no AsyncLocalStorage context manager: register the OpenTelemetry SDK (its async-hooks context manager) first; consumer spans are made, but spans a handler starts will not be their children';
    diag.warn(text);
    process.emitWarning(text, { code: 'WARREN_OTEL_NO_CONTEXT_MANAGER' });
  }
  publish.start.subscribe(onPublishStart);
  publish.end.subscribe(onPublishEnd);
  consume.start.subscribe(onConsumeStart);
  consume.end.subscribe(onConsumeEnd);
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      active = false;
      publish.start.unsubscribe(onPublishStart);
      publish.end.unsubscribe(onPublishEnd);
      consume.start.unsubscribe(onConsumeStart);
      consume.end.unsubscribe(onConsumeEnd);
      if (storage !== undefined) consume.start.unbindStore(storage);
      // What is still in flight ends now, marked so, rather than never being exported.
      for (const span of open) {
        span.setAttribute('warren.outcome', 'unknown');
        span.end();
      }
      open.clear();
    },
  };
}
