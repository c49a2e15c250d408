// `warren run` as a subprocess of the built binary, against the broker: graceful stop on SIGTERM,
// a second signal exits at once, and /readyz follows the consume connection.
import { afterEach, describe, expect, it } from 'vitest';
import { brokerUrls, cleanupTracked, queueCounts, waitFor } from '../helpers/broker.js';
import { cliEnv, cliName, fixtureApp, fixtureNames, killStragglers, startWarren, warren, type CliProcess } from '../helpers/cli.js';
import { freePort } from '../helpers/net.js';
import { closeProxies, releaseProxies, testProxy } from '../helpers/tcp-proxy.js';

afterEach(async () => {
  killStragglers();
  releaseProxies();
  await closeProxies();
  await cleanupTracked();
});


const logged = (proc: CliProcess, msg: string): Record<string, unknown>[] => proc.records().filter((r) => r['msg'] === msg);

async function publishJobs(name: string, data: object, count: number): Promise<void> {
  const r = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', JSON.stringify(data), '--count', String(count)], cliEnv(name));
  expect(r, r.stderr).toMatchObject({ code: 0 });
}


async function probe(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('warren run', () => {
  it('SIGTERM: the handlers running finish, their messages are acked, exit 0', async () => {
    expect.hasAssertions();
    const name = fixtureNames('drain');
    const proc = startWarren(['run', fixtureApp], cliEnv(name));
    await proc.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('running'));
    await publishJobs(name, { id: 'slow', sleepMs: 1500 }, 5);
    await waitFor(() => logged(proc, 'job started').length === 5, 'five jobs started');
    expect(logged(proc, 'job done')).toHaveLength(0);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(logged(proc, 'job done')).toHaveLength(5);
    // Acked, not sent back: nothing left for the next consumer.
    expect((await queueCounts(`${name}.work`)).messages).toBe(0);
  });

  it('a second signal exits at once with 143; the unfinished messages go back to the queue', async () => {
    expect.hasAssertions();
    const name = fixtureNames('twice');
    const proc = startWarren(['run', fixtureApp], cliEnv(name));
    await proc.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('running'));
    await publishJobs(name, { id: 'stuck', sleepMs: 25_000 }, 3);
    await waitFor(() => logged(proc, 'job started').length === 3, 'three jobs started');

    proc.child.kill('SIGTERM');
    await proc.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('stopping'));
    const t0 = Date.now();
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(143);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(logged(proc, 'job done')).toHaveLength(0);
    await waitFor(async () => (await queueCounts(`${name}.work`)).messages === 3, 'the three messages back in the queue');
  });

  it('/readyz answers 503 with the reason while the connections are down, 200 once they are back; /healthz stays 200', async () => {
    expect.hasAssertions();
    const name = fixtureNames('ready');
    const proxy = await testProxy(brokerUrls().amqpUrl);
    const port = await freePort();
    const proc = startWarren(['run', fixtureApp, '--url', proxy.url, '--metrics-port', String(port)], cliEnv(name));
    await proc.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('running'));
    expect(await probe(port, '/readyz')).toEqual({ status: 200, body: { ready: true, reasons: [] } });

    proxy.refusing = true;
    proxy.cut();
    const down = await waitFor(async () => {
      const r = await probe(port, '/readyz');
      return r.status === 503 ? r : undefined;
    }, '/readyz to answer 503');
    expect(down.body['reasons']).toEqual(expect.arrayContaining([expect.stringMatching(/^consume connection (reconnecting|connecting|closed)/)]));
    expect((await probe(port, '/healthz')).status).toBe(200);

    proxy.refusing = false;
    await waitFor(async () => (await probe(port, '/readyz')).status === 200, '/readyz to answer 200 again', { timeoutMs: 15_000 });
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  });

  it('a second Ctrl-C (SIGINT) exits at once with 130', async () => {
    expect.hasAssertions();
    const name = fixtureNames('sigint');
    const proc = startWarren(['run', fixtureApp], cliEnv(name));
    await proc.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('running'));
    await publishJobs(name, { id: 'stuck', sleepMs: 25_000 }, 1);
    await waitFor(() => logged(proc, 'job started').length === 1, 'the job started');
    proc.child.kill('SIGINT');
    await proc.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('stopping'));
    proc.child.kill('SIGINT');
    expect(await proc.exited).toBe(130);
  });

  it('no command, or a command group without its subcommand: help on stderr, exit 2', async () => {
    expect.hasAssertions();
    for (const args of [[], ['topology'], ['dlq']]) {
      const r = await warren(args, cliEnv(cliName('help')));
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('Usage: warren');
    }
    expect((await warren(['--help'], cliEnv(cliName('help')))).code).toBe(0);
  });

  it('exits 2 and names the consumers when --only names one the app does not have', async () => {
    expect.hasAssertions();
    const r = await warren(['run', fixtureApp, '--only', 'nobody'], cliEnv(cliName('only')));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no consumer named 'nobody'");
    expect(r.stderr).toContain('it has: worker');
  });

  it('exits 2 when the app module is missing or exports no app', async () => {
    expect.hasAssertions();
    const missing = await warren(['run', 'no-such-app.ts'], cliEnv(cliName('missing')));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no app module at');
    const notAnApp = await warren(['run', 'vitest.config.ts'], cliEnv(cliName('notapp')));
    expect(notAnApp.code).toBe(2);
    expect(notAnApp.stderr).toContain('does not export an app');
  });
});
