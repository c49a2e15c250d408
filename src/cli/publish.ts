import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import cliProgress from 'cli-progress';
import type { MessageContract, PublishOptions, Warren } from '../index.js';
import { makeLogger } from './arguments.js';
import { codeOf, Exit, ExitCode, UsageError } from './exit.js';
import { loadApp } from './load-app.js';
import { closing, connectApp, resolveTarget, type ConnectionFlags } from './target.js';
import { fixed, printJson, short } from './output.js';

export interface PublishFlags extends ConnectionFlags {
  app?: string;
  data?: string;
  count: number;
  rate?: number;
  routingKey?: string;
  json?: boolean;
}

/** What `warren publish` reports. */
export interface PublishReport {
  message: string;
  exchange: string;
  routingKey: string;
  count: number;
  confirmed: number;
  failed: number;
  /** Failures by error code, each with the first message seen. */
  failures: Record<string, { count: number; example: string }>;
  seconds: number;
  /** Confirmed messages per second. */
  rate: number;
}

/** `--data` as given: JSON text, `@file` holding it, or `-` for stdin. */
async function readData(data: string | undefined): Promise<string> {
  if (data === undefined) throw new UsageError("give the payload with --data '{\"…\": …}', --data @payload.json or --data - (stdin)");
  if (data === '-') {
    const input = await text(process.stdin);
    if (input.trim() === '') throw new UsageError('--data -: stdin was empty; pipe the JSON payload in, e.g. cat order.json | warren publish …');
    return input;
  }
  if (data.startsWith('@')) {
    try {
      return await readFile(data.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(`--data ${data}: cannot read the file (${err instanceof Error ? err.message : String(err)})`);
    }
  }
  return data;
}

/** The payload's problems, one line each, as zod reports them; empty when valid. */
function problemsOf(contract: MessageContract, payload: unknown): string[] {
  const r = contract.schema.safeParse(payload);
  if (r.success) return [];
  return r.error.issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`);
}

/** An invalid payload: nothing is sent; the problems on stderr (and as JSON on stdout with --json); exit 1. */
function refuse(flags: PublishFlags, message: string, problems: string[]): never {
  process.stderr.write(`error [VALIDATION_FAILED]: the payload does not match the schema of '${message}'; nothing was published\n${problems.map((p) => `  - ${p}\n`).join('')}`);
  if (flags.json === true) printJson({ message, error: { code: 'VALIDATION_FAILED', problems } });
  throw new Exit(ExitCode.failure);
}

/** Validates once up front, then publishes `count` copies (each its own messageId), at most `rate` a second, and waits for every confirm. */
export async function publish(messageName: string, flags: PublishFlags): Promise<void> {
  const app = await loadApp(flags.app);
  const contract = app.message(messageName);
  if (contract === undefined) {
    const known = [...new Set([...app.messages, ...app.consumers.map((c) => c.message)].map((m) => m.name))];
    throw new UsageError(`app '${app.name}' has no message '${messageName}' (it has: ${known.join(', ') || 'none'})`);
  }
  const raw = await readData(flags.data);
  let payload: unknown;
  try {
    payload = JSON.parse(raw);
  } catch (err) {
    refuse(flags, contract.name, [`the payload is not JSON (${err instanceof Error ? err.message : String(err)})`]);
  }
  const problems = problemsOf(contract, payload);
  if (problems.length > 0) refuse(flags, contract.name, problems);

  const target = resolveTarget(flags, app);
  const warren = await connectApp(app, target, `${app.name}-cli`, makeLogger('error', 2), {
    // Declared as the app declares it, so a publish to a fresh vhost finds its exchange.
    topology: app.topology,
    messages: app.messages,
    publisher: { ...app.connect.publisher, whenFull: 'wait' },
  });
  const report = await closing(warren, () => publishAll(warren, contract, payload, flags));
  if (flags.json === true) printJson(report);
  else {
    process.stdout.write(
      `published ${report.count} × ${report.message} to exchange '${report.exchange}' (routing key '${report.routingKey}'): ` +
        `${report.confirmed} confirmed, ${report.failed} failed in ${report.seconds.toFixed(2)} s (${Math.round(report.rate)} msg/s)\n`,
    );
    for (const [code, f] of Object.entries(report.failures)) process.stdout.write(`  ${code}: ${f.count} (${short(f.example, 200)})\n`);
  }
  if (report.failed > 0) throw new Exit(ExitCode.failure);
}

async function publishAll(warren: Warren, contract: MessageContract, payload: unknown, flags: PublishFlags): Promise<PublishReport> {
  const options: PublishOptions = flags.routingKey !== undefined ? { routingKey: flags.routingKey } : {};
  const count = flags.count;
  const bar =
    process.stderr.isTTY && count >= 100 && flags.json !== true
      ? new cliProgress.SingleBar({ stream: process.stderr, format: ' {bar} {value}/{total} confirmed · {rate} msg/s', hideCursor: true }, cliProgress.Presets.shades_classic)
      : undefined;
  const failures: PublishReport['failures'] = {};
  let confirmed = 0;
  let failed = 0;
  const started = performance.now();
  bar?.start(count, 0, { rate: '0' });
  // Bounded outstanding publishes: a million-message run holds a few thousand promises, not a million.
  const maxOutstanding = 2000;
  const outstanding = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    if (flags.rate !== undefined) {
      const due = started + (i * 1000) / flags.rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const p = warren
      .publish(contract, payload as never, options)
      .then(
        () => void (confirmed += 1),
        (err: unknown) => {
          failed += 1;
          const code = codeOf(err) ?? 'UNKNOWN';
          const f = (failures[code] ??= { count: 0, example: err instanceof Error ? err.message : String(err) });
          f.count += 1;
        },
      )
      .finally(() => {
        outstanding.delete(p);
        bar?.update(confirmed + failed, { rate: fixed(confirmed / ((performance.now() - started) / 1000)) });
      });
    outstanding.add(p);
    if (outstanding.size >= maxOutstanding) await Promise.race(outstanding);
  }
  await Promise.all(outstanding);
  bar?.stop();
  const seconds = (performance.now() - started) / 1000;
  return {
    message: contract.name,
    exchange: contract.exchange,
    routingKey: flags.routingKey ?? contract.routingKey,
    count,
    confirmed,
    failed,
    failures,
    seconds: Number(seconds.toFixed(3)),
    rate: Number((confirmed / Math.max(seconds, 1e-3)).toFixed(1)),
  };
}
