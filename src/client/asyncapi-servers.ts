/** The `servers` of an app's AsyncAPI document: its brokers, without credentials. */
import { ConfigError } from '../support/errors.js';
import { redactUrl } from '../support/redact.js';
import type { App } from './app.js';

export interface AsyncApiServer {
  host: string;
  protocol: 'amqp' | 'amqps';
  protocolVersion: '0.9.1';
  /** The vhost, when it is not `/`. */
  pathname?: string;
  description: string;
}

/**
 * The servers: `given` AMQP URLs, else the app's `connect.urls`, else a placeholder
 * `localhost:5672`; and the vhost of the first (the channels'). A URL's user name and password
 * are never written. Throws a ConfigError for a URL that is not an AMQP one.
 */
export function serversOf(app: App, given: readonly string[] | undefined): { servers: Record<string, AsyncApiServer>; vhost: string } {
  const urls = given ?? app.connect.urls ?? [];
  const from = given !== undefined ? '' : " (from the app's connect.urls)";
  const at = given !== undefined ? 'servers' : 'connect.urls';
  if (urls.length === 0) {
    const description = "A placeholder: the app names no broker (connect.urls). Document yours with `warren docs --server amqp://host:5672/vhost` (or asyncApiDocument's servers option).";
    return { servers: { localhost: { host: 'localhost:5672', protocol: 'amqp', protocolVersion: '0.9.1', description } }, vhost: '/' };
  }
  const servers: Record<string, AsyncApiServer> = {};
  const problems: string[] = [];
  let vhost: string | undefined;
  urls.forEach((url, i) => {
    // Without its password, even when a missing scheme makes `user:` look like one.
    const shown = redactUrl(url).replace(/^[^/]*@/, '***@');
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      problems.push(`${at}.${i}: '${shown}' is not a URL; give amqp://host:5672/vhost`);
      return;
    }
    if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') {
      problems.push(`${at}.${i}: '${shown}' is not an amqp:// or amqps:// URL`);
      return;
    }
    const protocol = u.protocol === 'amqps:' ? 'amqps' : 'amqp';
    let v: string;
    try {
      v = decodeURIComponent(u.pathname.slice(1)) || '/';
    } catch {
      problems.push(`${at}.${i}: '${shown}' has a vhost that is not URL-encoded text`);
      return;
    }
    vhost ??= v;
    const host = `${u.hostname}:${u.port !== '' ? u.port : protocol === 'amqps' ? '5671' : '5672'}`;
    const server: AsyncApiServer = { host, protocol, protocolVersion: '0.9.1', ...(v !== '/' ? { pathname: `/${encodeURIComponent(v)}` } : {}), description: `RabbitMQ at ${protocol}://${host}, vhost '${v}'${from}.` };
    const base = u.hostname.replace(/[^\w.-]/g, '_') || 'broker';
    let id = base;
    for (let n = 2; id in servers; n += 1) id = `${base}-${n}`;
    servers[id] = server;
  });
  if (problems.length > 0) throw new ConfigError('AsyncAPI servers', problems);
  return { servers, vhost: vhost ?? '/' };
}
