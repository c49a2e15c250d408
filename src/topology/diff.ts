import type { DeclaredExchange, DeclaredQueue } from '../define/topology.js';
import type { ArgumentDifference } from '../support/errors.js';
import type { ManagedEntity } from './management.js';

/** An exchange as the management API would show it, from its declaration. */
export function exchangeShape(e: DeclaredExchange): ManagedEntity {
  return { type: e.type, durable: e.durable, auto_delete: e.autoDelete, internal: e.internal, arguments: { ...e.arguments } };
}

/** A queue as the management API would show it, from its declaration. */
export function queueShape(q: DeclaredQueue): ManagedEntity {
  return { durable: q.durable, auto_delete: q.autoDelete, exclusive: q.exclusive, arguments: { ...q.arguments } };
}

const BROKER_DEFAULTS: Record<string, unknown> = { 'x-queue-type': 'classic' };

const FLAG_NAMES: Record<string, string> = { type: 'type', durable: 'durable', auto_delete: 'autoDelete', exclusive: 'exclusive', internal: 'internal' };

/** The differences between what warren declares and what the management API reports. */
export function diff(declared: ManagedEntity, actual: ManagedEntity): ArgumentDifference[] {
  const out: ArgumentDifference[] = [];
  for (const [key, label] of Object.entries(FLAG_NAMES)) {
    const d = (declared as Record<string, unknown>)[key];
    const a = (actual as Record<string, unknown>)[key];
    if (d !== undefined && a !== undefined && d !== a) out.push({ argument: label, declared: d, actual: a });
  }
  // A default the broker fills in is not a difference (4.x lists x-queue-type on every queue; 3.x
  // only where it was declared).
  const dArgs = { ...BROKER_DEFAULTS, ...declared.arguments };
  const aArgs = { ...BROKER_DEFAULTS, ...actual.arguments };
  for (const key of new Set([...Object.keys(dArgs), ...Object.keys(aArgs)])) {
    const d = dArgs[key];
    const a = aArgs[key];
    if (JSON.stringify(d) !== JSON.stringify(a)) out.push({ argument: key, declared: d, actual: a });
  }
  return out;
}

/** Without the management API, the broker's own text names one differing argument: use it. */
export function differenceFromText(declared: ManagedEntity, text: string): ArgumentDifference[] {
  const m = /inequivalent arg '([^']+)'.*?(?:but current is (.*))?$/s.exec(text);
  if (!m?.[1]) return [];
  const argument = m[1];
  const flag = Object.entries(FLAG_NAMES).find(([k]) => k === argument);
  const declaredValue = flag !== undefined ? (declared as Record<string, unknown>)[argument] : declared.arguments?.[argument];
  // RabbitMQ quotes a flag's value ('topic'): the quotes are its wording, not the value.
  const actual = m[2] === undefined ? 'unknown' : m[2].replace(/^'(.*)'$/s, '$1');
  return [{ argument: flag?.[1] ?? argument, declared: declaredValue, actual }];
}
