// Publish-path profile: N confirmed publishes of the bench's 1 KiB message through one client, for
// `node --cpu-prof`. Compare warren with raw amqplib sending the same properties:
//   node --cpu-prof --cpu-prof-dir=bench/results/prof --import tsx bench/profile-publish.ts warren
//   node --cpu-prof --cpu-prof-dir=bench/results/prof --import tsx bench/profile-publish.ts amqplib
//   (also warren-novalidate)
//   npx tsx bench/profile-summary.ts "$(ls -S bench/results/prof/*.cpuprofile | head -1)"   (self time by
//   function and file; the largest profile is the main thread's, tsx's loader thread writes one too)
// Under the profiler CPU per message is inflated; compare the shares, and measure with npm run bench.
// AMQP_URL picks the broker (RabbitMQ 4.x: amqp://guest:guest@127.0.0.1:5700 with .ci/rabbitmq4 up).
import { PerformanceObserver } from 'node:perf_hooks';
import { rawAmqplib, warren } from './adapters.js';

const url = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const N = Number(process.env['BENCH_MESSAGES'] ?? 100_000);
const which = process.argv[2] ?? 'warren';
const adapter = which === 'amqplib' ? await rawAmqplib(url, true) : await warren(url, which !== 'warren-novalidate');
const payload = (i: number) => {
  const base = { i, sentAt: performance.timeOrigin + performance.now(), data: '' };
  return { ...base, data: 'x'.repeat(1024 - Buffer.byteLength(JSON.stringify(base))) };
};
const body = (i: number) => Buffer.from(JSON.stringify(payload(i)));
const queue = `bench.profile.${which}`;
const { default: amqplib } = await import('amqplib');
const admin = await amqplib.connect(url);
const ach = await admin.createChannel();
await ach.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
await ach.purgeQueue(queue);
await adapter.publish(queue, body, 5000, 1000, payload); // warm-up
let gcMs = 0;
let gcs = 0;
const gc = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcMs += e.duration;
    gcs++;
  }
});
gc.observe({ entryTypes: ['gc'] });
const started = process.hrtime.bigint();
const cpu = process.cpuUsage();
await adapter.publish(queue, body, N, 1000, payload);
const used = process.cpuUsage(cpu);
gc.disconnect();
const ms = Number(process.hrtime.bigint() - started) / 1e6;
console.log(`${which}: ${N} publishes in ${ms.toFixed(0)} ms (${Math.round((N / ms) * 1000)} msg/s), Node CPU ${(((used.user + used.system) / N)).toFixed(1)} µs/msg, GC ${((gcMs * 1000) / N).toFixed(1)} µs/msg in ${gcs} pauses`);
await ach.deleteQueue(queue);
await admin.close();
await adapter.close();
