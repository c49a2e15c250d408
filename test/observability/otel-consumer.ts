// The consumer process of the tracing test: its own OpenTelemetry SDK, warren's tracing, and a
// consumer whose handler starts a span of its own. Once it has settled EXPECTED deliveries it
// prints its spans as one JSON line and exits.
import diagnostics from 'node:diagnostics_channel';
import { trace } from '@opentelemetry/api';
import { setupTracing, record } from './otel-setup.js';

const exporter = setupTracing();
const { registerTracing } = await import('../../src/otel/index.js');
const { connect, defineConsumer, NonRetryableError, WarrenChannel } = await import('../../src/index.js');
const { Job, topology } = await import('../fixtures/metrics-app.js');
registerTracing();

const expected = Number(process.env['EXPECTED'] ?? '0');
let settled = 0;
const done = new Promise<void>((resolve) => {
  diagnostics.tracingChannel(WarrenChannel.consume).end.subscribe(() => {
    settled += 1;
    if (settled === expected) setImmediate(resolve);
  });
});

const warren = await connect({ urls: [process.env['AMQP_URL'] ?? ''], name: 'traced-consumer', topology });
await warren.consume(
  defineConsumer({
    name: 'worker',
    queue: topology.queues.find((q) => q.deadLetterOf === undefined)?.name ?? '',
    message: Job,
    retry: { maxAttempts: 3, delays: ['100ms'] },
    handle(job, ctx) {
      // A span of the handler's own: a child of warren's consumer span, as it runs in its context.
      trace.getTracer('handler').startActiveSpan(`handle ${job.kind}`, (span) => span.end());
      if (job.kind === 'fatal') throw new NonRetryableError(`job ${job.id} cannot be done`);
      if (job.kind === 'flaky' && ctx.attempt === 1) throw new Error(`job ${job.id} failed once`);
    },
  }),
);
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
await done;
await warren.close();
process.stdout.write(JSON.stringify({ spans: exporter.getFinishedSpans().map(record) }) + '\n');
