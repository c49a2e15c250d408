/** The `warren` command's exit codes. Stable: scripts and CI jobs depend on them. */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** The command failed: broker unreachable, refused, a publish not confirmed, an invalid payload, a topology mismatch on apply. */
  failure: 1,
  /** The command line is wrong: unknown command or option, a missing argument, an app module that cannot be loaded. */
  usage: 2,
  /** `warren topology diff` found drift between the app's topology and the broker. */
  drift: 3,
} as const;

/** A second SIGINT/SIGTERM ends `warren run` at once with 128 + the signal's number (130, 143), as shells report it. */
export function signalExitCode(signal: 'SIGINT' | 'SIGTERM'): number {
  return 128 + (signal === 'SIGINT' ? 2 : 15);
}

/** The command line is wrong: exits with ExitCode.usage. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The command ran and found something to report by its exit code (drift, failed publishes): the output has said what. */
export class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** The `code` of a WarrenError (of this copy of warren or another), else undefined. */
export function codeOf(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}
