import { readFileSync } from 'node:fs';

/** warren's version, from its package.json (sent as a client property, shown by `warren --version`). */
export const VERSION: string = (() => {
  try {
    // src/support/ and dist/support/ are both two levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
})();
