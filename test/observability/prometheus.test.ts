// A real Prometheus (Debian's `prometheus`, started here on its own port) scrapes `warren run
// --metrics-port` (the consumer) and this test process (the publisher, with registerMetrics); a
// known mix of messages is sent, and every counter Prometheus stores equals what was sent.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerMetrics, type WarrenMetrics } from '../../src/metrics/index.js';
import type { Warren } from '../../src/index.js';
import { cleanupTracked, queueCounts, sendRaw, waitFor } from '../helpers/broker.js';
import { cliEnv, fixtureNames, killStragglers, startWarren } from '../helpers/cli.js';
import { dashboardQueries } from '../helpers/dashboard.js';
import { freePort } from '../helpers/net.js';
import { closeClients, openClient } from '../helpers/warren.js';

const name = fixtureNames('metrics');
process.env['CLI_TEST_NAME'] = name;
const { default: app, Job } = await import('../fixtures/metrics-app.js');
const fixture = new URL('../fixtures/metrics-app.ts', import.meta.url).pathname;

let prometheus: ChildProcess | undefined;
let promPort = 0;
let publisherServer: Server | undefined;
let metrics: WarrenMetrics | undefined;
const dir = mkdtempSync(join(tmpdir(), 'warren-prometheus-'));

/** Prometheus's value for a PromQL query (a sum, so one number), or undefined before it has one. */
async function query(promql: string): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
  const v = body.data?.result?.[0]?.value[1];
  return v !== undefined ? Number(v) : undefined;
}

beforeAll(async () => {
  const probe = spawn('prometheus', ['--version']);
  const found = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.once('close', (code) => resolve(code === 0));
  });
  if (!found) throw new Error('This test runs a real Prometheus: install it (Debian: apt-get install prometheus) so that `prometheus` is on the PATH.');
});

afterAll(async () => {
  prometheus?.kill('SIGKILL');
  killStragglers();
  metrics?.close();
  publisherServer?.close();
  await closeClients();
  await cleanupTracked();
  rmSync(dir, { recursive: true, force: true });
});

describe('Prometheus scraping warren', () => {
  it('stores counters equal to the mix sent: handled, retried, dead-lettered, invalid, unroutable, refused', { timeout: 90_000 }, async () => {
    expect.hasAssertions();
    // The consumer: warren run, its metrics on a port of its own.
    const consumerPort = await freePort();
    const run = startWarren(['run', fixture, '--metrics-port', String(consumerPort), '--metrics-host', '127.0.0.1'], cliEnv(name));
    await run.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('running'));

    // The publisher: this process, with warren's metrics on a registry served over HTTP.
    const registry = new Registry();
    metrics = registerMetrics(registry);
    const warren: Warren = await openClient({ name: `${name}-producer`, topology: app.topology });
    metrics.track(warren);
    const publisherPort = await freePort();
    publisherServer = createServer((_req, res) => {
      void registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(body);
      });
    }).listen(publisherPort, '127.0.0.1');

    // Prometheus, scraping both every second.
    promPort = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: warren\n    static_configs:\n      - targets: ['127.0.0.1:${consumerPort}', '127.0.0.1:${publisherPort}']\n`,
    );
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`)).ok, 'Prometheus ready', { timeoutMs: 30_000, intervalMs: 200 });

    // The mix: 5 handled at once, 3 handled on their second attempt, 2 refused by the handler, 2
    // not matching the schema (sent raw), 1 unroutable, 1 refused before sending.
    const send = (id: string, kind: 'ok' | 'flaky' | 'fatal', routingKey?: string): Promise<unknown> =>
      warren.publish(Job, { id, kind }, routingKey !== undefined ? { routingKey } : {});
    await Promise.all([...[1, 2, 3, 4, 5].map((i) => send(`ok-${i}`, 'ok')), ...[1, 2, 3].map((i) => send(`flaky-${i}`, 'flaky')), ...[1, 2].map((i) => send(`fatal-${i}`, 'fatal'))]);
    await expect(send('lost', 'ok', 'nowhere')).rejects.toMatchObject({ code: 'UNROUTABLE' });
    await expect(warren.publish(Job, { id: '', kind: 'ok' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await sendRaw(`${name}.work`, { body: '{"id": "x", "kind": "other"}', messageId: 'bad-1' }, { body: 'not json', messageId: 'bad-2' });
    await waitFor(async () => (await queueCounts(`${name}.work.dlq`)).messages === 4, 'four dead letters');

    const expected: Record<string, number> = {
      [`sum(warren_published_total{message="job.created"})`]: 11,
      [`sum(warren_publish_settled_total{outcome="confirmed"})`]: 10,
      [`sum(warren_publish_settled_total{outcome="returned",code="UNROUTABLE"})`]: 1,
      [`sum(warren_publish_refused_total{code="VALIDATION_FAILED"})`]: 1,
      [`sum(warren_publish_duration_seconds_count)`]: 11,
      [`sum(warren_delivered_total{consumer="worker"})`]: 15,
      [`sum(warren_consumed_total{action="ack"})`]: 8,
      [`sum(warren_consumed_total{action="retry"})`]: 3,
      [`sum(warren_consumed_total{action="dead-letter",reason="non-retryable"})`]: 2,
      [`sum(warren_consumed_total{action="dead-letter",reason="invalid"})`]: 2,
      [`sum(warren_consumed_total{action=~"requeue|reject"})`]: 0,
      [`sum(warren_consume_duration_seconds_count{consumer="worker"})`]: 15,
      [`sum(warren_consume_duration_seconds_count{consumer="worker",outcome="invalid"})`]: 2,
      [`sum(warren_consumer_attached{consumer="worker"})`]: 1,
      [`sum(warren_connection_state{state="open"})`]: 3,
    };
    const seen = await waitFor(
      async () => {
        const values = Object.fromEntries(await Promise.all(Object.keys(expected).map(async (q) => [q, await query(q)] as const)));
        return Object.entries(expected).every(([q, v]) => values[q] === v) ? values : undefined;
      },
      'Prometheus to store every counter',
      { timeoutMs: 30_000, intervalMs: 500 },
    ).catch(async (err: unknown) => {
      const values = Object.fromEntries(await Promise.all(Object.keys(expected).map(async (q) => [q, await query(q)] as const)));
      throw new Error(`${String(err)}; Prometheus has ${JSON.stringify(values, null, 1)}`);
    });
    expect(seen).toEqual(expected);
    // Every query of the Grafana dashboard is valid PromQL over these metrics; those about what
    // just happened have data.
    const ask = (): Promise<{ panel: string; expr: string; status: string; error: string | undefined; series: number }[]> =>
      Promise.all(
        dashboardQueries().map(async ({ panel, expr }) => {
          const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
          const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
          return { panel, expr, status: body.status, error: body.error, series: body.data?.result.length ?? 0 };
        }),
      );
    const charted = ['Published / s (accepted)', 'Delivered / s', 'Outcomes / s by broker action', 'Dead letters (last 5 m) by reason', 'Consume latency (delivery to broker action)'];
    // A rate needs two scrapes of a series: wait for them.
    const answers = await waitFor(
      async () => {
        const a = await ask();
        return charted.every((title) => a.some((x) => x.panel === title && x.series > 0)) ? a : undefined;
      },
      'the dashboard panels to have data',
      { timeoutMs: 15_000, intervalMs: 500 },
    );
    expect(answers.filter((a) => a.status !== 'success')).toEqual([]);
    // The same counts as the publisher's health(): metrics and health() come from the same events.
    expect(warren.health().publisher).toMatchObject({ published: 11, confirmed: 10, returned: 1 });

    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  });
});
