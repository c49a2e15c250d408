// Test helpers for talking to the broker the run chose (see test/setup/global-broker.ts):
// unique names, a raw amqplib channel, exact queue counts, the management API, and cleanup.
import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { pino, type Logger } from 'pino';
import { inject } from 'vitest';

export function brokerUrls(): { amqpUrl: string; managementUrl: string } {
  return { amqpUrl: inject('amqpUrl'), managementUrl: inject('managementUrl') };
}

/** A name no other test (or earlier run) uses: `prefix-<random>`. */
export function uniqueName(prefix: string): string {
  return `test.${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Opens a raw amqplib connection and channel, runs `fn`, and closes both. */
export async function withRawChannel<T>(fn: (ch: Channel, conn: ChannelModel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(brokerUrls().amqpUrl);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    return await fn(ch, conn);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Sends messages to a queue as a client that is not warren (raw amqplib, content type JSON) and waits until the broker has them. */
export async function sendRaw(queue: string, ...messages: { body: Buffer | string; headers?: Record<string, unknown>; contentEncoding?: string; messageId: string }[]): Promise<void> {
  await withRawChannel(async (ch) => {
    for (const m of messages) {
      ch.sendToQueue(queue, Buffer.isBuffer(m.body) ? m.body : Buffer.from(m.body), {
        contentType: 'application/json',
        messageId: m.messageId,
        ...(m.headers !== undefined ? { headers: m.headers } : {}),
        ...(m.contentEncoding !== undefined ? { contentEncoding: m.contentEncoding } : {}),
      });
    }
    await ch.checkQueue(queue); // a round trip: the sends reached the broker
  });
}

/**
 * Exact counts from queue.declare-ok. Prefer this to the management API for counts: its figures
 * come from stats the broker emits every `collect_statistics_interval` (5 s by default), so they
 * lag by up to ~5 s and are missing entirely on a queue declared a moment ago.
 */
export async function queueCounts(queue: string): Promise<{ messages: number; consumers: number }> {
  return withRawChannel(async (ch) => {
    const ok = await ch.checkQueue(queue);
    return { messages: ok.messageCount, consumers: ok.consumerCount };
  });
}

/** Takes every ready message off a queue (acking them) and returns them. */
export async function drainQueue(queue: string): Promise<amqp.GetMessage[]> {
  return withRawChannel(async (ch) => {
    const out: amqp.GetMessage[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) return out;
      out.push(m);
    }
  });
}

/** Polls `check` until it returns a value other than undefined/false, or fails with `description`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  description: string,
  { timeoutMs = 10_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${description}${last instanceof Error ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A connection as GET /api/connections lists it (a few of its fields). */
export interface ManagementConnection {
  /** The broker's name for it (`127.0.0.1:50000 -> 127.0.0.1:5672`), used to close it. */
  name: string;
  user: string;
  state: string;
  timeout: number;
  client_properties: { connection_name?: string };
}

/** A queue as GET /api/queues/{vhost}/{name} shows it. The counts lag (see queueCounts). */
export interface ManagementQueue {
  name: string;
  arguments: Record<string, unknown>;
  durable: boolean;
  type?: string;
  messages?: number;
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
}

/**
 * The management HTTP API of the test broker. fetch() refuses URLs with credentials in them, so
 * they are taken out of the management URL and sent as a Basic Authorization header instead.
 * A connection appears in /api/connections a moment after it opens: poll with `waitFor`.
 */
export const management = managementAt(() => brokerUrls().managementUrl);

/** The management API of the broker at `baseUrl()` (read on each call); see `management`. */
export function managementAt(baseUrl: () => string) {
  return {
    async request(method: string, path: string, body?: unknown): Promise<Response> {
      const u = new URL(baseUrl());
      const auth = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
      u.username = '';
      u.password = '';
      const headers: Record<string, string> = { authorization: `Basic ${auth}`, 'content-type': 'application/json', 'x-reason': 'warren test' };
      const init: RequestInit = { method, headers };
      if (body !== undefined) init.body = JSON.stringify(body);
      return fetch(u.toString().replace(/\/$/, '') + path, init);
    },
    async json<T>(path: string): Promise<T | undefined> {
      const res = await this.request('GET', path);
      if (res.status === 404) return undefined;
      if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
      return (await res.json()) as T;
    },
    /** Connections as the management API lists them. */
    async connections(): Promise<ManagementConnection[]> {
      return (await this.json<ManagementConnection[]>('/api/connections')) ?? [];
    },
    /** Connections whose client-provided name is `connectionName`. */
    async connectionsNamed(connectionName: string): Promise<ManagementConnection[]> {
      return (await this.connections()).filter((c) => c.client_properties.connection_name === connectionName);
    },
    /** Force-closes (as an operator would) every connection `predicate` picks; returns how many. */
    async closeConnections(predicate: (c: ManagementConnection) => boolean): Promise<number> {
      const conns = (await this.connections()).filter(predicate);
      for (const c of conns) await this.delete(`/api/connections/${encodeURIComponent(c.name)}`);
      return conns.length;
    },
    /** Force-closes every connection with this client-provided name; returns how many. */
    async closeConnectionsNamed(connectionName: string): Promise<number> {
      return this.closeConnections((c) => c.client_properties.connection_name === connectionName);
    },
    /** A queue in `vhost`, or undefined when there is none. */
    async queue(name: string, vhost = '/'): Promise<ManagementQueue | undefined> {
      return this.json(`/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`);
    },
    /** Deletes a queue (messages and all); one that is already gone is fine. */
    async deleteQueue(name: string, vhost = '/'): Promise<void> {
      await this.delete(`/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`);
    },
    /** Deletes an exchange; one that is already gone is fine. */
    async deleteExchange(name: string, vhost = '/'): Promise<void> {
      await this.delete(`/api/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`);
    },
    /** DELETE that accepts 404 (already gone) and throws on any other failure. */
    async delete(path: string): Promise<void> {
      const res = await this.request('DELETE', path);
      await res.body?.cancel();
      if (!res.ok && res.status !== 404) throw new Error(`DELETE ${path}: HTTP ${res.status}`);
    },
    async exchange(name: string): Promise<{ type: string; durable: boolean; arguments: Record<string, unknown> } | undefined> {
      return this.json(`/api/exchanges/%2F/${encodeURIComponent(name)}`);
    },
    async bindings(queue: string): Promise<{ source: string; routing_key: string }[]> {
      return (await this.json(`/api/queues/%2F/${encodeURIComponent(queue)}/bindings`)) ?? [];
    },
  };
}

const tracked = { queues: new Set<string>(), exchanges: new Set<string>() };

/** Remember a queue/exchange so `cleanupTracked()` deletes it after the test. */
export const track = {
  queue(name: string): string {
    tracked.queues.add(name);
    return name;
  },
  exchange(name: string): string {
    tracked.exchanges.add(name);
    return name;
  },
};

/**
 * Deletes tracked queues and exchanges; call it in afterEach. Tries every one, then throws one
 * error naming those it could not delete.
 */
export async function cleanupTracked(): Promise<void> {
  const queues = [...tracked.queues];
  const exchanges = [...tracked.exchanges];
  tracked.queues.clear();
  tracked.exchanges.clear();
  const failures: string[] = [];
  for (const q of queues) await management.deleteQueue(q).catch((err: unknown) => failures.push(`queue ${q}: ${String(err)}`));
  for (const e of exchanges) await management.deleteExchange(e).catch((err: unknown) => failures.push(`exchange ${e}: ${String(err)}`));
  if (failures.length > 0) throw new Error(`cleanupTracked could not delete ${failures.join('; ')}`);
}

/** A pino logger whose lines are collected in memory, to assert what warren logs. */
export function memoryLogger(level = 'debug'): { logger: Logger; lines: string[]; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = pino({ level }, { write: (line: string) => void lines.push(line) });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}
