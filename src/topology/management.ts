import { redactUrl } from '../support/redact.js';

/** What the management HTTP API says about a queue or exchange (only the fields warren compares). */
export interface ManagedEntity {
  durable?: boolean;
  auto_delete?: boolean;
  exclusive?: boolean;
  internal?: boolean;
  type?: string;
  arguments?: Record<string, unknown>;
}

/**
 * A minimal client of RabbitMQ's management HTTP API, used only to explain a topology mismatch.
 * Every call is best effort: any failure yields undefined and the caller falls back to the broker's text.
 */
export class ManagementClient {
  readonly #base: string;
  readonly #auth: string | undefined;

  constructor(url: string) {
    const u = new URL(url);
    this.#auth =
      u.username !== '' ? 'Basic ' + Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64') : undefined;
    u.username = '';
    u.password = '';
    this.#base = u.toString().replace(/\/$/, '');
  }

  toString(): string {
    return redactUrl(this.#base);
  }

  async queue(vhost: string, name: string): Promise<ManagedEntity | undefined> {
    return this.#get(`/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`);
  }

  async exchange(vhost: string, name: string): Promise<ManagedEntity | undefined> {
    return this.#get(`/api/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`);
  }

  async #get(path: string): Promise<ManagedEntity | undefined> {
    try {
      const headers: Record<string, string> = { accept: 'application/json' };
      if (this.#auth !== undefined) headers['authorization'] = this.#auth;
      const res = await fetch(this.#base + path, { headers, signal: AbortSignal.timeout(3000) });
      if (!res.ok) return undefined;
      return (await res.json()) as ManagedEntity;
    } catch {
      return undefined;
    }
  }
}
