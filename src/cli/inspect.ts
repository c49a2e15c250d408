import { inspectBroker, type BrokerSnapshot } from '../index.js';
import { codeOf } from './exit.js';
import { loadApp } from './load-app.js';
import { redact, resolveTarget, type ConnectionFlags } from './target.js';
import { fixed, table } from './output.js';

export interface InspectFlags extends ConnectionFlags {
  app?: string;
  watch?: boolean;
  interval: number;
  json?: boolean;
}

export function render(s: BrokerSnapshot): string {
  const lines = [
    `vhost '${s.vhost}' · ${s.at.toISOString()} · ${s.alarms === undefined ? 'alarms unknown (reading them needs a user tagged monitoring)' : s.alarms.length === 0 ? 'no alarms' : `ALARM: ${s.alarms.join('; ')} (publishers are blocked)`}`,
    '',
    s.queues.length === 0
      ? 'no queues match'
      : table(
          ['QUEUE', 'TYPE', 'STATE', 'READY', 'UNACKED', 'CONSUMERS', 'IN/S', 'OUT/S', 'ACK/S', 'DLQ'],
          s.queues.map((q) => [q.name, q.type, q.state ?? '', q.ready, q.unacked, q.consumers, fixed(q.publishRate), fixed(q.deliverRate), fixed(q.ackRate), q.deadLetters?.messages ?? '-']),
        ),
    '',
    s.connections.length === 0
      ? 'no warren connections'
      : table(
          ['CONNECTION', 'VERSION', 'USER', 'STATE', 'CHANNELS', 'CONSUMERS'],
          s.connections.map((c) => [c.name, c.version ?? '', c.user ?? '', c.state ?? '', c.channels, c.consumers.join(', ')]),
        ),
  ];
  return lines.join('\n') + '\n';
}

/** `warren inspect`: queues, warren's connections and alarms, once or refreshed in place (`--watch`). */
export async function inspect(pattern: string | undefined, flags: InspectFlags): Promise<void> {
  const app = flags.app !== undefined ? await loadApp(flags.app) : undefined;
  const target = resolveTarget(flags, app);
  const once = (): Promise<BrokerSnapshot> => inspectBroker({ managementUrl: target.managementUrl, vhost: target.vhost, ...(target.managementCredentials !== undefined ? { credentials: target.managementCredentials } : {}), ...(pattern !== undefined ? { pattern } : {}) });
  const show = (s: BrokerSnapshot, redraw: boolean): void => {
    if (flags.json === true) process.stdout.write(JSON.stringify(s, null, flags.watch === true ? 0 : 2) + '\n');
    else process.stdout.write((redraw && process.stdout.isTTY ? '\x1b[H\x1b[2J' : '') + render(s) + (redraw ? `\nrefreshing every ${flags.interval} s; Ctrl-C to stop\n` : ''));
  };
  if (flags.watch !== true) return show(await once(), false);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  for (let running = true; running; ) {
    try {
      show(await once(), true);
    } catch (err) {
      // A broker restarting is when someone watches: say so, and keep trying.
      const text = `error${codeOf(err) !== undefined ? ` [${codeOf(err)}]` : ''}: ${err instanceof Error ? err.message : String(err)} (retrying every ${flags.interval} s)`;
      process.stderr.write(redact(text) + '\n');
    }
    const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(true), flags.interval * 1000).unref());
    running = await Promise.race([timer, stopped.then(() => false)]);
  }
}
