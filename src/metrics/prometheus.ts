import diagnostics from 'node:diagnostics_channel';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Warren } from '../client/warren.js';
import { ChannelName, type ConnectionStateChange, type ConsumeTrace, type PublishTrace } from '../instrument/channels.js';
import { ConfigError, errorCode } from '../support/errors.js';
import { Tally, tallyCounter, TallyHistogram } from './tally.js';

/**
 * warren's Prometheus metrics: subscribers of its diagnostics channels (the same events the
 * counters of `health()` come from, so the two always agree) plus gauges read from the clients
 * you `track()`. Labels come from the app's own names (client, exchange, contract, queue,
 * consumer, outcome, action, reason, error code): never from message data, never a credential.
 */
export interface WarrenMetrics {
  /** Adds a client's buffer, window, unsettled deliveries and connection states to the gauges. */
  track(warren: Warren): void;
  /** Unsubscribes from the channels and removes warren's metrics from the registry. */
  close(): void;
}

export interface MetricsOptions {
  /** Prepended to every metric name. Default 'warren_'. */
  prefix?: string;
  /** Histogram buckets, in seconds. Default: 1 ms … 10 s. */
  buckets?: number[];
}

const DEFAULT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STATES = ['connecting', 'open', 'blocked', 'closing', 'closed'] as const;


/**
 * Registers warren's metrics on `registry` and starts counting. Opt-in: nothing is counted (and
 * nothing allocated on the message path) until this is called.
 *
 * @example
 * const registry = new Registry();
 * const metrics = registerMetrics(registry);
 * metrics.track(warren);
 * // serve `await registry.metrics()` on /metrics
 */
export function registerMetrics(registry: Registry, options: MetricsOptions = {}): WarrenMetrics {
  const p = options.prefix ?? 'warren_';
  if (registry.getSingleMetric(`${p}published_total`) !== undefined) {
    throw new ConfigError('registerMetrics()', [`warren's metrics are already on this registry (prefix '${p}'): close() the registration you have, or give another prefix`]);
  }
  // Sorted, distinct and finite (+Inf is always the last bucket), as Prometheus expects `le`.
  const buckets = [...new Set(options.buckets ?? DEFAULT_BUCKETS)].filter((b) => Number.isFinite(b)).sort((a, b) => a - b);
  const registers = [registry];
  const publishLabelNames = ['client', 'exchange', 'message'] as const;
  const consumeLabels = ['client', 'queue', 'consumer'] as const;

  // The counts on the message path are kept by Tally / TallyHistogram and read at each scrape.
  /** Every metric registered here: close() removes these (and not one of the same name registered since). */
  const mine: object[] = [];
  const own = <M extends object>(metric: M): M => {
    mine.push(metric);
    return metric;
  };
  const counter = (name: string, help: string, labelNames: readonly string[]): Tally => {
    const tally = new Tally();
    own(tallyCounter(tally, { name: p + name, help, labelNames, registry }));
    return tally;
  };
  const histogram = (name: string, help: string): TallyHistogram => {
    const h = own(new TallyHistogram(p + name, help, buckets));
    registry.registerMetric(h as unknown as Parameters<Registry['registerMetric']>[0]);
    return h;
  };
  const published = counter('published_total', 'publish() calls accepted (valid, taken into the buffer).', publishLabelNames);
  const publishSettled = counter(
    'publish_settled_total',
    'Accepted publishes by how they ended: confirmed, returned (unroutable), nacked, timed-out, failed (with the error code).',
    [...publishLabelNames, 'outcome', 'code'],
  );
  const publishRefused = counter('publish_refused_total', 'publish() calls refused before anything was sent (invalid, too large, buffer full, closed), by error code.', [...publishLabelNames, 'code']);
  const publishDuration = histogram('publish_duration_seconds', 'From publish() to the broker confirm (or failure) of an accepted publish.');
  const consumeDuration = histogram('consume_duration_seconds', 'From a delivery entering the consumer to its broker action (the handler, and a retry or dead-letter copy confirmed).');
  const reconnects = own(new Counter({ name: `${p}reconnects_total`, help: 'Connections opened again after being lost.', labelNames: ['client', 'role'], registers }));
  const blockedSeconds = own(new Counter({ name: `${p}blocked_seconds_total`, help: 'Seconds a connection spent blocked by a broker resource alarm (counted when it ends).', labelNames: ['client', 'role'], registers }));

  const tracked = new Set<Warren>();
  /** The tracked clients not closed: a closed one is forgotten, its series with it. */
  const live = (): Warren[] => {
    for (const w of tracked) if (w.health().connections.publish.state === 'closed') tracked.delete(w);
    return [...tracked];
  };
  /**
   * A gauge or counter whose values are read from each live tracked client at each scrape: the
   * gauges what is happening now, the counters the consumers' health() counts.
   */
  const fromHealth = (
    kind: 'gauge' | 'counter',
    name: string,
    help: string,
    labelNames: string[],
    read: (warren: Warren, put: (labels: Record<string, string>, value: number) => void) => void,
  ): void => {
    const options = { name: `${p}${name}`, help, labelNames, registers };
    own(
      kind === 'gauge'
        ? new Gauge({ ...options, collect() { this.reset(); for (const w of live()) read(w, (labels, value) => this.set(labels, value)); } })
        : new Counter({ ...options, collect() { this.reset(); for (const w of live()) read(w, (labels, value) => this.inc(labels, value)); } }),
    );
  };
  // The consumers' counts are their health() counts, read at each scrape: the same numbers, and
  // nothing to do per message. Deliveries a consumer puts back unstarted at its stop deadline,
  // or that its channel loses, are in them too.
  fromHealth('counter', 'delivered_total', 'Deliveries a consumer received (health().consumers[].delivered).', [...consumeLabels], (w, add) => {
    for (const c of w.health().consumers) add({ client: w.name, queue: c.queue, consumer: c.name }, c.delivered);
  });
  fromHealth(
    'counter',
    'consumed_total',
    'Deliveries settled, by broker action (ack, retry, requeue, reject, dead-letter) and, for a dead letter, its reason (invalid, non-retryable, retries-exhausted, …): health().consumers[] counts.',
    [...consumeLabels, 'action', 'reason'],
    (w, add) => {
      for (const c of w.health().consumers) {
        const labels = { client: w.name, queue: c.queue, consumer: c.name };
        add({ ...labels, action: 'ack', reason: '' }, c.acked);
        add({ ...labels, action: 'retry', reason: '' }, c.retried);
        add({ ...labels, action: 'requeue', reason: '' }, c.requeued);
        add({ ...labels, action: 'reject', reason: '' }, c.rejected);
        for (const [reason, n] of Object.entries(c.deadLettered)) add({ ...labels, action: 'dead-letter', reason }, n);
      }
    },
  );

  // Registered on the registry; read from the tracked clients at each scrape.
  fromHealth('gauge', 'publish_in_flight', 'Publishes sent and waiting for their confirm.', ['client'], (w, set) => set({ client: w.name }, w.health().publisher.inFlight));
  fromHealth('gauge', 'publish_buffered', 'Publishes waiting to be sent (disconnected, blocked, or the window full).', ['client'], (w, set) => set({ client: w.name }, w.health().publisher.buffered));
  fromHealth('gauge', 'consumer_unsettled', 'Deliveries neither acked nor nacked yet.', ['client', 'queue', 'consumer'], (w, set) => {
    for (const c of w.health().consumers) set({ client: w.name, queue: c.queue, consumer: c.name }, c.unsettled);
  });
  fromHealth('gauge', 'consumer_attached', '1 while the consumer is attached to its queue.', ['client', 'queue', 'consumer'], (w, set) => {
    for (const c of w.health().consumers) set({ client: w.name, queue: c.queue, consumer: c.name }, c.attached ? 1 : 0);
  });
  fromHealth('gauge', 'connection_state', '1 for the state each connection is in (connecting, open, blocked, closing, closed).', ['client', 'role', 'state'], (w, set) => {
    const { publish, consume } = w.health().connections;
    for (const [role, conn] of [['publish', publish], ['consume', consume]] as const) {
      if (conn !== undefined) for (const state of STATES) set({ client: w.name, role, state }, conn.state === state ? 1 : 0);
    }
  });


  const publishKey = (t: PublishTrace): string => `${t.client}\u0000${t.exchange}\u0000${t.contract}`;
  const publishLabels = (t: PublishTrace) => (): Record<string, string> => ({ client: t.client, exchange: t.exchange, message: t.contract });
  // Accepted (asyncStart) as health() counts it; settled or refused at the end.
  const onPublishAccepted = (message: unknown): void => {
    const t = message as PublishTrace;
    published.add(publishKey(t), publishLabels(t));
  };
  const onPublishEnd = (message: unknown): void => {
    const t = message as PublishTrace;
    const key = publishKey(t);
    const labels = publishLabels(t);
    const code = (errorCode(t.error) ?? '');
    if (t.accepted !== true) {
      publishRefused.add(`${key}\u0000${code}`, () => ({ ...labels(), code }));
      return;
    }
    const outcome = t.outcome ?? 'failed';
    publishSettled.add(`${key}\u0000${outcome}\u0000${code}`, () => ({ ...labels(), outcome, code }));
    if (t.durationMs !== undefined) publishDuration.observe(`${key}\u0000${outcome}`, () => ({ ...labels(), outcome }), t.durationMs / 1000);
  };
  const onConsumeEnd = (message: unknown): void => {
    const t = message as ConsumeTrace;
    if (t.durationMs === undefined) return;
    const outcome = t.outcome ?? 'failed';
    consumeDuration.observe(`${t.client}\u0000${t.queue}\u0000${t.consumer}\u0000${outcome}`, () => ({ client: t.client, queue: t.queue, consumer: t.consumer, outcome }), t.durationMs / 1000);
  };
  // Per connection: opened before (a later open is a reconnect), and when it was blocked.
  const connections = new Map<string, { opened: boolean; blockedAt: number | undefined }>();
  const onConnection = (message: unknown): void => {
    const c = message as ConnectionStateChange;
    const key = `${c.client}\u0000${c.role}`;
    const seen = connections.get(key) ?? { opened: false, blockedAt: undefined };
    connections.set(key, seen);
    if (c.state === 'open' && c.previous !== 'blocked') {
      if (seen.opened) reconnects.inc({ client: c.client, role: c.role });
      seen.opened = true;
    }
    if (c.state === 'blocked') seen.blockedAt = performance.now();
    else if (seen.blockedAt !== undefined) {
      blockedSeconds.inc({ client: c.client, role: c.role }, (performance.now() - seen.blockedAt) / 1000);
      seen.blockedAt = undefined;
    }
    if (c.state === 'closed') connections.delete(key);
  };

  const publish = diagnostics.tracingChannel(ChannelName.publish);
  const consume = diagnostics.tracingChannel(ChannelName.consume);
  publish.asyncStart.subscribe(onPublishAccepted);
  publish.end.subscribe(onPublishEnd);
  consume.end.subscribe(onConsumeEnd);
  diagnostics.subscribe(ChannelName.connection, onConnection);

  let closed = false;
  return {
    track(warren) {
      tracked.add(warren);
    },
    close() {
      if (closed) return;
      closed = true;
      publish.asyncStart.unsubscribe(onPublishAccepted);
      publish.end.unsubscribe(onPublishEnd);
      consume.end.unsubscribe(onConsumeEnd);
      diagnostics.unsubscribe(ChannelName.connection, onConnection);
      tracked.clear();
      for (const metric of mine) {
        const name = (metric as { name: string }).name;
        if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name);
      }
    },
  };
}
