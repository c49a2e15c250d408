import { describe, expect, it } from 'vitest';
import { needs, permissionError, type Operation } from '../../src/amqp/permissions.js';
import { accessRefusal, refusedExchange } from '../../src/amqp/reply-codes.js';
import { PermissionError } from '../../src/index.js';

/** A channel close as amqplib reports it. */
function closed(text: string, code = 403): Error {
  return Object.assign(new Error(`Channel closed by server: ${code} (ACCESS-REFUSED) with message "${text}"`), { code });
}

// The texts RabbitMQ 3.10 and 4.0.5 sent in test/integration/permissions.test.ts.
const v310 = closed("ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'shop' refused for user 'billing'");
const v4 = closed("ACCESS_REFUSED - write access to exchange 'amq.default' in vhost 'shop' refused for user 'billing'");

describe('reading a 403 refusal', () => {
  it('reads the resource, name, vhost and user from both brokers, and the permission where 4.x names it', () => {
    expect(accessRefusal(v310)).toEqual({ permission: undefined, resource: 'exchange', name: 'amq.default', vhost: 'shop', user: 'billing' });
    expect(accessRefusal(v4)).toEqual({ permission: 'write', resource: 'exchange', name: 'amq.default', vhost: 'shop', user: 'billing' });
  });

  it('is not fooled by other 403s or other codes', () => {
    expect(accessRefusal(closed("ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix 'amq.*'"))).toBeUndefined();
    expect(accessRefusal(closed("NOT_FOUND - no queue 'q' in vhost '/'", 404))).toBeUndefined();
  });

  it('names the default exchange as a publish does ("") when the broker refuses amq.default', () => {
    expect(refusedExchange(v310)).toBe('');
    expect(refusedExchange(closed("ACCESS_REFUSED - access to exchange 'orders' in vhost 'shop' refused for user 'billing'"))).toBe('orders');
    expect(refusedExchange(closed("NOT_FOUND - no exchange 'amq.default' in vhost '/'", 404))).toBe('amq.default');
  });
});

describe('the permission an operation was refused', () => {
  const declareWait: Operation = { kind: 'declare-queue', queue: 'q.retry.1s', deadLetterExchange: '', role: 'retry wait queue' };

  it('lists what each operation needs, in the order the broker checks', () => {
    expect(needs(declareWait)).toEqual([
      { permission: 'configure', resource: 'queue', name: 'q.retry.1s' },
      { permission: 'write', resource: 'exchange', name: 'amq.default' },
      { permission: 'read', resource: 'queue', name: 'q.retry.1s' },
    ]);
    expect(needs({ kind: 'bind-queue', queue: 'q', exchange: 'x', routingKey: 'k' })).toEqual([
      { permission: 'write', resource: 'queue', name: 'q' },
      { permission: 'read', resource: 'exchange', name: 'x' },
    ]);
  });

  it('takes the permission from the resource when only one on it could be refused (3.x)', () => {
    const err = permissionError(v310, declareWait);
    expect(err).toBeInstanceOf(PermissionError);
    expect(err).toMatchObject({ code: 'PERMISSION_REFUSED', permission: 'write', resource: 'exchange', entity: 'amq.default', vhost: 'shop', user: 'billing', alternatives: [] });
    expect(err?.message).toContain("RabbitMQ refused write permission on exchange 'amq.default' in vhost 'shop' to user 'billing'");
    expect(err?.message).toContain("while declaring retry wait queue 'q.retry.1s' with dead-letter exchange '' (which needs configure and read on queue 'q.retry.1s', write on exchange 'amq.default')");
  });

  it('says so when 3.x leaves two permissions on the same queue possible, and takes 4.x at its word', () => {
    const onQueue = "access to queue 'q.retry.1s' in vhost 'shop' refused for user 'billing'";
    const old = permissionError(closed(`ACCESS_REFUSED - ${onQueue}`), declareWait);
    expect(old).toMatchObject({ permission: 'configure', alternatives: ['read'] });
    expect(old?.message).toContain('refused configure (or read: RabbitMQ before 4.0 does not say which) permission');
    expect(permissionError(closed(`ACCESS_REFUSED - read ${onQueue}`), declareWait)).toMatchObject({ permission: 'read', alternatives: [] });
  });

  it('is undefined for an error that is not a permission refusal', () => {
    expect(permissionError(closed("NOT_FOUND - no queue 'q' in vhost '/'", 404), { kind: 'consume', queue: 'q', consumer: 'c' })).toBeUndefined();
  });
});
