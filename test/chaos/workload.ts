// The chaos suite's workload and its accounting. One run: a warren client publishes uniquely
// identified messages at a steady rate to one queue and consumes them, while a scenario's fault
// runs; publishing goes on for a while after the fault, then everything left in the queue and its
// dead-letter queue is drained and every id is accounted for.
//
//   P published (publish() called)   C confirmed   F rejected with a typed error
//   H hung (not settled within the publish deadline plus the recovery allowance)
//   U unique ids consumed (by warren, or drained from the queue / DLQ at the end)
//   D duplicates (deliveries - U)   L lost (confirmed, never consumed)   X unexpected (never published)
//   recovery: from the fault's end until a message published after it is confirmed and the consumer,
//     attached again, is handling messages
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import {
  connect,
  defineConsumer,
  defineMessage,
  defineTopology,
  WarrenError,
  type ConnectOptions,
  type ConsumerHandle,
  type QueueDefinition,
  type Warren,
} from '../../src/index.js';
import type { Logger } from 'pino';
import { Payload } from './payload.js';

export { Payload };

export type QueueType = 'classic' | 'quorum';

export interface Figures {
  scenario: string;
  queueType: QueueType;
  P: number;
  C: number;
  F: number;
  H: number;
  U: number;
  D: number;
  L: number;
  X: number;
  /** ms from the fault's end until both a confirm and a delivery happened again; null if neither was needed. */
  recoveryMs: number | null;
  /** D may not exceed this: maxInFlight per publish-connection loss + prefetch per consumer loss. */
  duplicateBound: number;
  /** Failures that were not a WarrenError (must be 0). */
  untyped: number;
  /** Unhandled promise rejections during the run (must be 0). */
  unhandled: number;
  /** F by error code. */
  failures: Record<string, number>;
  disconnects: { publish: number; consume: number };
  durationMs: number;
  /** Scenario-specific observations, shown under the table. */
  notes: string[];
}


export interface WorkloadOptions {
  scenario: string;
  queueType: QueueType;
  /** What warren connects to. */
  urls: string[];
  /** A raw AMQP URL that reaches the queue after the fault, to drain what warren did not consume. */
  drainUrl: () => string;
  /** Publishes per second. Default 300. */
  rate?: number;
  /** How long each handler takes. Default 0. */
  handlerMs?: number;
  prefetch?: number;
  concurrency?: number;
  /** Extra connect() options (publisher timeout, heartbeat, …). */
  connect?: Partial<ConnectOptions>;
  /** Publishing before the fault starts. Default 1 s. */
  warmupMs?: number;
  /** Publishing after the fault ends. Default 3 s. */
  tailMs?: number;
  /** Publishes outstanding at once, at most (the caller's own bound while warren waits). Default 3000. */
  maxOutstanding?: number;
  /** Extra queue options (e.g. maxLength + overflow). */
  queue?: QueueDefinition;
  /** Whether to start warren's own consumer. Default true. false: none, or another process's (run.recordDelivery). */
  consume?: boolean;
  /** Called once everything confirmed was consumed (or the wait gave up), before the queue is drained: stop outside consumers here. */
  beforeDrain?: () => Promise<void>;
  logger?: Logger;
  /** The fault. Publishing and consuming go on meanwhile; `run.healed()` marks the end if earlier than its return. */
  fault: (run: Run) => Promise<void>;
}

export interface Run {
  readonly warren: Warren;
  readonly queue: string;
  readonly dlq: string;
  /** Confirms and deliveries so far. */
  counts(): { published: number; confirmed: number; failed: number; delivered: number };
  /** Waits until `n` more deliveries than now have happened. */
  moreDeliveries(n: number, timeoutMs?: number): Promise<void>;
  /** Waits until `n` more confirms than now have happened. */
  moreConfirms(n: number, timeoutMs?: number): Promise<void>;
  /** Stops publishing until resume(); waits for what is outstanding to settle. */
  pausePublishing(): Promise<void>;
  resumePublishing(): void;
  /** Marks the end of the fault now (recovery is measured from here). */
  healed(): void;
  /** Times (ms since epoch) of confirms and deliveries, for scenario checks. */
  readonly confirmTimes: number[];
  readonly deliveryTimes: number[];
  note(text: string): void;
  /** Counts a delivery made by a consumer outside this process. */
  recordDelivery(id: string): void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`chaos workload: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Takes every message off `queues` with basic.get (acking) and returns their ids. */
async function drain(url: string, queues: string[]): Promise<{ ids: string[]; foreign: number }> {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  const ids: string[] = [];
  let foreign = 0;
  try {
    const ch = await conn.createChannel();
    for (const q of queues) {
      for (;;) {
        const m = await ch.get(q, { noAck: true });
        if (m === false) break;
        const parsed = Payload.safeParse(JSON.parse(m.content.toString()));
        if (parsed.success) ids.push(parsed.data.id);
        else foreign += 1;
      }
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  return { ids, foreign };
}

/** Deletes the run's queues (after they were drained). */
async function deleteQueues(url: string, queues: string[]): Promise<void> {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    for (const q of queues) await ch.deleteQueue(q);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

export const CHAOS_CONNECT: Partial<ConnectOptions> = {
  heartbeat: '2s',
  connectTimeout: '3s',
  initialConnectTimeout: '30s',
  closeTimeout: '15s',
  reconnect: { initialDelay: 100, maxDelay: 2000 },
  publisher: { timeout: '20s', maxInFlight: 500 },
};

/** Runs the workload around `fault` and returns the figures (it asserts nothing itself). */
export async function runWorkload(options: WorkloadOptions): Promise<Figures> {
  const rate = options.rate ?? 300;
  const started = Date.now();
  const runId = randomBytes(4).toString('hex');
  const queue = `chaos.${options.scenario}.${options.queueType}.${runId}`;
  const dlq = `${queue}.dlq`;
  const prefetch = options.prefetch ?? 50;
  const connectOptions: Partial<ConnectOptions> = {
    ...CHAOS_CONNECT,
    ...options.connect,
    publisher: { ...CHAOS_CONNECT.publisher, ...options.connect?.publisher },
  };
  const maxInFlight = connectOptions.publisher?.maxInFlight ?? 1000;

  const topology = defineTopology({
    queues: { [queue]: { ...options.queue, type: options.queueType, deadLetter: true } },
  });
  const Message = defineMessage({ name: 'chaos.message', exchange: '', routingKey: queue, schema: Payload });

  const published = new Map<string, number>(); // id → when publish() was called
  const confirmed = new Set<string>();
  const deliveries = new Map<string, number>();
  const failures: Record<string, number> = {};
  const confirmTimes: number[] = [];
  const deliveryTimes: number[] = [];
  const notes: string[] = [];
  let failed = 0;
  let untyped = 0;
  let unhandled = 0;
  let outstanding = 0;
  let delivered = 0;
  const disconnects = { publish: 0, consume: 0 };
  let consumerLosses = 0;
  let healedAt: number | undefined;
  let firstConfirmAfterHeal: number | undefined;
  let healthyAt: number | undefined; // first time after the fault's end that health().ok was true

  const onUnhandled = (): void => {
    unhandled += 1;
  };
  process.on('unhandledRejection', onUnhandled);

  const warren = await connect({
    urls: options.urls,
    name: `chaos-${options.scenario}-${options.queueType}-${runId}`,
    topology,
    ...(options.logger ? { logger: options.logger } : {}),
    ...connectOptions,
  });
  warren.on('disconnected', ({ role }) => {
    disconnects[role] += 1;
  });
  warren.on('consumer', (e) => {
    if (e.type === 'cancelled') consumerLosses += 1;
  });

  let handle: ConsumerHandle | undefined;
  let external = false;
  const countDelivery = (id: string): void => {
    deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
    delivered += 1;
    deliveryTimes.push(Date.now());
  };
  if (options.consume !== false) {
    const handlerMs = options.handlerMs ?? 0;
    handle = await warren.consume(
      defineConsumer({
        queue,
        message: Message,
        prefetch,
        concurrency: options.concurrency ?? Math.min(prefetch, 10),
        async handle(payload) {
          if (handlerMs > 0) await sleep(handlerMs);
          countDelivery(payload.id);
        },
      }),
    );
  }

  // --- the publisher: `rate` per second, paced by the clock, bounded by maxOutstanding ---
  const maxOutstanding = options.maxOutstanding ?? 3000;
  let seq = 0;
  let paused = false;
  let stopped = false;
  let pacingFrom = Date.now();
  let pacedSeq = 0;
  const publishOne = (): void => {
    const id = `${runId}-${seq}`;
    const n = seq;
    seq += 1;
    const publishedAt = Date.now();
    published.set(id, publishedAt);
    outstanding += 1;
    warren.publish(Message, { id, seq: n }, { messageId: id }).then(
      () => {
        confirmed.add(id);
        confirmTimes.push(Date.now());
        if (healedAt !== undefined && publishedAt >= healedAt) firstConfirmAfterHeal ??= Date.now();
        outstanding -= 1;
      },
      (err: unknown) => {
        failed += 1;
        outstanding -= 1;
        if (err instanceof WarrenError) failures[err.code] = (failures[err.code] ?? 0) + 1;
        else {
          untyped += 1;
          failures.untyped = (failures.untyped ?? 0) + 1;
        }
      },
    );
  };
  const publisher = (async () => {
    while (!stopped) {
      if (healedAt !== undefined && healthyAt === undefined && warren.health().ok) healthyAt = Date.now();
      if (!paused) {
        const due = pacedSeq + Math.floor(((Date.now() - pacingFrom) * rate) / 1000);
        while (seq < due && outstanding < maxOutstanding) publishOne();
        // Behind because warren (or the caller's bound) held us back: don't burst to catch up.
        if (seq < due) {
          pacingFrom = Date.now();
          pacedSeq = seq;
        }
      }
      await sleep(10);
    }
  })();

  const run: Run = {
    warren,
    queue,
    dlq,
    counts: () => ({ published: published.size, confirmed: confirmed.size, failed, delivered }),
    async moreDeliveries(n, timeoutMs = 30_000) {
      const target = delivered + n;
      await until(() => delivered >= target, `${n} more deliveries`, timeoutMs);
    },
    async moreConfirms(n, timeoutMs = 30_000) {
      const target = confirmed.size + n;
      await until(() => confirmed.size >= target, `${n} more confirms`, timeoutMs);
    },
    async pausePublishing() {
      paused = true;
      await until(() => outstanding === 0, 'outstanding publishes to settle', 60_000);
    },
    resumePublishing() {
      pacingFrom = Date.now();
      pacedSeq = seq;
      paused = false;
    },
    healed() {
      healedAt ??= Date.now();
    },
    confirmTimes,
    deliveryTimes,
    note: (text) => void notes.push(text),
    recordDelivery(id) {
      external = true;
      countDelivery(id);
    },
  };

  let faultError: Error | undefined;
  try {
    await sleep(options.warmupMs ?? 1000);
    await options.fault(run);
    run.healed();
    run.resumePublishing();
    await sleep(options.tailMs ?? 3000);
  } catch (err) {
    faultError = err instanceof Error ? err : new Error(`fault failed: ${JSON.stringify(err)}`);
  }
  stopped = true;
  await publisher;

  // Every publish settles within its deadline (publisher.timeout) once the broker is back; what
  // has not settled by then plus a recovery allowance is hung.
  const publishTimeout = typeof connectOptions.publisher?.timeout === 'number' ? connectOptions.publisher.timeout : 20_000;
  await until(() => outstanding === 0, '', publishTimeout + 30_000).catch(() => undefined);
  const H = outstanding;

  // Wait for the consumer to have everything confirmed (or give up and let the drain find it).
  if (handle !== undefined || external) {
    await until(() => [...confirmed].every((id) => deliveries.has(id)), '', 60_000).catch(() => undefined);
  }
  await options.beforeDrain?.();
  await warren.close();
  process.off('unhandledRejection', onUnhandled);
  if (faultError !== undefined) throw faultError;

  const rest = await drain(options.drainUrl(), [queue, dlq]);
  for (const id of rest.ids) deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
  if (rest.ids.length > 0) notes.push(`${rest.ids.length} left in the queue/DLQ at the end, drained`);
  await deleteQueues(options.drainUrl(), [queue, dlq]).catch(() => undefined);

  let total = 0;
  let X = rest.foreign;
  for (const [id, n] of deliveries) {
    total += n;
    if (!published.has(id)) X += 1;
  }
  let L = 0;
  for (const id of confirmed) if (!deliveries.has(id)) L += 1;

  // Recovery: a message published after the fault's end was confirmed, and warren was healthy
  // (connections open, consumer attached) and delivering again.
  let recoveryMs: number | null = null;
  const h = healthyAt;
  const deliveredAgain = handle === undefined && !external ? healedAt : h === undefined ? undefined : deliveryTimes.find((t) => t >= h);
  if (healedAt !== undefined && firstConfirmAfterHeal !== undefined && deliveredAgain !== undefined) {
    recoveryMs = Math.max(firstConfirmAfterHeal, deliveredAgain) - healedAt;
  }

  return {
    scenario: options.scenario,
    queueType: options.queueType,
    P: published.size,
    C: confirmed.size,
    F: failed,
    H,
    U: deliveries.size,
    D: total - deliveries.size,
    L,
    X,
    recoveryMs,
    duplicateBound: disconnects.publish * maxInFlight + (disconnects.consume + consumerLosses) * prefetch,
    untyped,
    unhandled,
    failures,
    disconnects,
    durationMs: Date.now() - started,
    notes,
  };
}
