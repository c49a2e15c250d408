// Chooses the broker the tests use, once per run:
//   1. AMQP_URL (and RABBITMQ_MANAGEMENT_URL) when set;
//   2. else a broker answering on 127.0.0.1:5672 (guest/guest);
//   3. else a throwaway RabbitMQ started with testcontainers, where Docker is available;
//   4. else fail with a message that says what to start.
// Unit tests need none of this, but share the run: a missing broker fails the run loudly
// rather than skipping integration tests silently.
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { portOpen } from '../helpers/net.js';

declare module 'vitest' {
  export interface ProvidedContext {
    amqpUrl: string;
    managementUrl: string;
  }
}

const DEFAULT_AMQP = 'amqp://guest:guest@127.0.0.1:5672';
const DEFAULT_MANAGEMENT = 'http://guest:guest@127.0.0.1:15672';

/** Hides the password; greedy up to the last `@`, so a malformed URL cannot leak part of it. */
function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):.*@/, '//$1:***@');
}

/** `new URL()`'s own error carries the input (password included) and vitest prints it: say it without. */
function parseUrl(url: string, name: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new Error(`${name} is not a valid URL: ${redact(url)}`);
  }
}

/** Derives the management URL from an AMQP URL: same host and credentials, port 15672. */
function managementFor(amqpUrl: string): string {
  const u = new URL(amqpUrl);
  const m = new URL(DEFAULT_MANAGEMENT);
  m.hostname = u.hostname;
  m.username = u.username || 'guest';
  m.password = u.password || 'guest';
  return m.toString().replace(/\/$/, '');
}

/** Why GET /api/overview failed, or undefined when it answered. */
async function managementProblem(url: string): Promise<'unreachable' | `HTTP ${number}` | undefined> {
  const u = new URL(url);
  const auth = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
  u.username = '';
  u.password = '';
  try {
    const res = await fetch(new URL('api/overview', u.toString().replace(/\/?$/, '/')), {
      headers: { authorization: `Basic ${auth}` },
      signal: AbortSignal.timeout(3000),
    });
    await res.body?.cancel();
    return res.ok ? undefined : `HTTP ${res.status}`;
  } catch {
    return 'unreachable';
  }
}

async function dockerAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  let amqpUrl = process.env['AMQP_URL'];
  let managementUrl = process.env['RABBITMQ_MANAGEMENT_URL'];
  let teardown: (() => Promise<void>) | undefined;

  if (amqpUrl === undefined) {
    if (await portOpen('127.0.0.1', 5672)) {
      amqpUrl = DEFAULT_AMQP;
      managementUrl ??= DEFAULT_MANAGEMENT;
    } else if (await dockerAvailable()) {
      const { RabbitMQContainer } = await import('@testcontainers/rabbitmq');
      // The module's default 30 s startup timeout is short for a first image pull on a small box.
      const container = await new RabbitMQContainer('rabbitmq:3.13-management').withStartupTimeout(120_000).start();
      // getAmqpUrl() carries no credentials; spell out the container's guest:guest so tests that
      // rewrite the URL's user or password start from the real ones.
      amqpUrl = `amqp://guest:guest@${container.getHost()}:${container.getMappedPort(5672)}`;
      managementUrl = `http://guest:guest@${container.getHost()}:${container.getMappedPort(15672)}`;
      teardown = async () => {
        await container.stop();
      };
    } else {
      throw new Error(
        'No RabbitMQ broker found: set AMQP_URL (and RABBITMQ_MANAGEMENT_URL), start one with `docker compose up -d`, ' +
          'or install Docker so the tests can start one with testcontainers. ' +
          '(Nothing answers on 127.0.0.1:5672 and no container runtime was found; `.ci/run` installs Debian\'s rabbitmq-server.)',
      );
    }
  }
  const target = parseUrl(amqpUrl, 'AMQP_URL');
  if (managementUrl !== undefined) parseUrl(managementUrl, 'RABBITMQ_MANAGEMENT_URL');
  if (!(await portOpen(target.hostname.replace(/^\[|\]$/g, ''), Number(target.port || (target.protocol === 'amqps:' ? 5671 : 5672)), 3000))) {
    await teardown?.();
    throw new Error(
      `Nothing answers at AMQP_URL ${redact(amqpUrl)}. Start the broker (e.g. \`docker compose up -d\`) or point AMQP_URL at one.`,
    );
  }
  managementUrl ??= managementFor(amqpUrl);
  const problem = await managementProblem(managementUrl);
  if (problem !== undefined) {
    await teardown?.();
    throw new Error(
      problem === 'unreachable'
        ? `The RabbitMQ management API does not answer at ${redact(managementUrl)}. The integration tests use it to ` +
            'inspect queues and close connections: run `rabbitmq-plugins enable rabbitmq_management` on the broker, ' +
            'or set RABBITMQ_MANAGEMENT_URL.'
        : `The RabbitMQ management API at ${redact(managementUrl)} refused GET /api/overview (${problem}): ` +
            'check the user and password in RABBITMQ_MANAGEMENT_URL (the user needs the management or administrator tag).',
    );
  }
  project.provide('amqpUrl', amqpUrl);
  project.provide('managementUrl', managementUrl);
  return teardown;
}
