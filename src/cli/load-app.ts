import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isApp, type App } from '../index.js';
import { UsageError } from './exit.js';

/**
 * Loads the app module: `export default defineApp(…)`. TypeScript loads without a build step
 * (through tsx); JavaScript as it is.
 */
export async function loadApp(path: string | undefined): Promise<App> {
  const given = path ?? process.env['WARREN_APP'];
  if (given === undefined || given === '') throw new UsageError('give the app module: warren <command> ./app.ts (or --app ./app.ts, or WARREN_APP)');
  const file = resolve(given);
  if (!existsSync(file)) throw new UsageError(`no app module at ${file}`);
  let mod: Record<string, unknown>;
  try {
    // Registered for the whole process (not tsx's scoped tsImport), so the app's `import 'warren'`
    // is the very module this command uses: one copy of its classes and channels.
    if (/\.[mc]?tsx?$/.test(file)) (await import('tsx/esm/api')).register();
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    // The module's own failure (a ConfigError from defineApp, a syntax error): the user's to fix.
    const text = err instanceof Error ? err.message : String(err);
    // An app loaded as CommonJS (no "type": "module") cannot import warren, an ES module only.
    const code = typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : '';
    const commonJs = /require\(\) (of )?ES Module|ERR_REQUIRE_ESM|ERR_PACKAGE_PATH_NOT_EXPORTED|No "exports" main defined|Top-level await is currently not supported with the "cjs" output format/.test(
      `${text} ${code}`,
    );
    const hint = commonJs ? ' — warren is an ES module: set "type": "module" in your package.json (or name the app .mts / .mjs)' : '';
    throw new UsageError(`loading ${given} failed: ${text}${hint}`, { cause: err });
  }
  const inner = mod['default'] as Record<string, unknown> | undefined;
  const app = [inner, inner?.['default'], mod['app']].find(isApp);
  if (app === undefined) throw new UsageError(`${given} does not export an app: end it with \`export default defineApp({ name, topology, messages, consumers })\``);
  return app;
}

/** The app given as the argument or as --app (one of them, not two different ones). */
export function appArgument(positional: string | undefined, flag: string | undefined): string | undefined {
  if (positional !== undefined && flag !== undefined && resolve(positional) !== resolve(flag)) {
    throw new UsageError(`two apps given: '${positional}' and --app '${flag}'; give one`);
  }
  return positional ?? flag;
}
