import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { defineConsumer, defineMessage, type ConnectOptions, type Duration, type RetryPolicy } from '../../src/index.js';

const Ping = defineMessage({ name: 'ping', exchange: '', routingKey: 'pings', schema: z.object({ id: z.string() }) });

describe('durations and retry policies are typed', () => {
  it('accepts a readonly (as const) list of delays', () => {
    const delays = ['1s', '10s', '1m'] as const;
    const consumer = defineConsumer({ queue: 'pings', message: Ping, retry: { maxAttempts: 4, delays }, handle: () => undefined });
    expectTypeOf(consumer.queue).toEqualTypeOf<string>();
    expectTypeOf(delays).toExtend<RetryPolicy['delays']>();
  });

  it('refuses a malformed duration at compile time', () => {
    // @ts-expect-error '200 ms' (with a space) is not a Duration
    const bad: Duration = '200 ms';
    // @ts-expect-error a unit warren does not know
    const days: Duration = '2d';
    const good: Duration[] = [200, '200ms', '1.5s', '10m', '1h'];
    expectTypeOf(good).toEqualTypeOf<Duration[]>();
    void bad;
    void days;
  });

  it('types every duration option of connect() as a Duration', () => {
    expectTypeOf<NonNullable<ConnectOptions['heartbeat']>>().toEqualTypeOf<Duration>();
    expectTypeOf<NonNullable<NonNullable<ConnectOptions['publisher']>['timeout']>>().toEqualTypeOf<Duration>();
    expectTypeOf<NonNullable<NonNullable<ConnectOptions['retry']>['delays']>>().toEqualTypeOf<readonly Duration[]>();
  });
});
