import type { ArgumentDifference } from '../support/errors.js';
import { diff } from './diff.js';
import type { ManagedEntity, ManagementClient } from './management.js';

/** What an app expects on the broker: every entity by name with the shape the management API would show. */
export interface ExpectedTopology {
  exchanges: { name: string; shape: ManagedEntity }[];
  queues: { name: string; shape: ManagedEntity }[];
  bindings: { exchange: string; queue: string; routingKey: string; arguments: Record<string, unknown> }[];
  /** Name patterns (`*` matches anything) of the queues and exchanges the app owns: those not declared are reported as extra. */
  owns: string[];
}

/** One queue, exchange or binding that is missing from the broker, or there but not declared. */
export interface DriftEntity {
  kind: 'exchange' | 'queue' | 'binding';
  /** The entity's name; for a binding `exchange → queue (routing key)`. */
  name: string;
}

/** The differences between an app's declared topology and the live broker. */
export interface TopologyDrift {
  vhost: string;
  /** Declared, not on the broker: `warren topology apply` (or starting the app) creates them. */
  missing: DriftEntity[];
  /** On the broker under a name the app owns (or bound to its queues), not declared: left over, and never deleted by warren. */
  extra: DriftEntity[];
  /** On the broker with other properties than declared: declaring them fails with 406 (TOPOLOGY_MISMATCH), as a deploy would. */
  different: (DriftEntity & { differences: ArgumentDifference[] })[];
  /** No drift at all. */
  inSync: boolean;
}

export function bindingName(exchange: string, queue: string, routingKey: string): string {
  return `${exchange} → ${queue} (${routingKey === '' ? "''" : routingKey})`;
}

/** `*` matches any run of characters; everything else literally. */
export function namePattern(pattern: string): RegExp {
  return new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
}

/** Compares what an app declares with what the management API lists for `vhost`. Throws ManagementError. */
export async function findDrift(expected: ExpectedTopology, management: ManagementClient, vhost: string): Promise<TopologyDrift> {
  const [queues, exchanges, bindings] = await Promise.all([management.queues(vhost), management.exchanges(vhost), management.bindings(vhost)]);
  const owned = expected.owns.map(namePattern);
  const isOwned = (name: string): boolean => owned.some((re) => re.test(name));
  const missing: DriftEntity[] = [];
  const extra: DriftEntity[] = [];
  const different: TopologyDrift['different'] = [];

  const compare = (kind: 'exchange' | 'queue', want: ExpectedTopology['queues'], have: { name: string }[]): void => {
    const live = new Map(have.map((e) => [e.name, e as ManagedEntity]));
    const declared = new Set(want.map((e) => e.name));
    for (const e of want) {
      const actual = live.get(e.name);
      if (actual === undefined) missing.push({ kind, name: e.name });
      else {
        const differences = diff(e.shape, actual);
        if (differences.length > 0) different.push({ kind, name: e.name, differences });
      }
    }
    for (const name of live.keys()) {
      if (!declared.has(name) && name !== '' && !name.startsWith('amq.') && isOwned(name)) extra.push({ kind, name });
    }
  };
  compare('exchange', expected.exchanges, exchanges);
  compare('queue', expected.queues, queues);

  // A binding is its exchange, queue, routing key and arguments (a headers exchange matches on those).
  const key = (exchange: string, queue: string, routingKey: string, args: Record<string, unknown> = {}): string =>
    JSON.stringify([exchange, queue, routingKey, Object.entries(args).sort(([a], [b]) => a.localeCompare(b))]);
  const liveBindings = new Set(bindings.filter((b) => b.destination_type === 'queue' && b.source !== '').map((b) => key(b.source, b.destination, b.routing_key, b.arguments)));
  const declaredBindings = new Set(expected.bindings.map((b) => key(b.exchange, b.queue, b.routingKey, b.arguments)));
  const queuesOfApp = new Set(expected.queues.map((q) => q.name));
  for (const b of expected.bindings) {
    if (!liveBindings.has(key(b.exchange, b.queue, b.routingKey, b.arguments))) missing.push({ kind: 'binding', name: bindingName(b.exchange, b.queue, b.routingKey) });
  }
  for (const b of bindings) {
    if (b.destination_type !== 'queue' || b.source === '') continue;
    if ((queuesOfApp.has(b.destination) || isOwned(b.destination)) && !declaredBindings.has(key(b.source, b.destination, b.routing_key, b.arguments))) {
      extra.push({ kind: 'binding', name: bindingName(b.source, b.destination, b.routing_key) });
    }
  }
  return { vhost, missing, extra, different, inSync: missing.length + extra.length + different.length === 0 };
}
