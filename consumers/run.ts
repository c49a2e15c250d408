// Runs consumer modules until SIGINT/SIGTERM, then shuts down gracefully: subscriptions are
// cancelled, running handlers and the messages already delivered finish and are acked (nothing
// is sent back to be redelivered), unconfirmed publishes settle, connections close.
// Usage: npx tsx consumers/billing.ts
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { connect, type Consumer } from '../src/index.js';
import { amqpUrl, managementUrl, topology } from '../producers/contracts.js';

export async function runConsumers(consumers: readonly Consumer[]): Promise<void> {
  const logger = pino({ level: process.env['LOG_LEVEL'] ?? 'info' });
  const warren = await connect({ urls: [amqpUrl], topology, logger, managementUrl, name: consumers.map((c) => c.name).join('+') });
  warren.on('consumer', (e) => logger.info(e, `consumer ${e.type}`));
  for (const c of consumers) await warren.consume(c);
  logger.info({ consumers: consumers.map((c) => c.name) }, 'consuming; Ctrl-C to stop');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  logger.info('stopping: handling what was already delivered, then closing');
  await warren.close();
}

/** True when the module at `moduleUrl` is the script node was started with. */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  return script !== undefined && pathToFileURL(script).href === moduleUrl;
}
