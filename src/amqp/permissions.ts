/**
 * Which RabbitMQ permission each operation warren performs needs, on which exchange or queue, and
 * the PermissionError a refusal of one becomes. The table is RabbitMQ's ("How Permissions Work" in
 * its access-control guide), checked against 3.10 and 4.0.5 by test/integration/permissions.test.ts:
 *
 * | operation                          | configure | write                   | read          |
 * |------------------------------------|-----------|-------------------------|---------------|
 * | declare an exchange                | exchange  | its alternate exchange  | exchange, if it has an alternate exchange |
 * | declare a queue                    | queue     | its dead-letter exchange| queue, if it has a dead-letter exchange   |
 * | bind a queue to an exchange        |           | queue                   | exchange      |
 * | publish                            |           | exchange                |               |
 * | consume, get, purge                |           |                         | queue         |
 * | passive declare (check), ack, nack, qos, confirm.select | — | — | — |
 *
 * An entity that exists already is re-declared with configure alone (the alternate / dead-letter
 * checks are made only when it is created). The default exchange '' is `amq.default` to the broker.
 */
import { PermissionError, type Permission, type Refusal } from '../support/errors.js';
import { accessRefusal } from './reply-codes.js';

/** One permission on one entity. */
export interface Access {
  readonly permission: Permission;
  readonly resource: 'exchange' | 'queue';
  readonly name: string;
}

/** What warren was doing when the broker refused it. */
export type Operation =
  | { readonly kind: 'declare-exchange'; readonly exchange: string; readonly alternateExchange: string | undefined }
  | { readonly kind: 'declare-queue'; readonly queue: string; readonly deadLetterExchange: string | undefined; readonly role?: string }
  | { readonly kind: 'bind-queue'; readonly queue: string; readonly exchange: string; readonly routingKey: string }
  | { readonly kind: 'publish'; readonly exchange: string; readonly routingKey: string; readonly what: string }
  | { readonly kind: 'consume'; readonly queue: string; readonly consumer: string }
  | { readonly kind: 'get' | 'purge'; readonly queue: string };

/** The broker's name of an exchange: the default exchange '' is `amq.default`. */
export function exchangeName(name: string): string {
  return name === '' ? 'amq.default' : name;
}

/** Every permission `op` needs, in the order the broker checks them. */
export function needs(op: Operation): Access[] {
  const ex = (permission: Permission, name: string): Access => ({ permission, resource: 'exchange', name: exchangeName(name) });
  const q = (permission: Permission, name: string): Access => ({ permission, resource: 'queue', name });
  switch (op.kind) {
    case 'declare-exchange':
      return op.alternateExchange === undefined ? [ex('configure', op.exchange)] : [ex('configure', op.exchange), ex('write', op.alternateExchange), ex('read', op.exchange)];
    case 'declare-queue':
      return op.deadLetterExchange === undefined ? [q('configure', op.queue)] : [q('configure', op.queue), ex('write', op.deadLetterExchange), q('read', op.queue)];
    case 'bind-queue':
      return [q('write', op.queue), ex('read', op.exchange)];
    case 'publish':
      return [ex('write', op.exchange)];
    case 'consume':
    case 'get':
    case 'purge':
      return [q('read', op.queue)];
  }
}

/** The operation in words, for an error message. */
export function describeOperation(op: Operation): string {
  switch (op.kind) {
    case 'declare-exchange':
      return `declaring exchange '${op.exchange}'${op.alternateExchange !== undefined ? ` with alternate exchange '${op.alternateExchange}'` : ''}`;
    case 'declare-queue':
      return `declaring ${op.role ?? 'queue'} '${op.queue}'${op.deadLetterExchange !== undefined ? ` with dead-letter exchange '${op.deadLetterExchange}'` : ''}`;
    case 'bind-queue':
      return `binding queue '${op.queue}' to exchange '${op.exchange}' with routing key '${op.routingKey}'`;
    case 'publish':
      return `publishing ${op.what} to exchange '${op.exchange}' with routing key '${op.routingKey}'`;
    case 'consume':
      return `attaching consumer '${op.consumer}' to queue '${op.queue}'`;
    case 'get':
      return `reading from queue '${op.queue}'`;
    case 'purge':
      return `purging queue '${op.queue}'`;
  }
}

/** "configure and read on queue 'q', write on exchange 'amq.default'". */
function describeNeeds(list: readonly Access[]): string {
  const groups = new Map<string, Permission[]>();
  for (const a of list) {
    const key = `${a.resource} '${a.name}'`;
    const perms = groups.get(key) ?? [];
    if (!perms.includes(a.permission)) perms.push(a.permission);
    groups.set(key, perms);
  }
  return [...groups].map(([entity, perms]) => `${perms.join(' and ')} on ${entity}`).join(', ');
}

/**
 * The PermissionError for `err` if it is a 403 refusing `op` a permission on an exchange or queue;
 * undefined for any other error. When the broker does not name the permission (before 4.0) it is
 * the one `op` needs on that entity, or the first the broker checks with the others as alternatives.
 */
export function permissionError(err: unknown, op: Operation): PermissionError | undefined {
  const refusal = accessRefusal(err);
  if (refusal === undefined) return undefined;
  const list = needs(op);
  const onEntity = list.filter((a) => a.resource === refusal.resource && a.name === refusal.name);
  const candidates = (onEntity.length > 0 ? onEntity : list.filter((a) => a.resource === refusal.resource)).map((a) => a.permission);
  const permission = refusal.permission ?? candidates[0];
  if (permission === undefined) return undefined;
  const alternatives = refusal.permission === undefined ? candidates.slice(1) : [];
  const refused: Refusal & { permission: Permission } = { ...refusal, permission };
  return new PermissionError(refused, describeOperation(op), describeNeeds(list), { cause: err, alternatives });
}
