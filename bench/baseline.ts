// BENCH_BASELINE=<git rev>[,<rev>…]: warren as built from another revision, benched in the same
// run as the working tree's, through the same adapter (bench/adapters.ts `warren()`).
//
// The revision's src/ and its tsconfig files are extracted with `git archive` into
// bench/.baseline/<shortrev>/ (gitignored), compiled there by this repo's TypeScript with that
// revision's tsconfig.build.json, and imported from its dist/index.js. Its node_modules is a
// symlink to this repo's, so both builds run on the very same amqplib, zod and pino. A build is
// reused while its dist/index.js exists; delete the folder to rebuild it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { WarrenLib } from './adapters.js';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface Baseline {
  /** The abbreviated commit, as in the client's name `warren@<rev>`. */
  readonly rev: string;
  readonly lib: WarrenLib;
}

const git = (...args: string[]): string => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();

/** Builds `rev` (any git revision: a commit, tag, branch, `HEAD~1`) unless built already, and imports it. */
export async function loadBaseline(rev: string): Promise<Baseline> {
  let sha: string;
  try {
    sha = git('rev-parse', '--verify', '--quiet', `${rev}^{commit}`);
  } catch {
    throw new Error(`BENCH_BASELINE: '${rev}' names no commit in this repository (try a hash from \`git log --oneline\`)`);
  }
  const short = git('rev-parse', '--short', sha);
  const dir = join(root, 'bench', '.baseline', short);
  const entry = join(dir, 'dist', 'index.js');
  if (existsSync(entry)) {
    console.log(`baseline ${rev}: reusing bench/.baseline/${short}/`);
  } else {
    console.log(`baseline ${rev}: building ${short} into bench/.baseline/${short}/`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const tar = join(dir, 'source.tar');
    git('archive', `--output=${tar}`, sha, 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'src');
    execFileSync('tar', ['-xf', tar, '-C', dir]);
    rmSync(tar);
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
    // JavaScript only: the bench needs no declarations, and skipping them keeps the build quick.
    execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(dir, 'tsconfig.build.json'), '--declaration', 'false', '--declarationMap', 'false'], {
      stdio: 'inherit',
    });
  }
  return { rev: short, lib: (await import(pathToFileURL(entry).href)) as WarrenLib };
}
