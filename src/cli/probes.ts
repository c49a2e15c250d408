import { createServer, type Server } from 'node:http';
import type { Health } from '../index.js';

/** What /readyz answers: ready, or every reason it is not. */
export interface Readiness {
  ready: boolean;
  reasons: string[];
}

/** Ready = both connections open, not blocked, every consumer attached, none stalled. */
export function readiness(health: Health): Readiness {
  const reasons: string[] = [];
  const { publish, consume } = health.connections;
  // A blocked connection is up: its one reason is the alarm, below.
  const down = (state: string): boolean => state !== 'open' && state !== 'blocked';
  if (down(publish.state)) reasons.push(`publish connection ${publish.state}`);
  if (consume !== undefined && down(consume.state)) reasons.push(`consume connection ${consume.state}`);
  if (health.blocked) reasons.push('blocked by a broker resource alarm');
  for (const c of health.consumers) {
    if (!c.attached) reasons.push(`consumer ${c.name} not attached`);
    else if (c.stalled) reasons.push(`consumer ${c.name} stalled`);
  }
  return { ready: reasons.length === 0, reasons };
}

/**
 * Serves `/healthz` (the process is alive: 200) and `/readyz` (200 when ready, 503 with the
 * reasons when not) for orchestrators' probes, and `/metrics` for Prometheus when given.
 * `state()` says where the app is.
 */
export function serveProbes(port: number, host: string | undefined, state: () => Readiness, metrics?: () => Promise<{ contentType: string; body: string }>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body) + '\n');
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') send(405, { error: 'GET only' });
    else if (path === '/healthz') send(200, { status: 'alive' });
    else if (path === '/readyz') {
      const r = state();
      send(r.ready ? 200 : 503, r);
    } else if (path === '/metrics' && metrics !== undefined) {
      metrics().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        },
        (err: unknown) => send(500, { error: `collecting metrics failed: ${err instanceof Error ? err.message : String(err)}` }),
      );
    } else send(404, { error: `no ${path} here: /healthz (alive), /readyz (ready)${metrics !== undefined ? ', /metrics (Prometheus)' : ''}` });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
