import { createInterface } from 'node:readline/promises';
import { connect, type DeadLetter, type Warren } from '../index.js';
import { loadApp, makeLogger, resolveTarget, type ConnectionFlags } from './context.js';
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

async function withWarren<T>(flags: DlqFlags, fn: (warren: Warren) => Promise<T>): Promise<T> {
  const app = flags.app !== undefined ? await loadApp(flags.app) : undefined;
  const target = resolveTarget(flags, app);
  // No topology: looking at a dead-letter queue declares nothing.
  const warren = await connect({ ...app?.connect, urls: target.urls, name: `${app?.name ?? 'warren'}-cli`, logger: makeLogger('error', 2) });
  try {
    return await fn(warren);
  } finally {
    await warren.close();
  }
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

/** Messages in the dead-letter queue now (undefined when it cannot be checked): replayed ones may already be back. */
async function leftIn(warren: Warren, queue: string): Promise<number | undefined> {
  return warren.queueStatus(`${queue}.dlq`).then((s) => s.messages, () => undefined);
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

/** `warren dlq replay`: moves the chosen dead letters back to their queue, each removed only once its copy is confirmed. */
export async function replay(queue: string, flags: DlqFlags): Promise<void> {
  if (!(await confirm(`Replay ${chosen(flags)} of '${queue}' back to their queue?`, flags))) return void process.stdout.write('nothing replayed\n');
  const filter = filterOf(flags);
  const result = await withWarren(flags, async (w) => {
    const r = await w.replayDeadLetters(queue, { ...(flags.limit !== undefined ? { limit: flags.limit } : {}), ...(filter !== undefined ? { filter } : {}) });
    return { ...r, left: await leftIn(w, queue) };
  });
  if (flags.json === true) printJson(result);
  else process.stdout.write(`replayed ${letters(result.replayed)} of '${queue}' to their queue; ${result.left ?? 'unknown'} left in ${queue}.dlq\n`);
}

/** `warren dlq purge`: removes the chosen dead letters for good. */
export async function purge(queue: string, flags: DlqFlags): Promise<void> {
  if (!(await confirm(`Delete ${chosen(flags)} of '${queue}' for good?`, flags))) return void process.stdout.write('nothing purged\n');
  const filter = filterOf(flags);
  const result = await withWarren(flags, async (w) => {
    const r = await w.purgeDeadLetters(queue, { ...(flags.limit !== undefined ? { limit: flags.limit } : {}), ...(filter !== undefined ? { filter } : {}) });
    return { ...r, left: await leftIn(w, queue) };
  });
  if (flags.json === true) printJson(result);
  else process.stdout.write(`purged ${letters(result.purged)} of '${queue}'; ${result.left ?? 'unknown'} left in ${queue}.dlq\n`);
}
