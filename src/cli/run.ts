import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { WarrenMetrics } from '../metrics/index.js';
import { redactUrl, type App, type Consumer, type Warren } from '../index.js';
import { logLevel, makeLogger } from './arguments.js';
import { appArgument, loadApp } from './load-app.js';
import { connectApp, resolveTarget, type ConnectionFlags } from './target.js';
import { signalExitCode, UsageError } from './exit.js';
import { readiness, serveProbes, type Readiness } from './probes.js';

export interface RunFlags extends ConnectionFlags {
  app?: string;
  only?: string;
  prefetch?: number;
  concurrency?: number;
  metricsPort?: number;
  metricsHost?: string;
  logLevel: string;
}

/** The consumers to start: `--only` picks by name, `--prefetch` / `--concurrency` override every one. */
export function selectConsumers(app: App, flags: Pick<RunFlags, 'only' | 'prefetch' | 'concurrency'>): Consumer[] {
  const names = app.consumers.map((c) => c.name);
  let chosen = [...app.consumers];
  if (flags.only !== undefined) {
    const wanted = flags.only.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const unknown = wanted.filter((w) => !names.includes(w));
    if (unknown.length > 0) throw new UsageError(`--only: no consumer named ${unknown.map((u) => `'${u}'`).join(', ')} in app '${app.name}' (it has: ${names.join(', ') || 'none'})`);
    chosen = chosen.filter((c) => wanted.includes(c.name));
  }
  if (chosen.length === 0) throw new UsageError(`app '${app.name}' has no consumers to run: add them to defineApp({ consumers })`);
  return chosen.map((c) => {
    const prefetch = flags.prefetch ?? c.prefetch;
    const concurrency = flags.concurrency ?? Math.min(c.concurrency, prefetch);
    if (concurrency > prefetch) throw new UsageError(`consumer '${c.name}': --concurrency ${concurrency} is more than its prefetch ${prefetch}; give --prefetch too`);
    return Object.freeze({ ...c, prefetch, concurrency });
  });
}

/**
 * `warren run`: connect, declare, start the consumers, serve the probes; on SIGTERM or SIGINT stop
 * gracefully (handlers finish, their messages are acked, connections close) and exit 0. A second
 * signal exits at once with 128 + its number: what was unacked is redelivered by the broker.
 */
export async function run(appPath: string | undefined, flags: RunFlags): Promise<void> {
  const app = await loadApp(appArgument(appPath, flags.app));
  const consumers = selectConsumers(app, flags);
  const target = resolveTarget(flags, app);
  const log = makeLogger(logLevel(flags.logLevel), 1);
  const logger = app.connect.logger ?? log;

  const started: { warren?: Warren } = {};
  let phase: 'starting' | 'running' | 'stopping' = 'starting';
  const state = (): Readiness => (phase !== 'running' || started.warren === undefined ? { ready: false, reasons: [phase] } : readiness(started.warren.health()));
  let probes: Server | undefined;
  let metrics: WarrenMetrics | undefined;
  if (flags.metricsPort !== undefined) {
    // Loaded here only: without --metrics-port (and in every other command) prom-client is not.
    const [{ collectDefaultMetrics, Registry }, { registerMetrics }] = await Promise.all([import('prom-client'), import('../metrics/index.js')]);
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    // Counting starts before connecting, so the first connection's events are in the metrics too.
    metrics = registerMetrics(registry);
    const scrape = async (): Promise<{ contentType: string; body: string }> => ({ contentType: registry.contentType, body: await registry.metrics() });
    probes = await serveProbes(flags.metricsPort, flags.metricsHost, state, scrape).catch((err: unknown) => {
      throw new UsageError(`--metrics-port ${flags.metricsPort}: cannot listen (${err instanceof Error ? err.message : String(err)})`);
    });
    log.info({ port: flags.metricsPort }, `probes on http://${flags.metricsHost ?? 'localhost'}:${flags.metricsPort}/healthz and /readyz, Prometheus metrics on /metrics`);
  }

  let stop!: (signal: 'SIGINT' | 'SIGTERM') => void;
  const stopped = new Promise<'SIGINT' | 'SIGTERM'>((resolve) => (stop = resolve));
  const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (phase === 'stopping') {
      log.warn({ signal }, 'second signal: exiting now; messages not yet acked go back to their queues');
      process.exit(signalExitCode(signal));
    }
    if (started.warren === undefined) {
      // Still connecting: nothing was delivered yet, nothing to drain.
      log.info({ signal }, 'stopped while connecting');
      process.exit(0);
    }
    phase = 'stopping';
    stop(signal);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  log.info({ app: app.name, url: redactUrl(target.urls[0] ?? ''), consumers: consumers.map((c) => c.name) }, 'starting');
  const warren = await connectApp(app, target, app.name, logger, {
    topology: app.topology,
    messages: app.messages,
    socketOptions: {
      ...app.connect.socketOptions,
      // What the management UI shows beside the connection (Client properties).
      clientProperties: { ...app.connect.socketOptions?.clientProperties, app: app.name, consumers: consumers.map((c) => c.name).join(',') },
    },
  });
  warren.on('error', (err) => log.error({ err, code: err.code }, err.message));
  started.warren = warren;
  metrics?.track(warren);
  // The signal handler changes `phase` while this awaits.
  const stopping = (): boolean => phase === 'stopping';
  for (const c of consumers) {
    // A signal while consumers attach: the ones attached stop gracefully with the rest below.
    if (stopping()) break;
    try {
      await warren.consume(c);
    } catch (err) {
      if (stopping()) continue;
      // The consumers already attached may be mid-message: stop them gracefully, then fail.
      phase = 'stopping';
      log.error({ err, consumer: c.name }, `consumer ${c.name} could not start; stopping the others gracefully`);
      await shutDown(warren, probes, log);
      throw err;
    }
  }
  if (!stopping()) {
    phase = 'running';
    log.info({ consumers: consumers.map((c) => ({ name: c.name, queue: c.queue, prefetch: c.prefetch, concurrency: c.concurrency })) }, 'running; SIGTERM or Ctrl-C stops');
  }

  const signal = await stopped;
  const deadline = Math.max(...consumers.map((c) => c.stopTimeoutMs));
  log.info({ signal, deadlineMs: deadline }, 'stopping: running handlers finish and are acked; a second signal exits at once');
  await shutDown(warren, probes, log);
  log.info('stopped');
}

/** Closes the client (consumers drain first) and the probes; a failed close is logged, then reported. */
async function shutDown(warren: Warren, probes: Server | undefined, log: Logger): Promise<void> {
  try {
    await warren.close();
  } catch (err) {
    log.error({ err }, 'closing failed');
    throw err;
  } finally {
    probes?.close();
  }
}
