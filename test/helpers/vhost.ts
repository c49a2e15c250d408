// A vhost of its own with users limited by RabbitMQ permissions, made through the management
// API and removed afterwards: the only change a permission test makes to the shared broker.
import { randomBytes } from 'node:crypto';
import amqp, { type Channel } from 'amqplib';
import { brokerUrls, management, uniqueName } from './broker.js';

/** The three regexes of `rabbitmqctl set_permissions`. */
export interface Grant {
  configure: string;
  write: string;
  read: string;
}

export const NOTHING = '^$';

export interface Sandbox {
  readonly vhost: string;
  /** The broker's admin (the test broker's own user) on this vhost. */
  readonly adminUrl: string;
  /** Creates a user with exactly `grant` on this vhost (and `tags`); returns its AMQP URL. */
  user(grant: Grant, tags?: string): Promise<{ name: string; url: string; managementUrl: string }>;
  /** Replaces a user's permissions on this vhost. */
  grant(user: string, grant: Grant): Promise<void>;
  /** Runs `fn` on a channel of the admin user on this vhost. */
  asAdmin<T>(fn: (ch: Channel) => Promise<T>): Promise<T>;
  /** Deletes the vhost (and everything in it) and the users. */
  remove(): Promise<void>;
}

async function ok(res: Response, what: string): Promise<void> {
  const body = await res.text();
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${body}`);
}

function withCredentials(base: string, user: string, password: string, path?: string): string {
  const u = new URL(base);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  if (path !== undefined) u.pathname = `/${encodeURIComponent(path)}`;
  return u.toString().replace(/\/$/, '');
}

export async function sandbox(): Promise<Sandbox> {
  const { amqpUrl, managementUrl } = brokerUrls();
  const vhost = uniqueName('perms');
  const v = encodeURIComponent(vhost);
  const admin = decodeURIComponent(new URL(managementUrl).username);
  const users: string[] = [];
  await ok(await management.request('PUT', `/api/vhosts/${v}`), `creating vhost ${vhost}`);
  await ok(await management.request('PUT', `/api/permissions/${v}/${encodeURIComponent(admin)}`, { configure: '.*', write: '.*', read: '.*' }), 'granting the admin');
  const adminUrl = (() => {
    const u = new URL(amqpUrl);
    u.pathname = `/${v}`;
    return u.toString();
  })();
  const setGrant = async (user: string, g: Grant): Promise<void> =>
    ok(await management.request('PUT', `/api/permissions/${v}/${encodeURIComponent(user)}`, g), `setting permissions of ${user}`);
  return {
    vhost,
    adminUrl,
    async user(g, tags = '') {
      const name = `${vhost}.user${users.length + 1}`;
      const password = randomBytes(12).toString('hex');
      await ok(await management.request('PUT', `/api/users/${encodeURIComponent(name)}`, { password, tags }), `creating user ${name}`);
      users.push(name);
      await setGrant(name, g);
      return { name, url: withCredentials(amqpUrl, name, password, vhost), managementUrl: withCredentials(managementUrl, name, password) };
    },
    grant: setGrant,
    async asAdmin(fn) {
      const conn = await amqp.connect(adminUrl);
      conn.on('error', () => undefined);
      try {
        const ch = await conn.createChannel();
        ch.on('error', () => undefined);
        return await fn(ch);
      } finally {
        await conn.close().catch(() => undefined);
      }
    },
    async remove() {
      await management.delete(`/api/vhosts/${v}`);
      for (const u of users.splice(0)) await management.delete(`/api/users/${encodeURIComponent(u)}`);
    },
  };
}
