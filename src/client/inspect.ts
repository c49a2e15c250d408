import { DLQ_SUFFIX } from '../define/topology.js';
import { namePattern } from '../topology/drift.js';
import type { ManagementCredentials } from '../support/credentials.js';
import { ManagementError } from '../support/errors.js';
import { ManagementClient, type ManagedQueue } from '../topology/management.js';

export interface QueueSnapshot {
  name: string;
  /** classic, quorum or stream. */
  type: string;
  /** running, idle, down, … as the broker reports it. */
  state: string | undefined;
  messages: number;
  ready: number;
  unacked: number;
  consumers: number;
  /** Messages per second, as the management API averages them. */
  publishRate: number;
  deliverRate: number;
  ackRate: number;
  /** Its dead-letter queue (`<name>.dlq`), when there is one. */
  deadLetters: { queue: string; messages: number } | undefined;
}

export interface ConnectionSnapshot {
  /** The client-provided name: `<app>:publish` or `<app>:consume`. */
  name: string;
  user: string | undefined;
  vhost: string | undefined;
  state: string | undefined;
  channels: number;
  /** The warren version the client runs. */
  version: string | undefined;
  /** The consumers it runs (what `warren run` announces). */
  consumers: string[];
}

export interface BrokerSnapshot {
  vhost: string;
  at: Date;
  /** Queues (but dead-letter queues, which are shown beside their queue) matching the pattern, by name. */
  queues: QueueSnapshot[];
  /** warren's connections (client product 'warren') on the vhost. */
  connections: ConnectionSnapshot[];
  /**
   * Resource alarms in force, e.g. `memory alarm on rabbit@host`: while any is on, the broker
   * blocks publishers. Undefined when the user may not read the nodes (a user tagged only
   * `management`; `monitoring` may).
   */
  alarms: string[] | undefined;
}

export interface InspectOptions {
  /** The management HTTP API, e.g. http://guest:guest@localhost:15672. */
  managementUrl: string;
  /** The login, instead of (or beside) the URL's userinfo: a user name and password, each a value or a file read at each request. */
  credentials?: ManagementCredentials;
  /** Default '/'. */
  vhost?: string;
  /** Only queues whose name matches: a pattern with `*` (any characters), else a part of the name. */
  pattern?: string;
}

const rate = (r: { rate?: number } | undefined): number => r?.rate ?? 0;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** What the broker holds and who is connected, through the management API. Rejects with ManagementError. */
export async function inspectBroker(options: InspectOptions): Promise<BrokerSnapshot> {
  const vhost = options.vhost ?? '/';
  const api = new ManagementClient(options.managementUrl, options.credentials);
  // GET /api/nodes needs the monitoring tag: a user tagged management gets 401 there (and only
  // there), which leaves the alarms unknown rather than failing the whole snapshot.
  const nodesOrUnknown = api.nodes().catch((err: unknown) => {
    if (err instanceof ManagementError && err.status === 401) return undefined;
    throw err;
  });
  const [queues, connections, nodes] = await Promise.all([api.queues(vhost), api.connections(), nodesOrUnknown]);
  const byName = new Map(queues.map((q) => [q.name, q]));
  const pattern = options.pattern;
  const matches =
    pattern === undefined || pattern === '' ? () => true : pattern.includes('*') ? (n: string) => namePattern(pattern).test(n) : (n: string) => n.includes(pattern);
  const shown = queues.filter((q) => !(q.name.endsWith(DLQ_SUFFIX) && byName.has(q.name.slice(0, -DLQ_SUFFIX.length))) && matches(q.name));
  return {
    vhost,
    at: new Date(),
    queues: shown.map((q) => snapshot(q, byName.get(q.name + DLQ_SUFFIX))).sort((a, b) => a.name.localeCompare(b.name)),
    connections: connections
      .filter((c) => c.client_properties?.['product'] === 'warren' && (c.vhost === undefined || c.vhost === vhost))
      .map((c) => ({
        name: str(c.client_properties?.['connection_name']) ?? c.name,
        user: c.user,
        vhost: c.vhost,
        state: c.state,
        channels: c.channels ?? 0,
        version: str(c.client_properties?.['version']),
        consumers: (str(c.client_properties?.['consumers']) ?? '').split(',').filter((s) => s !== ''),
      }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    alarms: nodes?.flatMap((n) => [...(n.mem_alarm === true ? [`memory alarm on ${n.name}`] : []), ...(n.disk_free_alarm === true ? [`disk alarm on ${n.name}`] : [])]),
  };
}

function snapshot(q: ManagedQueue, dlq: ManagedQueue | undefined): QueueSnapshot {
  return {
    name: q.name,
    type: q.type ?? str(q.arguments?.['x-queue-type']) ?? 'classic',
    state: q.state,
    messages: q.messages ?? 0,
    ready: q.messages_ready ?? 0,
    unacked: q.messages_unacknowledged ?? 0,
    consumers: q.consumers ?? 0,
    publishRate: rate(q.message_stats?.publish_details),
    deliverRate: rate(q.message_stats?.deliver_get_details),
    ackRate: rate(q.message_stats?.ack_details),
    deadLetters: dlq !== undefined ? { queue: dlq.name, messages: dlq.messages ?? 0 } : undefined,
  };
}
