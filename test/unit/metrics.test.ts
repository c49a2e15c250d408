import diagnostics from 'node:diagnostics_channel';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionStateChange, ConsumeTrace, Health, PublishTrace, Warren } from '../../src/index.js';
import { WarrenChannel } from '../../src/index.js';
import { registerMetrics, type WarrenMetrics } from '../../src/metrics/index.js';

const publish = diagnostics.tracingChannel(WarrenChannel.publish);
const consume = diagnostics.tracingChannel(WarrenChannel.consume);
let open: WarrenMetrics[] = [];

afterEach(() => {
  for (const m of open) m.close();
  open = [];
});

function setup(): { registry: Registry; metrics: WarrenMetrics } {
  const registry = new Registry();
  const metrics = registerMetrics(registry);
  open.push(metrics);
  return { registry, metrics };
}

/** The value of a metric with exactly these labels (0 when it has none yet). */
async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l) && Object.keys(x.labels).length === Object.keys(labels).length);
  return v?.value ?? 0;
}

const trace = (extra: Partial<PublishTrace>): PublishTrace => ({ client: 'billing', contract: 'order.placed', exchange: 'orders', routingKey: 'order.placed', messageId: 'm', headers: {}, ...extra });
const labels = { client: 'billing', exchange: 'orders', message: 'order.placed' };

describe('registerMetrics', () => {
  it('counts an accepted publish by how it settled, and one refused before sending apart from them', async () => {
    expect.hasAssertions();
    const { registry } = setup();
    const accepted = (extra: Partial<PublishTrace>): void => {
      const t = trace({ accepted: true });
      publish.asyncStart.publish(t);
      Object.assign(t, extra);
      publish.end.publish(t);
    };
    accepted({ outcome: 'confirmed', durationMs: 3 });
    accepted({ outcome: 'returned', durationMs: 2, error: Object.assign(new Error('unroutable'), { code: 'UNROUTABLE' }) });
    // Accepted and not settled yet (the broker is away): counted as published already, as health() does.
    publish.asyncStart.publish(trace({ accepted: true }));
    publish.end.publish(trace({ outcome: 'failed', error: Object.assign(new Error('invalid'), { code: 'VALIDATION_FAILED' }) }));
    expect(await value(registry, 'warren_published_total', labels)).toBe(3);
    expect(await value(registry, 'warren_publish_settled_total', { ...labels, outcome: 'confirmed', code: '' })).toBe(1);
    expect(await value(registry, 'warren_publish_settled_total', { ...labels, outcome: 'returned', code: 'UNROUTABLE' })).toBe(1);
    expect(await value(registry, 'warren_publish_refused_total', { ...labels, code: 'VALIDATION_FAILED' })).toBe(1);
    expect(await registry.getSingleMetricAsString('warren_publish_duration_seconds')).toContain('warren_publish_duration_seconds_count{client="billing",exchange="orders",message="order.placed",outcome="confirmed"} 1');
  });

  it('counts deliveries and what became of them from the tracked clients’ health(): the same numbers', async () => {
    expect.hasAssertions();
    const { registry, metrics } = setup();
    const consumer = {
      name: 'charge', queue: 'billing.orders', attached: true, unsettled: 0,
      delivered: 9, acked: 4, retried: 2, requeued: 1, rejected: 0,
      deadLettered: { invalid: 1, 'non-retryable': 1, 'retries-exhausted': 0, 'handler-failed': 0, handler: 0, 'retry-failed': 0 },
    };
    const health = (): Partial<Health> => ({
      publisher: { inFlight: 0, buffered: 0 } as Health['publisher'],
      consumers: [consumer] as unknown as Health['consumers'],
      connections: { publish: { state: 'open', since: new Date(), url: undefined }, consume: undefined },
    });
    metrics.track({ name: 'billing', health } as unknown as Warren);
    const c = { client: 'billing', queue: 'billing.orders', consumer: 'charge' };
    expect(await value(registry, 'warren_delivered_total', c)).toBe(9);
    expect(await value(registry, 'warren_consumed_total', { ...c, action: 'ack', reason: '' })).toBe(4);
    expect(await value(registry, 'warren_consumed_total', { ...c, action: 'retry', reason: '' })).toBe(2);
    expect(await value(registry, 'warren_consumed_total', { ...c, action: 'requeue', reason: '' })).toBe(1);
    expect(await value(registry, 'warren_consumed_total', { ...c, action: 'dead-letter', reason: 'invalid' })).toBe(1);
    consumer.delivered = 10;
    expect(await value(registry, 'warren_delivered_total', c)).toBe(10);
  });

  it('observes how long a delivery took, by outcome, in cumulative buckets with +Inf', async () => {
    expect.hasAssertions();
    const { registry } = setup();
    for (const [outcome, ms] of [['handled', 3], ['handled', 40], ['failed', 7000]] as const) {
      consume.end.publish({ client: 'billing', consumer: 'charge', queue: 'billing.orders', contract: 'c', exchange: 'e', routingKey: 'k', messageId: 'm', attempt: 1, redelivered: false, headers: {}, outcome, action: 'ack', durationMs: ms } satisfies ConsumeTrace);
    }
    const text = await registry.getSingleMetricAsString('warren_consume_duration_seconds');
    const line = (le: string, outcome: string): string => `warren_consume_duration_seconds_bucket{client="billing",queue="billing.orders",consumer="charge",outcome="${outcome}",le="${le}"}`;
    expect(text).toContain(`${line('0.0025', 'handled')} 0`);
    expect(text).toContain(`${line('0.005', 'handled')} 1`);
    expect(text).toContain(`${line('0.05', 'handled')} 2`);
    expect(text).toContain(`${line('+Inf', 'handled')} 2`);
    expect(text).toContain(`${line('5', 'failed')} 0`);
    expect(text).toContain(`${line('10', 'failed')} 1`);
    expect(text).toContain('warren_consume_duration_seconds_count{client="billing",queue="billing.orders",consumer="charge",outcome="failed"} 1');
  });

  it('counts a reconnect (open again after a loss, not the first open, not the end of a block) and the seconds blocked', async () => {
    expect.hasAssertions();
    const { registry } = setup();
    const change = (state: ConnectionStateChange['state'], previous: ConnectionStateChange['previous']): void =>
      diagnostics.channel(WarrenChannel.connection).publish({ client: 'billing', role: 'publish', state, previous, url: undefined, reason: undefined } satisfies ConnectionStateChange);
    change('open', 'connecting');
    change('blocked', 'open');
    await new Promise((r) => setTimeout(r, 30));
    change('open', 'blocked');
    expect(await value(registry, 'warren_reconnects_total', { client: 'billing', role: 'publish' })).toBe(0);
    expect(await value(registry, 'warren_blocked_seconds_total', { client: 'billing', role: 'publish' })).toBeGreaterThanOrEqual(0.025);
    change('connecting', 'open');
    change('open', 'connecting');
    expect(await value(registry, 'warren_reconnects_total', { client: 'billing', role: 'publish' })).toBe(1);
  });

  it('reads the gauges from the tracked clients at each scrape', async () => {
    expect.hasAssertions();
    const { registry, metrics } = setup();
    let inFlight = 4;
    const health = (): Partial<Health> => ({
      publisher: { inFlight, buffered: 7 } as Health['publisher'],
      consumers: [{ name: 'charge', queue: 'billing.orders', attached: true, unsettled: 2, delivered: 0, acked: 0, retried: 0, requeued: 0, rejected: 0, deadLettered: {} }] as unknown as Health['consumers'],
      connections: { publish: { state: 'open', since: new Date(), url: undefined }, consume: { state: 'blocked', since: new Date(), url: undefined } },
    });
    metrics.track({ name: 'billing', health } as unknown as Warren);
    expect(await value(registry, 'warren_publish_in_flight', { client: 'billing' })).toBe(4);
    inFlight = 1;
    expect(await value(registry, 'warren_publish_in_flight', { client: 'billing' })).toBe(1);
    expect(await value(registry, 'warren_publish_buffered', { client: 'billing' })).toBe(7);
    expect(await value(registry, 'warren_consumer_unsettled', { client: 'billing', queue: 'billing.orders', consumer: 'charge' })).toBe(2);
    expect(await value(registry, 'warren_connection_state', { client: 'billing', role: 'consume', state: 'blocked' })).toBe(1);
    expect(await value(registry, 'warren_connection_state', { client: 'billing', role: 'consume', state: 'open' })).toBe(0);
  });

  it('refuses a second registration on the same registry with a ConfigError (another prefix is fine)', () => {
    const { registry } = setup();
    expect(() => registerMetrics(registry)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    open.push(registerMetrics(registry, { prefix: 'shop_warren_' }));
  });

  it('close() stops counting and removes its metrics, so it can be registered again', async () => {
    expect.hasAssertions();
    const { registry, metrics } = setup();
    metrics.close();
    open = [];
    publish.end.publish(trace({ accepted: true, outcome: 'confirmed' }));
    expect((await registry.getMetricsAsJSON()).map((m) => m.name)).toEqual([]);
    expect(publish.end.hasSubscribers).toBe(false);
    const again = registerMetrics(registry);
    open.push(again);
    expect(await value(registry, 'warren_published_total', labels)).toBe(0);
    // A second close() of the first leaves the second's metrics alone.
    metrics.close();
    expect((await registry.getMetricsAsJSON()).map((m) => m.name)).toContain('warren_published_total');
  });
});
