// Runs the examples as a user would, from the README's commands.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { brokerUrls } from '../helpers/broker.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
const env = { ...process.env, AMQP_URL: brokerUrls().amqpUrl, RABBITMQ_MANAGEMENT_URL: brokerUrls().managementUrl };

describe('examples', () => {
  it('the demo (npm run demo) publishes, consumes, dead-letters and reports it', async () => {
    expect.hasAssertions();
    const { stdout } = await run(tsx, ['producers/demo.ts'], { cwd: root, env, timeout: 60_000 });
    expect(stdout).toContain('published 20 orders; the broker confirmed every one');
    expect(stdout).toContain('refused an order with a negative amount: VALIDATION_FAILED');
    expect(stdout).toContain('refused an order with a routing key nobody binds: UNROUTABLE');
    expect(stdout).toMatch(/^billing\s+19\s+1 \(billing\.orders\.dlq: demo-\w+-5\)$/m);
    expect(stdout).toMatch(/^shipping\s+19\s+1 \(shipping\.orders\.dlq: demo-\w+-10\)$/m);
    expect(stdout).toContain('"ok":true');
  }, 90_000);

  it('the producer script publishes and exits', async () => {
    expect.hasAssertions();
    const { stdout } = await run(tsx, ['producers/place-orders.ts', '5'], { cwd: root, env: { ...env, LOG_LEVEL: 'info' }, timeout: 60_000 });
    expect(stdout).toMatch(/"confirmed":5/);
  }, 90_000);

  it('a consumer script runs until SIGTERM, then shuts down cleanly', async () => {
    expect.hasAssertions();
    const { spawn } = await import('node:child_process');
    const child = spawn(tsx, ['consumers/shipping.ts'], { cwd: root, env: { ...env, LOG_LEVEL: 'info' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`consumer did not start: ${out}`)), 30_000);
      child.stdout.on('data', () => {
        if (out.includes('consuming; Ctrl-C to stop')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('consumer stopped');
    expect(out).toContain('"msg":"closed"');
  }, 90_000);
});
