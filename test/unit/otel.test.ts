import diagnostics from 'node:diagnostics_channel';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { WarrenChannel, type PublishTrace } from '../../src/index.js';
import { registerTracing, type WarrenTracing } from '../../src/otel/index.js';

const publish = diagnostics.tracingChannel(WarrenChannel.publish);
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
let tracing: WarrenTracing | undefined;

afterEach(() => {
  tracing?.close();
  tracing = undefined;
  exporter.reset();
});

const trace = (): PublishTrace => ({ client: 'billing', contract: 'order.placed', exchange: '', routingKey: 'billing.orders', messageId: 'm-1', headers: {} });

describe('registerTracing', () => {
  it('a publish that fails ends its PRODUCER span with error status, the exception and error.type; the headers carry its context', () => {
    tracing = registerTracing({ tracerProvider });
    const t = trace();
    publish.start.publish(t);
    expect(t.headers['traceparent']).toBeUndefined(); // no global propagator registered: nothing to inject
    t.outcome = 'returned';
    t.error = Object.assign(new Error('no queue is bound for it'), { code: 'UNROUTABLE' });
    publish.end.publish(t);
    const [span] = exporter.getFinishedSpans();
    expect(span?.kind).toBe(SpanKind.PRODUCER);
    expect(span?.name).toBe('publish amq.default');
    expect(span?.attributes).toMatchObject({ 'messaging.destination.name': 'billing.orders', 'error.type': 'UNROUTABLE', 'warren.outcome': 'returned' });
    expect(span?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'no queue is bound for it' });
    expect(span?.events.map((e) => e.name)).toEqual(['exception']);
  });

  it('close() ends the spans still open (outcome unknown) and stops; closing twice is harmless', () => {
    tracing = registerTracing({ tracerProvider });
    publish.start.publish(trace());
    tracing.close();
    tracing.close();
    expect(exporter.getFinishedSpans().map((s) => s.attributes['warren.outcome'])).toEqual(['unknown']);
    publish.start.publish(trace());
    expect(exporter.getFinishedSpans()).toHaveLength(1);
  });

  it('refuses a second registration while one is on (two spans per message otherwise), and allows one after close()', () => {
    tracing = registerTracing({ tracerProvider });
    expect(() => registerTracing({ tracerProvider })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    tracing.close();
    tracing = registerTracing({ tracerProvider });
    expect(tracing).toBeDefined();
  });
});
