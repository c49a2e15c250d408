// npm run bench — the same workloads through raw amqplib, warren and the popular clients, in one
// process, in interleaved rounds (A B C …, A B C …), medians reported as ratios to raw amqplib.
// Every scenario checks that exactly the expected messages arrived.
//
//   BENCH_MESSAGES=20000 BENCH_ROUNDS=3 BENCH_CLIENTS=amqplib,warren npm run bench
//   BENCH_SOAK=1000000 npm run bench       (memory: RSS start / peak / end over 1M messages)
//   BENCH_BASELINE=b0162ce npm run bench   (also warren as built from that git revision, as the
//                                           clients warren@b0162ce and warren@b0162ce (no validation);
//                                           several revisions: comma-separated; see bench/baseline.ts)
//   BENCH_OBSERVED=1 npm run bench         (also 'warren (metrics)' and 'warren (tracing)': warren with
//                                           registerMetrics / registerTracing on)
//   BENCH_SUBSCRIBED=1 npm run bench       (also 'warren (subscribed)': warren with no-op subscribers
//                                           on the warren:publish and warren:consume tracing channels)
// BENCH_CLIENTS names rows; a baseline's and the subscribed rows run with the warren row they copy.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import amqplib from 'amqplib';
import { cloudamqp, connectionManager, rabbitmqClient, rascalAdapter, rawAmqplib, warren, warrenMetrics, warrenSubscribed, warrenTracing, type Adapter, type WarrenLib } from './adapters.js';
import { loadBaseline } from './baseline.js';

const url = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const N = Number(process.env['BENCH_MESSAGES'] ?? 20_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const LATENCY_SECONDS = Number(process.env['BENCH_LATENCY_SECONDS'] ?? 3);
const WINDOW = 1000;
const PREFETCH = 100;

// The working tree's warren, then each BENCH_BASELINE build, run through the same adapter.
const builds: { label: string; lib?: WarrenLib }[] = [{ label: 'warren' }];
for (const rev of process.env['BENCH_BASELINE']?.split(',').filter((r) => r !== '') ?? []) {
  const { rev: short, lib } = await loadBaseline(rev);
  builds.push({ label: `warren@${short}`, lib });
}
const warrenRows = (validate: boolean): Record<string, (u: string) => Promise<Adapter>> =>
  Object.fromEntries(builds.map(({ label, lib }) => [validate ? label : `${label} (no validation)`, (u: string) => warren(u, validate, lib, label)]));

const factories: Record<string, (u: string) => Promise<Adapter>> = {
  amqplib: (u) => rawAmqplib(u),
  'amqplib (warren properties)': (u) => rawAmqplib(u, true),
  ...warrenRows(true),
  ...warrenRows(false),
  ...(process.env['BENCH_SUBSCRIBED'] === '1' ? { 'warren (subscribed)': warrenSubscribed } : {}),
  ...(process.env['BENCH_OBSERVED'] === '1' ? { 'warren (metrics)': warrenMetrics, 'warren (tracing)': warrenTracing } : {}),
  'amqp-connection-manager': connectionManager,
  rascal: rascalAdapter,
  'rabbitmq-client': rabbitmqClient,
  '@cloudamqp/amqp-client': cloudamqp,
};
const only = process.env['BENCH_CLIENTS']?.split(',');
/** The row a baseline or subscribed client copies: `warren@b0162ce (no validation)` → `warren (no validation)`. */
const copied = (client: string): string => client.replace(/^warren@\S+/, 'warren').replace(/ \((subscribed|metrics|tracing)\)$/, '');
const clients = Object.keys(factories).filter((c) => only === undefined || only.includes(c) || only.includes(copied(c)));

/** A message of 1 KiB as JSON, the same for every client. */
function payload(i: number): { i: number; sentAt: number; data: string } {
  const base = { i, sentAt: performance.timeOrigin + performance.now(), data: '' };
  const pad = 1024 - Buffer.byteLength(JSON.stringify(base));
  return { ...base, data: 'x'.repeat(Math.max(0, pad)) };
}

function body(i: number): Buffer {
  return Buffer.from(JSON.stringify(payload(i)));
}

interface Sample {
  msgsPerSec: number;
  cpuUsPerMsg: number;
  peakRssMb: number;
  p50Ms?: number;
  p99Ms?: number;
}

type Scenario = 'publish classic' | 'consume classic' | 'publish quorum' | 'consume quorum' | 'latency @1000/s';

async function withQueue<T>(quorum: boolean, fn: (queue: string) => Promise<T>): Promise<T> {
  const queue = `bench.${Math.random().toString(36).slice(2, 10)}`;
  const conn = await amqplib.connect(url);
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: true, arguments: quorum ? { 'x-queue-type': 'quorum' } : {} });
  try {
    return await fn(queue);
  } finally {
    await ch.deleteQueue(queue).catch(() => undefined);
    await conn.close();
  }
}

async function count(queue: string): Promise<number> {
  const conn = await amqplib.connect(url);
  const ch = await conn.createChannel();
  const { messageCount } = await ch.checkQueue(queue);
  await conn.close();
  return messageCount;
}

/** Runs `fn`, measuring wall time, this process's CPU time, and peak RSS (sampled every 20 ms). */
async function measure(messages: number, fn: () => Promise<void>): Promise<Sample> {
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  return { msgsPerSec: (messages / wall) * 1000, cpuUsPerMsg: (cpu.user + cpu.system) / messages, peakRssMb: Math.max(peak, process.memoryUsage.rss()) / 1048576 };
}

async function publishThenConsume(adapter: Adapter, quorum: boolean): Promise<[Sample, Sample]> {
  return withQueue(quorum, async (queue) => {
    const pub = await measure(N, () => adapter.publish(queue, body, N, WINDOW, payload));
    const queued = await count(queue);
    if (queued !== N) throw new Error(`${adapter.name}: published ${N}, the queue holds ${queued}`);
    let received = 0;
    const sub = await measure(N, () => adapter.consume(queue, N, PREFETCH, () => void (received += 1)));
    if (received !== N) throw new Error(`${adapter.name}: consumed ${received} of ${N}`);
    const left = await count(queue);
    if (left !== 0) throw new Error(`${adapter.name}: ${left} messages left unacked in the queue`);
    return [pub, sub];
  });
}

/** End-to-end latency at a fixed rate: publish every 1 ms, measure publish → handler. */
async function latency(adapter: Adapter): Promise<Sample> {
  return withQueue(false, async (queue) => {
    const total = LATENCY_SECONDS * 1000;
    const latencies: number[] = [];
    const consumed = adapter.consume(queue, total, PREFETCH, (b) => {
      const text = b.toString();
      const sentAt = text.startsWith('{') ? (JSON.parse(text) as { sentAt: number }).sentAt : Number(text);
      latencies.push(performance.timeOrigin + performance.now() - sentAt);
    });
    const sample = await measure(total, async () => {
      const start = performance.now();
      const sends: Promise<void>[] = [];
      for (let i = 0; i < total; i += 1) {
        const due = start + i;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        sends.push(adapter.publish(queue, () => body(i), 1, 1, () => payload(i)));
      }
      await Promise.all(sends);
      await consumed;
    });
    if (latencies.length !== total) throw new Error(`${adapter.name}: latency run received ${latencies.length} of ${total}`);
    latencies.sort((a, b) => a - b);
    const pick = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
    return { ...sample, p50Ms: pick(0.5), p99Ms: pick(0.99) };
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
};

async function main(): Promise<void> {
  const results = new Map<string, Map<Scenario, Sample[]>>();
  const record = (client: string, scenario: Scenario, s: Sample): void => {
    const byScenario = results.get(client) ?? new Map<Scenario, Sample[]>();
    results.set(client, byScenario);
    byScenario.set(scenario, [...(byScenario.get(scenario) ?? []), s]);
  };
  console.log(`warren bench: ${N} × 1 KiB persistent messages, window ${WINDOW}, prefetch ${PREFETCH}, ${ROUNDS} rounds, clients: ${clients.join(', ')}`);
  // One untimed pass per client first, so the JIT has warmed every client's code path alike
  // (otherwise whichever runs first in round 1 pays for warming up the shared amqplib code).
  for (const client of clients) {
    const adapter = await factories[client]!(url);
    try {
      await withQueue(false, async (queue) => {
        const n = Math.min(N, 5000);
        await adapter.publish(queue, body, n, WINDOW, payload);
        await adapter.consume(queue, n, PREFETCH);
      });
    } finally {
      await adapter.close();
    }
  }
  process.stdout.write('warm-up done\n');
  for (let round = 1; round <= ROUNDS; round += 1) {
    for (const client of clients) {
      const adapter = await factories[client]!(url);
      try {
        const [pc, cc] = await publishThenConsume(adapter, false);
        record(client, 'publish classic', pc);
        record(client, 'consume classic', cc);
        const [pq, cq] = await publishThenConsume(adapter, true);
        record(client, 'publish quorum', pq);
        record(client, 'consume quorum', cq);
        record(client, 'latency @1000/s', await latency(adapter));
      } finally {
        await adapter.close();
      }
      process.stdout.write(`round ${round}: ${client} done\n`);
    }
  }

  const scenarios: Scenario[] = ['publish classic', 'consume classic', 'publish quorum', 'consume quorum', 'latency @1000/s'];
  const table: Record<string, unknown>[] = [];
  const json: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    messages: N,
    rounds: ROUNDS,
    results: {},
  };
  for (const scenario of scenarios) {
    const base = results.get('amqplib')?.get(scenario);
    const baseRate = base !== undefined ? median(base.map((s) => s.msgsPerSec)) : NaN;
    const baseCpu = base !== undefined ? median(base.map((s) => s.cpuUsPerMsg)) : NaN;
    // Raw amqplib sending the properties warren sends: the same messages, so the broker does the same work.
    const same = results.get('amqplib (warren properties)')?.get(scenario);
    const sameRate = same !== undefined ? median(same.map((s) => s.msgsPerSec)) : NaN;
    const sameCpu = same !== undefined ? median(same.map((s) => s.cpuUsPerMsg)) : NaN;
    for (const client of clients) {
      const samples = results.get(client)?.get(scenario) ?? [];
      const rate = median(samples.map((s) => s.msgsPerSec));
      const cpu = median(samples.map((s) => s.cpuUsPerMsg));
      const row: Record<string, unknown> = {
        scenario,
        client,
        'msg/s': Math.round(rate),
        '× amqplib': scenario.startsWith('latency') ? '' : (rate / baseRate).toFixed(2),
        'CPU µs/msg': cpu.toFixed(1),
        'CPU × amqplib': (cpu / baseCpu).toFixed(2),
        '× same props': scenario.startsWith('latency') || Number.isNaN(sameRate) ? '' : (rate / sameRate).toFixed(2),
        'CPU × same props': Number.isNaN(sameCpu) ? '' : (cpu / sameCpu).toFixed(2),
        'peak RSS MB': Math.round(Math.max(...samples.map((s) => s.peakRssMb))),
      };
      if (scenario.startsWith('latency')) {
        row['p50 ms'] = median(samples.map((s) => s.p50Ms ?? NaN)).toFixed(2);
        row['p99 ms'] = median(samples.map((s) => s.p99Ms ?? NaN)).toFixed(2);
      }
      table.push(row);
      (json['results'] as Record<string, unknown>)[`${scenario} / ${client}`] = { ...row, samples };
    }
  }
  console.table(table);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', JSON.stringify(json, null, 2) + '\n');
  console.log('written: bench/results/latest.json');
}

/**
 * BENCH_SOAK=1000000: warren publishes and consumes that many messages at once (window 1000,
 * prefetch 100) on a classic queue, sampling RSS every second: start, peak and end show whether
 * memory stays flat.
 */
async function soak(total: number): Promise<void> {
  const adapter = await warren(url, true);
  try {
    await withQueue(false, async (queue) => {
      // Warm up first, so the start figure is a running client's, not a cold one's.
      await adapter.publish(queue, body, 5000, WINDOW, payload);
      await adapter.consume(queue, 5000, PREFETCH);
      global.gc?.();
      const start = process.memoryUsage.rss();
      let peak = start;
      const samples: number[] = [];
      let received = 0;
      const timer = setInterval(() => {
        const rss = process.memoryUsage.rss();
        peak = Math.max(peak, rss);
        samples.push(Math.round(rss / 1048576));
      }, 1000);
      const t0 = performance.now();
      const consumed = adapter.consume(queue, total, PREFETCH, () => void (received += 1));
      await adapter.publish(queue, body, total, WINDOW, payload);
      await consumed;
      clearInterval(timer);
      const seconds = (performance.now() - t0) / 1000;
      const end = process.memoryUsage.rss();
      if (received !== total) throw new Error(`soak: consumed ${received} of ${total}`);
      const left = await count(queue);
      if (left !== 0) throw new Error(`soak: ${left} messages left in the queue`);
      const mb = (b: number): number => Math.round(b / 1048576);
      const result = { messages: total, seconds: Math.round(seconds), msgsPerSec: Math.round(total / seconds), rssMb: { start: mb(start), peak: mb(peak), end: mb(end) }, perSecondRssMb: samples };
      console.log(`soak: ${total} messages published and consumed by warren in ${result.seconds} s (${result.msgsPerSec} msg/s each way); RSS start ${result.rssMb.start} MB, peak ${result.rssMb.peak} MB, end ${result.rssMb.end} MB`);
      mkdirSync('bench/results', { recursive: true });
      writeFileSync('bench/results/soak.json', JSON.stringify(result, null, 2) + '\n');
      console.log('written: bench/results/soak.json');
    });
  } finally {
    await adapter.close();
  }
}

const soakMessages = Number(process.env['BENCH_SOAK'] ?? 0);
if (soakMessages > 0) await soak(soakMessages);
else await main();
