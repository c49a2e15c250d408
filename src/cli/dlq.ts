import { createInterface } from 'node:readline/promises';
import type { App, DeadLetter, Warren } from '../index.js';
import { makeLogger } from './arguments.js';
import { loadApp } from './load-app.js';
import { closing, connectApp, resolveTarget, type ConnectionFlags } from './target.js';
import { UsageError } from './exit.js';
import { printJson, short, table } from './output.js';

export interface DlqFlags extends ConnectionFlags {
  app?: string;
  limit?: number;
  reason?: string;
  code?: string;
  json?: boolean;
  yes?: boolean;
}

/** The dead letters `--reason` and `--code` pick (all when neither is given). */
function filterOf(flags: DlqFlags): ((d: DeadLetter) => boolean) | undefined {
  if (flags.reason === undefined && flags.code === undefined) return undefined;
  return (d) => (flags.reason === undefined || d.reason === flags.reason) && (flags.code === undefined || d.errorCode === flags.code);
}

function chosen(flags: DlqFlags): string {
  const parts = [flags.reason !== undefined ? `reason '${flags.reason}'` : undefined, flags.code !== undefined ? `code '${flags.code}'` : undefined].filter(Boolean);
  const which = parts.length > 0 ? `the dead letters with ${parts.join(' and ')}` : 'every dead letter';
  return flags.limit !== undefined ? `${which} (at most ${flags.limit})` : which;
}

async function withWarren<T>(flags: DlqFlags, fn: (warren: Warren, app: App | undefined) => Promise<T>): Promise<T> {
  const app = flags.app !== undefined ? await loadApp(flags.app) : undefined;
  const target = resolveTarget(flags, app);
  // With --app, its topology names each queue's dead-letter queue (a custom deadLetter.routingKey
  // included); connecting declares it, as the app itself does at start.
  const warren = await connectApp(app, target, `${app?.name ?? 'warren'}-cli`, makeLogger('error', 2), app !== undefined ? { topology: app.topology } : {});
  return closing(warren, (w) => fn(w, app));
}

/** Replay and purge change the queue: on a terminal ask first; elsewhere only with --yes. */
async function confirm(question: string, flags: DlqFlags): Promise<boolean> {
  if (flags.yes === true) return true;
  if (!process.stdin.isTTY) throw new UsageError(`${question.replace(/\?$/, '')}: pass --yes to do it without asking (stdin is not a terminal)`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

const letters = (n: number): string => `${n} dead letter${n === 1 ? '' : 's'}`;

/** Ready messages in the dead-letter queue (undefined when it cannot be checked). */
async function readyIn(warren: Warren, app: App | undefined, queue: string): Promise<number | undefined> {
  return warren.queueStatus(dlqOf(app, queue)).then((s) => s.messages, () => undefined);
}

/** The dead-letter queue of `queue`: the app's `deadLetter` routing key when it sets one, else `<queue>.dlq`. */
function dlqOf(app: App | undefined, queue: string): string {
  return app?.topology.queue(queue)?.deadLetter?.routingKey ?? `${queue}.dlq`;
}

const when = (d: Date | undefined): string => (d !== undefined ? d.toISOString() : '-');

/** `warren dlq peek`: what is in the dead-letter queue and why, without taking anything out. */
export async function peek(queue: string, flags: DlqFlags): Promise<void> {
  const filter = filterOf(flags);
  const letters = await withWarren(flags, (w) => w.peekDeadLetters(queue, { limit: flags.limit ?? 20, ...(filter !== undefined ? { filter } : {}) }));
  if (flags.json === true) return printJson(letters.map(({ headers: _headers, ...d }) => d));
  if (letters.length === 0) {
    process.stdout.write(`no dead letters of '${queue}'${filter !== undefined ? ' match' : ''}\n`);
    return;
  }
  process.stdout.write(
    table(
      ['MESSAGE ID', 'REASON', 'CODE', 'ATTEMPTS', 'FIRST FAILURE', 'LAST FAILURE', 'ERROR'],
      letters.map((d) => [d.messageId ?? '-', d.reason ?? '-', d.errorCode ?? '-', d.attempts ?? '-', when(d.firstFailureAt), when(d.lastFailureAt), short(d.errorMessage ?? '-', 80)]),
    ) + '\n',
  );
  process.stdout.write(`${letters.length} shown (--limit ${flags.limit ?? 20}); --json shows bodies and every field\n`);
}

/** Replay or purge: both change the queue, ask first, and report what is left. */
async function change(action: 'replay' | 'purge', queue: string, flags: DlqFlags): Promise<void> {
  const question = action === 'replay' ? `Replay ${chosen(flags)} of '${queue}' back to their queue?` : `Delete ${chosen(flags)} of '${queue}' for good?`;
  if (!(await confirm(question, flags))) return void process.stdout.write(`nothing ${action === 'replay' ? 'replayed' : 'purged'}\n`);
  const filter = filterOf(flags);
  const options = { ...(flags.limit !== undefined ? { limit: flags.limit } : {}), ...(filter !== undefined ? { filter } : {}) };
  const { result, dlq } = await withWarren(flags, async (w, app) => {
    // Counted before, less what left: counted after, the skipped ones may still be on their way back.
    const before = await readyIn(w, app, queue);
    const r = action === 'replay' ? await w.replayDeadLetters(queue, options) : await w.purgeDeadLetters(queue, options);
    const removed = 'replayed' in r ? r.replayed : r.purged;
    return { result: { ...r, left: before !== undefined ? Math.max(0, before - removed) : undefined }, dlq: dlqOf(app, queue) };
  });
  if (flags.json === true) return printJson(result);
  const done = 'replayed' in result ? `replayed ${letters(result.replayed)} of '${queue}' to their queue` : `purged ${letters(result.purged)} of '${queue}'`;
  process.stdout.write(`${done}; ${result.left ?? 'unknown'} left in ${dlq}\n`);
}

/** `warren dlq replay`: moves the chosen dead letters back to their queue, each removed only once its copy is confirmed. */
export function replay(queue: string, flags: DlqFlags): Promise<void> {
  return change('replay', queue, flags);
}

/** `warren dlq purge`: removes the chosen dead letters for good. */
export function purge(queue: string, flags: DlqFlags): Promise<void> {
  return change('purge', queue, flags);
}
