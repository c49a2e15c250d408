import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { asyncApiDocument, ConfigError, type App, type AsyncApiDocument, type AsyncApiOptions } from '../index.js';
import { UsageError } from './exit.js';
import { appArgument, loadApp } from './load-app.js';

export interface DocsFlags {
  app?: string;
  json?: boolean;
  output?: string;
  server?: string;
  title?: string;
  apiVersion?: string;
}

/** The document as the command writes it: YAML (a comment first, no folded lines, no anchors), or JSON. */
export function formatDocument(app: App, doc: AsyncApiDocument, format: 'yaml' | 'json'): string {
  if (format === 'json') return JSON.stringify(doc, null, 2) + '\n';
  const comment = `AsyncAPI ${doc.asyncapi} document of the warren app '${app.name}', written by \`warren docs\`: regenerate it rather than edit it.`;
  return `# ${comment}\n` + stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}

/** `warren docs`: the app's AsyncAPI 3.0 document, to stdout or a file. Touches no broker. */
export async function docs(appPath: string | undefined, flags: DocsFlags): Promise<void> {
  const app = await loadApp(appArgument(appPath, flags.app));
  const options: AsyncApiOptions = {};
  if (flags.server !== undefined) {
    options.servers = flags.server.split(',').map((u) => u.trim()).filter((u) => u !== '');
    if (options.servers.length === 0) throw new UsageError('--server: give an AMQP URL, e.g. amqp://rabbit:5672/vhost');
  }
  if (flags.title !== undefined) options.title = flags.title;
  if (flags.apiVersion !== undefined) options.version = flags.apiVersion;
  let doc: AsyncApiDocument;
  try {
    doc = asyncApiDocument(app, options);
  } catch (err) {
    // A server URL that is not one: the command line's (--server) or the app's to fix.
    if (err instanceof ConfigError) throw new UsageError(err.message, { cause: err });
    throw err;
  }
  const text = formatDocument(app, doc, flags.json === true ? 'json' : 'yaml');
  if (flags.output === undefined) {
    process.stdout.write(text);
    return;
  }
  writeFileSync(flags.output, text);
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  process.stdout.write(
    `wrote the AsyncAPI ${doc.asyncapi} document of app '${app.name}' to ${flags.output}: ${count(Object.keys(doc.channels).length, 'channel')}, ${count(Object.keys(doc.operations).length, 'operation')}, ${count(Object.keys(doc.components.messages).length, 'message')}\n`,
  );
}
