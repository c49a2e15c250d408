// OpenTelemetry across processes: this process publishes (its SDK, warren's tracing), a child
// process consumes (its own SDK and tracing); every message is one trace, the consumer spans are
// children of the producer span its headers carried, and a retry stays in the trace.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { setupTracing, record, type SpanRecord } from './otel-setup.js';
import { cleanupTracked, waitFor } from '../helpers/broker.js';
import { cliEnv, fixtureNames } from '../helpers/cli.js';
import { closeClients, openClient } from '../helpers/warren.js';

const name = fixtureNames('otel');
process.env['CLI_TEST_NAME'] = name;
const exporter = setupTracing();
const { registerTracing } = await import('../../src/otel/index.js');
const { Job, topology } = await import('../fixtures/metrics-app.js');
const tracing = registerTracing();
const root = fileURLToPath(new URL('../..', import.meta.url));

afterAll(async () => {
  tracing.close();
  await closeClients();
  await cleanupTracked();
});

describe('OpenTelemetry tracing', () => {
  it('one trace per message: the producer span, its consumer spans as children (a retry too), the handler’s own span inside', { timeout: 60_000 }, async () => {
    expect.hasAssertions();
    // Deliveries the consumer settles: ok 1, flaky 2 (a retry), fatal 1 (dead-lettered).
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/observability/otel-consumer.ts'], { cwd: root, env: { ...cliEnv(name), EXPECTED: '4' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    await waitFor(() => out.includes('"ready":true') || (child.exitCode !== null && Promise.reject(new Error(`consumer exited: ${err}`))), 'the consumer to attach', { timeoutMs: 30_000 });

    const warren = await openClient({ name: `${name}-producer`, topology });
    const receipts = await Promise.all([warren.publish(Job, { id: 'ok', kind: 'ok' }), warren.publish(Job, { id: 'flaky', kind: 'flaky' }), warren.publish(Job, { id: 'fatal', kind: 'fatal' })]);
    expect(await exited, err).toBe(0);
    const line = out.split('\n').find((l) => l.startsWith('{"spans"'));
    const consumerSpans = (JSON.parse(line ?? '{"spans":[]}') as { spans: SpanRecord[] }).spans;
    const producerSpans = exporter.getFinishedSpans().map(record).filter((s) => s.kind === Number(SpanKind.PRODUCER));

    for (const [receipt, kind] of [[receipts[0], 'ok'], [receipts[1], 'flaky'], [receipts[2], 'fatal']] as const) {
      const producer = producerSpans.find((s) => s.attributes['messaging.message.id'] === receipt?.messageId);
      expect(producer, kind).toMatchObject({
        name: `publish ${name}.ex`,
        status: SpanStatusCode.UNSET,
        attributes: { 'messaging.system': 'rabbitmq', 'messaging.operation.name': 'publish', 'messaging.destination.name': `${name}.ex:job`, 'messaging.rabbitmq.destination.routing_key': 'job', 'warren.message': 'job.created', 'warren.outcome': 'confirmed' },
      });
      const consumed = consumerSpans.filter((s) => s.kind === Number(SpanKind.CONSUMER) && s.traceId === producer?.traceId).sort((a, b) => Number(a.attributes['warren.attempt']) - Number(b.attributes['warren.attempt']));
      // Every consumer span of the message is a child of its producer span, in its trace.
      expect(consumed.length, kind).toBe(kind === 'flaky' ? 2 : 1);
      for (const c of consumed) {
        expect(c).toMatchObject({
          name: `process ${name}.work`,
          parentSpanId: producer?.spanId,
          attributes: { 'messaging.system': 'rabbitmq', 'warren.queue': `${name}.work`, 'warren.consumer': 'worker' },
        });
        // The first delivery came through the exchange; a retry comes back from its wait queue through the default exchange.
        expect(c.attributes['messaging.destination.name']).toBe(c.attributes['warren.attempt'] === 1 ? `${name}.ex:job:${name}.work` : `${name}.work:${name}.work`);
        // The handler's own span runs inside the consumer span.
        expect(consumerSpans.filter((s) => s.parentSpanId === c.spanId).map((s) => s.name)).toEqual([`handle ${kind}`]);
      }
      const outcomes = consumed.map((c) => [c.attributes['warren.attempt'], c.attributes['warren.action'], c.status]);
      if (kind === 'ok') expect(outcomes).toEqual([[1, 'ack', SpanStatusCode.UNSET]]);
      if (kind === 'flaky') {
        expect(outcomes).toEqual([[1, 'retry', SpanStatusCode.ERROR], [2, 'ack', SpanStatusCode.UNSET]]);
        expect(consumed[0]?.attributes['error.type']).toBe('_OTHER');
      }
      if (kind === 'fatal') {
        expect(outcomes).toEqual([[1, 'dead-letter', SpanStatusCode.ERROR]]);
        expect(consumed[0]?.attributes).toMatchObject({ 'warren.reason': 'non-retryable', 'error.type': 'NON_RETRYABLE' });
      }
    }
  });
});
