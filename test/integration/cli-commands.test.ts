// `warren publish`, `topology`, `inspect`, `dlq` and `docs` as subprocesses of the built binary, against the broker.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { brokerUrls, cleanupTracked, management, queueCounts, sendRaw, waitFor, withRawChannel } from '../helpers/broker.js';
import { cliEnv, cliName, fixtureApp, fixtureNames, killStragglers, root, startWarren, warren } from '../helpers/cli.js';

afterEach(async () => {
  killStragglers();
  await cleanupTracked();
});


const job = (id: string, extra: object = {}): string => JSON.stringify({ id, ...extra });

describe('warren publish', () => {
  it('an invalid payload: exit 1, the zod issues in the message, nothing published', async () => {
    expect.hasAssertions();
    const name = fixtureNames('invalid');
    const r = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', '{"id": 42}'], cliEnv(name));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[VALIDATION_FAILED]');
    expect(r.stderr).toContain('id: Invalid input: expected string, received number');
    expect(r.stderr).toContain('nothing was published');
    expect(await management.queue(`${name}.work`)).toBeUndefined();
  });

  it('--count 1000: every one confirmed, and the queue holds 1000', async () => {
    expect.hasAssertions();
    const name = fixtureNames('count');
    const r = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', job('bulk'), '--count', '1000', '--json'], cliEnv(name));
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(r.stdout)).toMatchObject({ message: 'job.created', count: 1000, confirmed: 1000, failed: 0, failures: {} });
    expect((await queueCounts(`${name}.work`)).messages).toBe(1000);
  });

  it('--data - reads the payload from stdin; the text report names the counts', async () => {
    expect.hasAssertions();
    const name = fixtureNames('stdin');
    const r = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', '-'], cliEnv(name), { input: job('from-stdin') });
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(r.stdout).toMatch(/^published 1 × job\.created to exchange '.+\.ex' \(routing key 'job'\): 1 confirmed, 0 failed in /);
    expect((await queueCounts(`${name}.work`)).messages).toBe(1);
  });

  it('a message the app does not have: exit 2 with the names it has', async () => {
    expect.hasAssertions();
    const r = await warren(['publish', 'job.deleted', '--app', fixtureApp, '--data', '{}'], cliEnv(cliName('unknown')));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("has no message 'job.deleted' (it has: job.created)");
  });
});

describe('warren topology', () => {
  it('diff exits 3 and names the arguments that differ; apply refuses to change them (exit 1)', async () => {
    expect.hasAssertions();
    const name = fixtureNames('drift');
    // Someone declared the queue by hand, with other arguments.
    await withRawChannel((ch) => ch.assertQueue(`${name}.work`, { durable: true, arguments: { 'x-max-length': 10 } }));
    const diff = await warren(['topology', 'diff', fixtureApp, '--json'], cliEnv(name));
    expect(diff.code).toBe(3);
    const drift = JSON.parse(diff.stdout);
    expect(drift.inSync).toBe(false);
    expect(drift.different).toEqual([
      {
        kind: 'queue',
        name: `${name}.work`,
        differences: expect.arrayContaining([
          { argument: 'x-max-length', declared: undefined, actual: 10 },
          { argument: 'x-dead-letter-routing-key', declared: `${name}.work.dlq`, actual: undefined },
        ]),
      },
    ]);
    expect(drift.missing).toEqual(expect.arrayContaining([{ kind: 'exchange', name: `${name}.ex` }]));

    const apply = await warren(['topology', 'apply', fixtureApp], cliEnv(name));
    expect(apply.code).toBe(1);
    expect(apply.stderr).toContain('[TOPOLOGY_MISMATCH]');
    expect(apply.stderr).toContain('x-max-length');
    // Nothing was changed: the queue still has the hand-made arguments.
    const args = (await management.queue(`${name}.work`))?.arguments;
    expect(args).toMatchObject({ 'x-max-length': 10 });
    expect(args).not.toHaveProperty('x-dead-letter-exchange');
  });

  it('on a clean vhost: diff exits 3 (all missing), apply declares it, then diff exits 0; an owned leftover is extra', async () => {
    expect.hasAssertions();
    const vhost = `warren-cli-${randomBytes(4).toString('hex')}`;
    const put = await management.request('PUT', `/api/vhosts/${vhost}`);
    expect(put.ok).toBe(true);
    try {
      await management.request('PUT', `/api/permissions/${vhost}/${new URL(brokerUrls().amqpUrl).username || 'guest'}`, { configure: '.*', write: '.*', read: '.*' });
      const name = cliName('vhost');
      const url = new URL(brokerUrls().amqpUrl);
      url.pathname = `/${vhost}`;
      const env = cliEnv(name, { AMQP_URL: url.toString() });

      const before = await warren(['topology', 'diff', fixtureApp], env);
      expect(before.code).toBe(3);
      expect(before.stdout).toContain(`drift on vhost '${vhost}': 4 missing, 0 different, 0 extra`);

      const apply = await warren(['topology', 'apply', fixtureApp], env);
      expect(apply, apply.stderr).toMatchObject({ code: 0 });
      expect(apply.stdout).toContain(`declared on vhost '${vhost}': 1 exchange, 2 queues, 1 binding`);

      const after = await warren(['topology', 'diff', fixtureApp], env);
      expect(after, after.stdout + after.stderr).toMatchObject({ code: 0 });
      expect(after.stdout).toContain('in sync');

      // A wait queue of a retry tier the app no longer has: under the app's queue name, so the app owns it.
      await management.request('PUT', `/api/queues/${vhost}/${name}.work.retry.5s`, { durable: true, arguments: { 'x-queue-type': 'classic' } });
      const leftover = await warren(['topology', 'diff', fixtureApp, '--json'], env);
      expect(leftover.code).toBe(3);
      expect(JSON.parse(leftover.stdout)).toMatchObject({ missing: [], different: [], extra: [{ kind: 'queue', name: `${name}.work.retry.5s` }] });
    } finally {
      await management.request('DELETE', `/api/vhosts/${vhost}`);
    }
  });

  it('plan lists every declaration with its arguments, without a broker', async () => {
    expect.hasAssertions();
    const name = cliName('plan');
    const r = await warren(['topology', 'plan', fixtureApp, '--json'], cliEnv(name, { AMQP_URL: 'amqp://nobody:secret@127.0.0.1:1' }));
    expect(r, r.stderr).toMatchObject({ code: 0 });
    const plan = JSON.parse(r.stdout);
    expect(plan.entities.map((e: { kind: string; name: string }) => `${e.kind} ${e.name}`)).toEqual([
      `exchange ${name}.ex`,
      `queue ${name}.work.dlq`,
      `queue ${name}.work`,
      `binding ${name}.ex → ${name}.work (job)`,
    ]);
    expect(plan.entities[2].declared.arguments).toEqual({ 'x-queue-type': 'classic', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': `${name}.work.dlq` });
  });
});

describe('warren inspect', () => {
  it('--json lists the queue with its depth and its dead-letter queue beside it', async () => {
    expect.hasAssertions();
    const name = fixtureNames('inspect');
    const pub = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', job('seen'), '--count', '7'], cliEnv(name));
    expect(pub, pub.stderr).toMatchObject({ code: 0 });
    // The management API's figures lag the queue by up to one statistics interval (5 s).
    const queue = await waitFor(
      async () => {
        const r = await warren(['inspect', name, '--json'], cliEnv(name));
        expect(r, r.stderr).toMatchObject({ code: 0 });
        const q = JSON.parse(r.stdout).queues.find((x: { name: string }) => x.name === `${name}.work`);
        return q?.ready === 7 ? q : undefined;
      },
      'inspect to show 7 ready',
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(queue).toMatchObject({ type: 'classic', messages: 7, ready: 7, unacked: 0, consumers: 0, deadLetters: { queue: `${name}.work.dlq`, messages: 0 } });
    const r = await warren(['inspect', name, '--json'], cliEnv(name));
    expect(JSON.parse(r.stdout).queues.map((q: { name: string }) => q.name)).toEqual([`${name}.work`]);
  });
});

describe('warren dlq', () => {
  it('peek, replay and purge move exactly the dead letters chosen by --reason, --code and --limit', async () => {
    expect.hasAssertions();
    const name = fixtureNames('dlq');
    const dlq = `${name}.work.dlq`;
    const env = cliEnv(name);
    const run = startWarren(['run', fixtureApp], env);
    await run.waitForLog((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('running'));
    // Three the handler refuses (NonRetryableError: reason non-retryable, code NON_RETRYABLE), two that do not match the schema (invalid).
    const pub = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', job('refused', { fail: true }), '--count', '3'], env);
    expect(pub, pub.stderr).toMatchObject({ code: 0 });
    await sendRaw(`${name}.work`, { body: '{"id": ""}', messageId: 'bad-1' }, { body: '{"nope": true}', messageId: 'bad-2' });
    await waitFor(async () => (await queueCounts(dlq)).messages === 5, 'five dead letters');
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);

    const all = await warren(['dlq', 'peek', `${name}.work`, '--json'], env);
    expect(all, all.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(all.stdout)).toHaveLength(5);
    const invalid = JSON.parse((await warren(['dlq', 'peek', `${name}.work`, '--reason', 'invalid', '--json'], env)).stdout);
    expect(invalid.map((d: { messageId: string }) => d.messageId).sort()).toEqual(['bad-1', 'bad-2']);
    expect(invalid[0]).toMatchObject({ reason: 'invalid', errorCode: 'VALIDATION_FAILED', attempts: 1, consumer: 'worker' });
    const text = await warren(['dlq', 'peek', `${name}.work`, '--code', 'NON_RETRYABLE'], env);
    expect(text.stdout).toMatch(/^MESSAGE ID +REASON +CODE +ATTEMPTS +FIRST FAILURE +LAST FAILURE +ERROR$/m);
    expect(text.stdout.match(/non-retryable +NON_RETRYABLE/g)).toHaveLength(3);
    expect((await queueCounts(dlq)).messages).toBe(5); // peeking takes nothing out

    const unasked = await warren(['dlq', 'replay', `${name}.work`], env);
    expect(unasked.code).toBe(2);
    expect(unasked.stderr).toContain('pass --yes');

    const replay = await warren(['dlq', 'replay', `${name}.work`, '--code', 'NON_RETRYABLE', '--yes', '--json'], env);
    expect(replay, replay.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(replay.stdout)).toEqual({ replayed: 3, skipped: 2, left: 2 });
    expect((await queueCounts(`${name}.work`)).messages).toBe(3);
    expect((await queueCounts(dlq)).messages).toBe(2);

    const purgeOne = await warren(['dlq', 'purge', `${name}.work`, '--reason', 'invalid', '--limit', '1', '--yes'], env);
    expect(purgeOne, purgeOne.stderr).toMatchObject({ code: 0 });
    expect(purgeOne.stdout).toContain(`purged 1 dead letter of '${name}.work'; 1 left in ${name}.work.dlq`);
    expect((await queueCounts(dlq)).messages).toBe(1);
    const left = JSON.parse((await warren(['dlq', 'peek', `${name}.work`, '--json'], env)).stdout);
    expect(left).toHaveLength(1);
    expect(left[0].reason).toBe('invalid');

    // Everything (no filter, no limit): one queue.purge.
    const purgeAll = await warren(['dlq', 'purge', `${name}.work`, '--yes', '--json'], env);
    expect(JSON.parse(purgeAll.stdout)).toEqual({ purged: 1, skipped: 0, left: 0 });

    const missing = await warren(['dlq', 'peek', `${name}.nothing`], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`[TOPOLOGY_FAILED]: There is no queue '${name}.nothing.dlq' on this vhost`);
  });
});

describe('warren docs', () => {
  it('prints the example app\'s AsyncAPI YAML: the committed docs/asyncapi.yaml; no broker is touched (AMQP_URL is not documented)', async () => {
    expect.hasAssertions();
    const r = await warren(['docs', 'consumers/app.ts'], cliEnv(cliName('docs'), { AMQP_URL: 'amqp://someone:n0t-documented@elsewhere:5672' }));
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(readFileSync(join(root, 'docs/asyncapi.yaml'), 'utf8'));
  });

  it('--json -o <file> writes JSON and says what it wrote; --server documents the brokers given, without their passwords', async () => {
    expect.hasAssertions();
    const dir = mkdtempSync(join(tmpdir(), 'warren-docs-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'inventory.json');
    const r = await warren(['docs', '--app', 'test/fixtures/asyncapi-app.ts', '--json', '-o', file, '--server', 'amqps://ops:hunter2-Secret@rabbit.prod:5671/inv'], cliEnv(cliName('docs')));
    expect(r, r.stderr).toMatchObject({ code: 0 });
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    expect(doc).toMatchObject({ asyncapi: '3.0.0', servers: { 'rabbit.prod': { host: 'rabbit.prod:5671', protocol: 'amqps', pathname: '/inv' } } });
    const [channels, operations, messages] = [doc.channels, doc.operations, doc.components.messages].map((o) => Object.keys(o).length);
    expect(r.stdout).toBe(`wrote the AsyncAPI 3.0.0 document of app 'inventory' to ${file}: ${channels} channels, ${operations} operations, ${messages} messages\n`);
    expect(readFileSync(file, 'utf8')).not.toMatch(/hunter2|s3cret/);
  });

  it('a --server that is not an AMQP URL, or no app: exit 2', async () => {
    expect.hasAssertions();
    const bad = await warren(['docs', 'consumers/app.ts', '--server', 'http://ops:hunter2-Secret@rabbit'], cliEnv(cliName('docs')));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("servers.0: 'http://ops:***@rabbit/' is not an amqp:// or amqps:// URL");
    expect(bad.stderr).not.toContain('hunter2');
    const none = await warren(['docs'], cliEnv(cliName('docs')));
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('give the app module');
  });
});

describe('credentials', () => {
  it('a wrong password is refused with its code and never printed, by the AMQP and the management commands', async () => {
    expect.hasAssertions();
    const secret = `wrong-${randomBytes(6).toString('hex')}`;
    const broker = new URL(brokerUrls().amqpUrl);
    broker.password = secret;
    const api = new URL(brokerUrls().managementUrl);
    api.password = secret;
    const env = cliEnv(cliName('secret'), { AMQP_URL: broker.toString(), RABBITMQ_MANAGEMENT_URL: api.toString() });

    const publish = await warren(['publish', 'job.created', '--app', fixtureApp, '--data', job('x')], env);
    expect(publish.code).toBe(1);
    expect(publish.stderr).toContain('[ACCESS_REFUSED]');
    const inspect = await warren(['inspect'], env);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toContain('[MANAGEMENT_FAILED]');
    const run = await warren(['run', fixtureApp, '--log-level', 'debug'], env);
    expect(run.code).toBe(1);
    for (const r of [publish, inspect, run]) expect(r.stdout + r.stderr).not.toContain(secret);
  });

  it('--password is refused (exit 2) with the ways to give a password, and without echoing it', async () => {
    expect.hasAssertions();
    const secret = `typed-${randomBytes(6).toString('hex')}`;
    for (const args of [['inspect', '--password', secret], ['inspect', `--password=${secret}`]]) {
      const r = await warren(args, cliEnv(cliName('pw')));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/visible to everyone in ps\. Use --password-file <path>, WARREN_PASSWORD_FILE or WARREN_PASSWORD/);
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
  });
});
