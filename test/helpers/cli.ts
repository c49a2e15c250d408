// Runs the built `warren` binary as a subprocess, as a user's shell or CI job would.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { brokerUrls, track, uniqueName } from './broker.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
export const fixtureApp = fileURLToPath(new URL('../fixtures/cli-app.ts', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a CLI run: the test broker, and the fixture app's names under `name`. */
export function cliEnv(name: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, AMQP_URL: brokerUrls().amqpUrl, RABBITMQ_MANAGEMENT_URL: brokerUrls().managementUrl, CLI_TEST_NAME: name, ...extra };
  delete env['LOG_LEVEL'];
  delete env['WARREN_APP'];
  return env;
}

/** A fresh name for the fixture app's queue (`<name>.work`) and exchange (`<name>.ex`). */
export function cliName(prefix: string): string {
  return uniqueName(`cli-${prefix}`);
}

/** A fresh name for the fixture app, its queue, dead-letter queue and exchange tracked for cleanup. */
export function fixtureNames(prefix: string): string {
  const name = cliName(prefix);
  track.queue(`${name}.work`);
  track.queue(`${name}.work.dlq`);
  track.exchange(`${name}.ex`);
  return name;
}

/** Runs `command …args` in the repository root to the end (killed after `timeoutMs`), with `input` on stdin. */
export function runCommand(command: string, args: string[], env: NodeJS.ProcessEnv, options: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 45_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `warren …args` (the built binary) to the end. */
export function warren(args: string[], env: NodeJS.ProcessEnv, options: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return runCommand(process.execPath, [bin, ...args], env, options);
}

/** A long-running `warren …args` (e.g. `run`), with its output and JSON log records as they come. */
export interface CliProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  output(): string;
  records(): Record<string, unknown>[];
  /** Resolves once a log record matches; rejects if the process exits first or after `timeoutMs`. */
  waitForLog(match: (r: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

const running = new Set<CliProcess>();

export function startWarren(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code, signal) => {
      exitCode = code ?? (signal !== null ? -1 : null);
      for (const l of listeners) l();
      resolve(exitCode);
    }),
  );
  const records = (): Record<string, unknown>[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  const proc: CliProcess = {
    child,
    exited,
    output: () => out,
    records,
    waitForLog(match, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = records().find(match);
          if (found !== undefined) done(() => resolve(found));
          else if (exitCode !== undefined) done(() => reject(new Error(`warren exited (${exitCode}) before the log line came; output:\n${out}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no such log line within ${timeoutMs} ms; output:\n${out}`))), timeoutMs);
        const done = (fn: () => void): void => {
          clearTimeout(timer);
          listeners.delete(check);
          fn();
        };
        listeners.add(check);
        check();
      });
    },
  };
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

/** Kills whatever a test left running. */
export function killStragglers(): void {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
}
