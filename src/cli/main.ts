#!/usr/bin/env node
// The `warren` command. Imports only warren's public API (../index.js) and its own files.
import { Command, CommanderError } from 'commander';
import { version } from '../index.js';
import { positiveInt, positiveNumber } from './arguments.js';
import * as dlq from './dlq.js';
import { docs } from './docs.js';
import { codeOf, Exit, ExitCode, UsageError } from './exit.js';
import { inspect } from './inspect.js';
import { publish } from './publish.js';
import { run } from './run.js';
import { redact } from './target.js';
import * as topology from './topology.js';

const EXIT_CODES = `
Exit codes:
  0    done
  1    failed (broker unreachable or refusing, a publish not confirmed, an invalid payload, a topology mismatch)
  2    wrong command line (unknown option, missing argument, an app module that does not load)
  3    topology diff found drift
  130  warren run ended by a second Ctrl-C (143: a second SIGTERM)

Connection: --url, else AMQP_URL, else the app's connect.urls, else amqp://guest:guest@localhost:5672.
Login: the URL's userinfo; or --username / WARREN_USERNAME with the password from --password-file /
WARREN_PASSWORD_FILE or WARREN_PASSWORD (there is no --password: a command line shows in ps); else the
app's connect.credentials.
Management API: --management-url, else RABBITMQ_MANAGEMENT_URL, else the app's, else port 15672 of the AMQP
host; it logs in as its URL says, else with the broker's login.
Passwords are never printed.`;

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

function connectionOptions(cmd: Command): Command {
  return cmd
    .option('--url <amqp-url>', 'broker URL(s), comma-separated (default: AMQP_URL, the app, or localhost)')
    .option('--management-url <http-url>', 'management API (default: RABBITMQ_MANAGEMENT_URL, the app, or port 15672 of the broker host)')
    .option('--username <name>', 'log in as this user (default: WARREN_USERNAME, or the user in the URL)')
    .option('--password-file <path>', 'read the password from this file, e.g. a mounted secret (default: WARREN_PASSWORD_FILE; or WARREN_PASSWORD)');
}

const program = new Command('warren')
  .description("Run, publish to, inspect and repair a warren app's RabbitMQ messaging.")
  .version(version, '-v, --version')
  .showHelpAfterError('(add --help for options and examples)')
  .addHelpText('after', examples('warren run ./app.ts --metrics-port 9464', "warren publish order.placed --app ./app.ts --data '{\"orderId\":\"o-1\"}'", 'warren topology diff ./app.ts', 'warren inspect --watch', 'warren dlq peek billing.orders', 'warren docs ./app.ts > asyncapi.yaml') + EXIT_CODES)
  .exitOverride();

connectionOptions(
  program
    .command('run')
    .description('Connect, declare the topology, run the app\'s consumers; SIGTERM or Ctrl-C stops gracefully (exit 0), a second signal at once')
    .argument('[app]', 'the app module (export default defineApp(…)); .ts loads without a build step')
    .option('--app <module>', 'the app module, instead of the argument')
    .option('--only <names>', 'run only these consumers (comma-separated names)')
    .option('--prefetch <n>', "override every consumer's prefetch", positiveInt('--prefetch'))
    .option('--concurrency <n>', "override every consumer's concurrency", positiveInt('--concurrency'))
    .option('--metrics-port <port>', 'serve /healthz (alive), /readyz (connected, not blocked, consumers attached, none stalled) and /metrics (Prometheus) on this port', positiveInt('--metrics-port'))
    .option('--metrics-host <host>', 'address the probes listen on (default: every interface)')
    .option('--log-level <level>', 'trace, debug, info, warn, error, fatal or silent', process.env['LOG_LEVEL'] ?? 'info')
    .addHelpText('after', examples('warren run ./consumers/app.ts', 'warren run ./app.ts --only billing --prefetch 50 --concurrency 10 --metrics-port 9464', 'AMQP_URL=amqp://app:secret@rabbit:5672/shop warren run dist/app.js')),
).action(run);

connectionOptions(
  program
    .command('publish')
    .description('Publish a message of the app\'s contracts: validated first, then waits for every confirm')
    .argument('<message>', 'the contract name, e.g. order.placed')
    .option('--app <module>', 'the app module that holds the contract (default: WARREN_APP)')
    .option('--data <json|@file|->', 'the payload: JSON, @file holding JSON, or - for stdin')
    .option('--count <n>', 'publish it this many times (each with its own messageId)', positiveInt('--count'), 1)
    .option('--rate <per-second>', 'at most this many a second', positiveNumber('--rate'))
    .option('--routing-key <key>', "instead of the contract's routing key")
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      examples(
        "warren publish order.placed --app ./app.ts --data '{\"orderId\":\"o-1\",\"customerId\":\"c-1\",\"amountCents\":1299,\"items\":[{\"sku\":\"tea\",\"quantity\":1}]}'",
        'warren publish order.placed --app ./app.ts --data @order.json --count 10000 --rate 500',
        'cat order.json | warren publish order.placed --app ./app.ts --data - --json',
      ),
    ),
).action(publish);

const topologyCmd = program.command('topology').description("Plan, check or apply the app's topology (queues, exchanges, bindings, dead-letter and retry queues)");
for (const [name, description, fn, extra] of [
  ['plan', 'List every declaration the app makes when it starts (no broker needed)', topology.plan, ''],
  ['diff', 'Compare the app\'s topology with the live broker (management API): missing, extra, different; exit 3 on drift', topology.diff, ''],
  ['apply', 'Declare what is missing; never deletes or changes anything (a mismatch fails and lists every difference)', topology.apply, ''],
] as const) {
  const cmd = topologyCmd
    .command(name)
    .description(description + extra)
    .argument('[app]', 'the app module')
    .option('--app <module>', 'the app module, instead of the argument')
    .option('--json', 'print JSON')
    .addHelpText('after', examples(`warren topology ${name} ./app.ts`, `warren topology ${name} --app ./app.ts --json`));
  (name === 'plan' ? cmd : connectionOptions(cmd)).action(fn);
}

connectionOptions(
  program
    .command('inspect')
    .description("Queues (depth, ready/unacked, consumers, rates, dead letters), warren's connections, and alarms")
    .argument('[pattern]', "only queues whose name matches ('billing.*'), or contains it")
    .option('--watch', 'refresh in place until Ctrl-C')
    .option('--interval <seconds>', 'refresh interval with --watch', positiveNumber('--interval'), 2)
    .option('--json', 'print JSON (one object per refresh with --watch)')
    .option('--app <module>', "take the broker URL from this app's connect options")
    .addHelpText('after', examples('warren inspect', "warren inspect 'billing.*' --watch", 'warren inspect --json | jq ".queues[] | {name, ready}"')),
).action(inspect);

const dlqCmd = program.command('dlq').description("Look into, replay or purge a queue's dead letters (<queue>.dlq)");
const dlqActions = {
  peek: ['Show dead letters: reason, error code and message, attempts, first/last failure (nothing is removed)', dlq.peek],
  replay: ['Move dead letters back to their queue, each removed only once its copy is confirmed; asks first on a terminal', dlq.replay],
  purge: ['Delete dead letters for good; asks first on a terminal', dlq.purge],
} as const;
for (const [name, [description, fn]] of Object.entries(dlqActions)) {
  connectionOptions(
    dlqCmd
      .command(name)
      .description(description)
      .argument('<queue>', 'the queue whose dead letters these are (billing.orders for billing.orders.dlq)')
      .option('--limit <n>', name === 'peek' ? 'show at most this many (default 20)' : `${name} at most this many`, positiveInt('--limit'))
      .option('--reason <reason>', 'only dead letters with this reason (retries-exhausted, non-retryable, invalid, …)')
      .option('--code <code>', 'only dead letters whose error has this code (VALIDATION_FAILED, …)')
      .option('--json', 'print JSON')
      .option('--app <module>', "take the broker URL from this app's connect options")
      .addHelpText('after', examples(`warren dlq ${name} billing.orders${name === 'peek' ? ' --limit 5' : ' --reason retries-exhausted'}`, `warren dlq ${name} billing.orders --code VALIDATION_FAILED --json${name === 'peek' ? '' : ' --yes'}`)),
  );
  if (name !== 'peek') dlqCmd.commands.at(-1)?.option('-y, --yes', 'do not ask (needed when stdin is not a terminal)');
  dlqCmd.commands.at(-1)?.action(fn);
}

program
  .command('docs')
  .description("Write the app's AsyncAPI 3.0 document: its exchanges and queues (dead-letter and retry wait queues too), what it publishes and consumes, payloads as JSON Schema (no broker needed)")
  .argument('[app]', 'the app module')
  .option('--app <module>', 'the app module, instead of the argument')
  .option('--json', 'write JSON instead of YAML')
  .option('-o, --output <file>', 'write it to this file instead of stdout')
  .option('--server <amqp-urls>', "the brokers to document, comma-separated (default: the app's connect.urls, else localhost:5672); never a password")
  .option('--title <title>', "info.title (default: the app's name)")
  .option('--api-version <version>', 'info.version, the version of the app\'s messaging API (default 1.0.0)')
  .addHelpText('after', examples('warren docs ./app.ts > asyncapi.yaml', 'warren docs ./app.ts --json -o asyncapi.json', 'warren docs ./app.ts --server amqps://rabbit.internal:5671/shop --api-version 2.1.0'))
  .action(docs);

async function main(): Promise<number> {
  try {
    // Not an option at all, and refused before commander sees it (its error would quote the value):
    // a password on the command line is visible to everyone on the machine in `ps`.
    if (process.argv.some((a) => a === '--password' || a.startsWith('--password='))) {
      throw new UsageError('--password is not an option: a password on the command line is visible to everyone in ps. Use --password-file <path>, WARREN_PASSWORD_FILE or WARREN_PASSWORD');
    }
    await program.parseAsync(process.argv);
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof Exit) return err.code;
    // Help asked for is 0; help shown because a command or argument is missing is a usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    if (err instanceof UsageError) {
      process.stderr.write(redact(`warren: ${err.message}\n(add --help for options and examples)\n`));
      return ExitCode.usage;
    }
    const code = codeOf(err);
    process.stderr.write(redact(`error${code !== undefined ? ` [${code}]` : ''}: ${err instanceof Error ? err.message : String(err)}\n`));
    if (process.env['WARREN_DEBUG'] !== undefined && err instanceof Error && err.stack !== undefined) process.stderr.write(redact(err.stack + '\n'));
    return ExitCode.failure;
  }
}

process.exit(await main());
