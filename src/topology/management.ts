import { ManagementError } from '../support/errors.js';
import { readLogin, userinfoOf, type CredentialSource } from '../support/credentials.js';
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

interface Rate {
  rate?: number;
}

/** A queue as `GET /api/queues/{vhost}` lists it (the fields warren reads). */
export interface ManagedQueue extends ManagedEntity {
  name: string;
  vhost?: string;
  state?: string;
  messages?: number;
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
  message_stats?: { publish_details?: Rate; deliver_get_details?: Rate; ack_details?: Rate };
}

export interface ManagedExchange extends ManagedEntity {
  name: string;
}

export interface ManagedBinding {
  source: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments?: Record<string, unknown>;
}

export interface ManagedConnection {
  name: string;
  user?: string;
  vhost?: string;
  state?: string;
  channels?: number;
  client_properties?: Record<string, unknown>;
}

export interface ManagedNode {
  name: string;
  running?: boolean;
  mem_alarm?: boolean;
  disk_free_alarm?: boolean;
}

/**
 * A client of RabbitMQ's management HTTP API. The login (the URL's userinfo, with `credentials`
 * taking the place of what they give; their files read at each request) goes into the
 * Authorization header, never into a message.
 */
export class ManagementClient {
  readonly #base: string;
  readonly #login: CredentialSource;

  constructor(url: string, credentials?: CredentialSource) {
    const inUrl = userinfoOf(url);
    const c = credentials ?? {};
    this.#login = {
      ...(inUrl.username !== '' && c.username === undefined && c.usernameFile === undefined ? { username: inUrl.username } : {}),
      ...(inUrl.password !== '' && c.password === undefined && c.passwordFile === undefined ? { password: inUrl.password } : {}),
      ...c,
    };
    const u = new URL(url);
    u.username = '';
    u.password = '';
    this.#base = u.toString().replace(/\/$/, '');
  }

  /** The Authorization header for the next request; none when no user name is given anywhere. */
  async #authorization(): Promise<string | undefined> {
    const l = this.#login;
    if (l.username === undefined && l.usernameFile === undefined && l.password === undefined && l.passwordFile === undefined) return undefined;
    const { username, password } = await readLogin(l, '');
    return 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
  }

  toString(): string {
    return redactUrl(this.#base);
  }

  /** Best effort (undefined on any failure): used only to explain a topology mismatch. */
  async queue(vhost: string, name: string): Promise<ManagedEntity | undefined> {
    return this.#get<ManagedEntity>(`/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`).catch(() => undefined);
  }

  /** Best effort (undefined on any failure): used only to explain a topology mismatch. */
  async exchange(vhost: string, name: string): Promise<ManagedEntity | undefined> {
    return this.#get<ManagedEntity>(`/api/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`).catch(() => undefined);
  }

  /** Every queue of the vhost. Throws ManagementError. */
  queues(vhost: string): Promise<ManagedQueue[]> {
    return this.#get(`/api/queues/${encodeURIComponent(vhost)}`);
  }

  /** Every exchange of the vhost. Throws ManagementError. */
  exchanges(vhost: string): Promise<ManagedExchange[]> {
    return this.#get(`/api/exchanges/${encodeURIComponent(vhost)}`);
  }

  /** Every binding of the vhost. Throws ManagementError. */
  bindings(vhost: string): Promise<ManagedBinding[]> {
    return this.#get(`/api/bindings/${encodeURIComponent(vhost)}`);
  }

  /** Every client connection (of every vhost the user may see). Throws ManagementError. */
  connections(): Promise<ManagedConnection[]> {
    return this.#get('/api/connections');
  }

  /** The cluster's nodes, with their resource alarms. Throws ManagementError. */
  nodes(): Promise<ManagedNode[]> {
    return this.#get('/api/nodes');
  }

  async #get<T>(path: string): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const auth = await this.#authorization();
    if (auth !== undefined) headers['authorization'] = auth;
    let res: Response;
    try {
      res = await fetch(this.#base + path, { headers, signal: AbortSignal.timeout(5000) });
    } catch (err) {
      throw new ManagementError(
        `The RabbitMQ management API at ${this.toString()} did not answer (${errorText(err)}). Is the management plugin on (rabbitmq-plugins enable rabbitmq_management) and the URL right (--management-url or RABBITMQ_MANAGEMENT_URL)?`,
        { cause: err },
      );
    }
    if (res.status === 401 || res.status === 403) {
      throw new ManagementError(
        `The RabbitMQ management API at ${this.toString()} refused the request (HTTP ${res.status}): the user name or password is wrong, or the user has no management tag ` +
          `(rabbitmqctl set_user_tags <user> management; monitoring to see alarms and every connection). Give the login in the URL or as credentials.`,
        { status: res.status },
      );
    }
    if (res.status === 404 && /^\/api\/(queues|exchanges|bindings)\//.test(path)) {
      throw new ManagementError(`The RabbitMQ management API at ${this.toString()} has no vhost '${decodeURIComponent(path.split('/')[3] ?? '')}' (HTTP 404): check the vhost in the AMQP URL.`, {
        status: res.status,
      });
    }
    if (!res.ok) throw new ManagementError(`The RabbitMQ management API at ${this.toString()} answered HTTP ${res.status} to GET ${path}.`, { status: res.status });
    try {
      return (await res.json()) as T;
    } catch (err) {
      throw new ManagementError(`The RabbitMQ management API at ${this.toString()} answered GET ${path} with something other than JSON: is the URL that of the management API (port 15672), not a proxy's page?`, {
        cause: err,
        status: res.status,
      });
    }
  }
}

function errorText(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  return cause instanceof Error ? cause.message : String(cause);
}
