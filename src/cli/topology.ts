import { diffApp, planApp, type PlannedEntity, type TopologyDrift } from '../index.js';
import { makeLogger } from './arguments.js';
import { appArgument, loadApp } from './load-app.js';
import { closing, connectApp, resolveTarget, type ConnectionFlags } from './target.js';
import { Exit, ExitCode } from './exit.js';
import { printJson, table } from './output.js';

export interface TopologyFlags extends ConnectionFlags {
  app?: string;
  json?: boolean;
}

/** The entity's type (topic, quorum, …) and flags, for a plan line. */
function kindOf(e: PlannedEntity): string {
  const d = e.declared;
  if (d === undefined || e.kind === 'binding') return '';
  const type = e.kind === 'queue' ? (d.arguments?.['x-queue-type'] as string | undefined) ?? 'classic' : d.type;
  const flags = [type, d.durable === false ? 'transient' : undefined, d.auto_delete === true ? 'auto-delete' : undefined, d.exclusive === true ? 'exclusive' : undefined, d.internal === true ? 'internal' : undefined];
  return flags.filter((f) => f !== undefined).join(' ');
}

/** The arguments sent (but x-queue-type, shown as the type), and why warren declares it. */
function argumentsOf(e: PlannedEntity): string {
  const args = Object.entries(e.declared?.arguments ?? {}).filter(([k]) => k !== 'x-queue-type');
  const text = args.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  return e.note !== undefined ? `${text}${text !== '' ? '  ' : ''}# ${e.note}` : text;
}

/** `warren topology plan`: every declaration the app makes when it starts, in order. Touches no broker. */
export async function plan(appPath: string | undefined, flags: TopologyFlags): Promise<void> {
  const app = await loadApp(appArgument(appPath, flags.app));
  const entities = planApp(app);
  if (flags.json === true) return printJson({ app: app.name, entities });
  process.stdout.write(`app '${app.name}' declares ${entities.length} entities:\n`);
  process.stdout.write(table(['KIND', 'NAME', 'TYPE', 'ARGUMENTS'], entities.map((e) => [e.kind, e.name, kindOf(e), argumentsOf(e)])) + '\n');
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** A declared or actual value as JSON; an absent one in words. */
function shown(value: unknown): string {
  return value === undefined ? 'none' : JSON.stringify(value);
}

function printDrift(drift: TopologyDrift): void {
  if (drift.inSync) {
    process.stdout.write(`in sync: every declared entity exists on vhost '${drift.vhost}' as declared; nothing extra\n`);
    return;
  }
  const rows = [
    ...drift.missing.map((e) => ['missing', e.kind, e.name, 'declared, not on the broker: `warren topology apply` creates it']),
    ...drift.different.map((e) => [
      'different',
      e.kind,
      e.name,
      e.differences.map((d) => `${d.argument}: ${d.declared === undefined ? 'not declared' : `declared ${shown(d.declared)}`}, broker has ${shown(d.actual)}`).join('; '),
    ]),
    ...drift.extra.map((e) => ['extra', e.kind, e.name, 'on the broker, not declared (warren never deletes it)']),
  ];
  process.stdout.write(`drift on vhost '${drift.vhost}': ${drift.missing.length} missing, ${drift.different.length} different, ${drift.extra.length} extra\n`);
  process.stdout.write(table(['DRIFT', 'KIND', 'NAME', 'DETAIL'], rows) + '\n');
  if (drift.different.length > 0) {
    process.stdout.write('a different entity fails the app at start with TOPOLOGY_MISMATCH (406): change the declaration, or delete the entity once it is drained\n');
  }
}

/** `warren topology diff`: the declared topology against the live broker; exit 3 on drift. */
export async function diff(appPath: string | undefined, flags: TopologyFlags): Promise<void> {
  const app = await loadApp(appArgument(appPath, flags.app));
  const target = resolveTarget(flags, app);
  const drift = await diffApp(app, { managementUrl: target.managementUrl, vhost: target.vhost, ...(target.managementCredentials !== undefined ? { credentials: target.managementCredentials } : {}) });
  if (flags.json === true) printJson({ app: app.name, ...drift });
  else printDrift(drift);
  if (!drift.inSync) throw new Exit(ExitCode.drift);
}

/** `warren topology apply`: declares what is missing; never deletes or changes. A mismatch fails with every difference listed. */
export async function apply(appPath: string | undefined, flags: TopologyFlags): Promise<void> {
  const app = await loadApp(appArgument(appPath, flags.app));
  const target = resolveTarget(flags, app);
  // Warnings show: an entity used as it is (an earlier warren's wait queue) is worth knowing about.
  const warren = await connectApp(app, target, `${app.name}-cli`, makeLogger('warn', 2), { topology: app.topology, messages: app.messages });
  await closing(warren, (w) => w.declare(app.consumers));
  const entities = planApp(app);
  const count = (kind: PlannedEntity['kind']): number => entities.filter((e) => e.kind === kind).length;
  const summary = { app: app.name, vhost: target.vhost, exchanges: count('exchange'), queues: count('queue'), bindings: count('binding') };
  if (flags.json === true) printJson(summary);
  else process.stdout.write(`declared on vhost '${target.vhost}': ${plural(summary.exchanges, 'exchange')}, ${plural(summary.queues, 'queue')}, ${plural(summary.bindings, 'binding')} (existing ones unchanged)\n`);
}
