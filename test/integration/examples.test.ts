// Runs the examples as a user would, with the README's commands, against the test broker. They use
// the example topology's fixed names (shop.orders, billing.orders, shipping.orders and their .dlq
// queues) on purpose, and leave them in place as `npm run demo` does.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { brokerUrls } from '../helpers/broker.js';
import { runCommand, type CliResult } from '../helpers/cli.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
// `npx` dies of a signal itself rather than waiting for the script, so the signal test runs tsx directly.
const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

function exampleEnv(logLevel?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, AMQP_URL: brokerUrls().amqpUrl, RABBITMQ_MANAGEMENT_URL: brokerUrls().managementUrl };
  if (logLevel === undefined) delete env['LOG_LEVEL']; // the script's own default
  else env['LOG_LEVEL'] = logLevel;
  return env;
}

/** Runs `command args` in the repository root; resolves when it exits, or kills it after `timeoutMs`. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 45_000): Promise<CliResult> {
  return runCommand(command, args, env, { timeoutMs });
}

/** The exit code, with the output when it is not 0, so a failure shows what the script said. */
function exit(r: CliResult): { code: number | null; output?: string } {
  return r.code === 0 ? { code: 0 } : { code: r.code, output: r.stdout + r.stderr };
}

/** The JSON log lines (pino) among a script's output. */
function logRecords(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('examples', () => {
  it('npx tsx producers/demo.ts (npm run demo): every order confirmed, two typed refusals, 19 handled and 1 dead-lettered per consumer', async () => {
    expect.hasAssertions();
    const r = await run('npx', ['tsx', 'producers/demo.ts'], exampleEnv());
    expect(exit(r)).toEqual({ code: 0 });
    const lines = r.stdout.split('\n');
    expect(lines).toContain('published 20 orders; the broker confirmed every one');
    expect(lines).toContain('refused an order with a negative amount: VALIDATION_FAILED');
    expect(lines).toContain('refused an order with a routing key nobody binds: UNROUTABLE');
    // The summary rows: order 5 is too expensive for billing, order 10 too large for shipping.
    expect(r.stdout).toMatch(/^billing +19 +1 \(billing\.orders\.dlq: demo-[0-9a-f]{8}-5\)$/m);
    expect(r.stdout).toMatch(/^shipping +19 +1 \(shipping\.orders\.dlq: demo-[0-9a-f]{8}-10\)$/m);
    // What an operator finds in the dead-letter queue: the order and the documented reason.
    expect(r.stdout).toMatch(/^billing\.orders\.dlq: demo-[0-9a-f]{8}-5 — non-retryable: /m);
    expect(r.stdout).not.toMatch(/^unexpected/m);
  }, 60_000);

  it('npm run demo -- --in-memory: the same run with no broker at all (AMQP_URL pointing nowhere)', async () => {
    const r = await run('npx', ['tsx', 'producers/demo.ts', '--in-memory'], { ...exampleEnv(), AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' });
    expect(exit(r)).toEqual({ code: 0 });
    expect(r.stdout).toMatch(/on an in-memory broker/);
    expect(r.stdout.split('\n')).toContain('published 20 orders; the broker confirmed every one');
    expect(r.stdout).toMatch(/^billing +19 +1 \(billing\.orders\.dlq: demo-[0-9a-f]{8}-5\)$/m);
    expect(r.stdout).toMatch(/^shipping +19 +1 \(shipping\.orders\.dlq: demo-[0-9a-f]{8}-10\)$/m);
    expect(r.stdout).toMatch(/^billing\.orders\.dlq: demo-[0-9a-f]{8}-5 — non-retryable: /m);
  }, 60_000);

  it('npm run demo beside running consumers (as docker compose runs them): it only publishes, and reads the outcome from the dead-letter queues', async () => {
    expect.hasAssertions();
    const consumers = spawn(tsx, ['src/cli/main.ts', 'run', 'consumers/app.ts'], { cwd: root, env: exampleEnv('info'), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const running = new Promise<void>((resolve, reject) => {
      consumers.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (logRecords(out).some((e) => typeof e['msg'] === 'string' && e['msg'].startsWith('running'))) resolve();
      });
      consumers.once('close', () => reject(new Error(`warren run exited early:\n${out}`)));
    });
    const exited = new Promise<number | null>((resolve) => consumers.once('close', resolve));
    try {
      await running;
      const r = await run('npx', ['tsx', 'producers/demo.ts'], exampleEnv());
      expect(exit(r)).toEqual({ code: 0 });
      expect(r.stdout).toContain("the shop's queues have 2 consumers already");
      expect(r.stdout).toMatch(/^billing +19 +1 \(billing\.orders\.dlq: demo-[0-9a-f]{8}-5\)$/m);
      expect(r.stdout).toMatch(/^shipping +19 +1 \(shipping\.orders\.dlq: demo-[0-9a-f]{8}-10\)$/m);
      expect(r.stdout).toMatch(/^billing\.orders\.dlq: demo-[0-9a-f]{8}-5 — non-retryable: /m);
      consumers.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (consumers.exitCode === null && consumers.signalCode === null) consumers.kill('SIGKILL');
    }
  }, 60_000);

  it('npx tsx producers/place-orders.ts 5: five orders confirmed, exit 0', async () => {
    expect.hasAssertions();
    const r = await run('npx', ['tsx', 'producers/place-orders.ts', '5'], exampleEnv('info'));
    expect(exit(r)).toEqual({ code: 0 });
    expect(logRecords(r.stdout)).toContainEqual(expect.objectContaining({ confirmed: 5 }));
  }, 60_000);

  it('npm run warren -- run consumers/app.ts --only shipping consumes until SIGTERM, then shuts down gracefully and exits 0', async () => {
    expect.hasAssertions();
    const child = spawn(tsx, ['src/cli/main.ts', 'run', 'consumers/app.ts', '--only', 'shipping'], { cwd: root, env: exampleEnv('info'), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the consumer did not attach within 30 s; output:\n${stdout}`)), 30_000);
        child.stdout.on('data', () => {
          if (logRecords(stdout).some((e) => e['msg'] === 'consumer attached' && e['consumer'] === 'shipping')) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`the consumer exited before attaching; output:\n${stdout}`));
        });
      });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const records = logRecords(stdout);
      // warren logs the consumer stopping before the exit.
      expect(records).toContainEqual(expect.objectContaining({ msg: 'consumer stopped', consumer: 'shipping' }));
      expect(records.filter((e) => (e['level'] as number) >= 50)).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});
