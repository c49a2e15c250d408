// A consumer process for chaos scenario 11 (killed with SIGKILL, stopped with SIGTERM). It
// prints `ready` once attached, `handled <id>` as each handler finishes (the ack follows; with
// ` redelivered` when the broker flagged it so), and
// on SIGTERM closes warren — running handlers finish and are acked — then prints `closed`.
import { pino } from 'pino';
import { connect, defineConsumer, defineMessage, defineTopology } from '../../src/index.js';
import { Payload } from './payload.js';

const url = process.env.AMQP_URL;
const queue = process.env.QUEUE;
const queueType = process.env.QUEUE_TYPE === 'quorum' ? 'quorum' : 'classic';
if (url === undefined || queue === undefined) throw new Error('set AMQP_URL and QUEUE');
const handlerMs = Number(process.env.HANDLER_MS ?? '20');

const Message = defineMessage({ name: 'chaos.message', exchange: '', routingKey: queue, schema: Payload });
const warren = await connect({
  urls: [url],
  name: `chaos-child-${process.pid}`,
  // Warnings to stderr: the parent shows them when a check fails.
  logger: pino({ level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination(2)),
  topology: defineTopology({ queues: { [queue]: { type: queueType, deadLetter: true } } }),
});
await warren.consume(
  defineConsumer({
    queue,
    message: Message,
    prefetch: Number(process.env.PREFETCH ?? '20'),
    concurrency: 5,
    async handle(payload, ctx) {
      await new Promise((r) => setTimeout(r, handlerMs));
      process.stdout.write(`handled ${payload.id}${ctx.redelivered ? ' redelivered' : ''}\n`);
    },
  }),
);
process.once('SIGTERM', () => {
  void warren.close().then(() => {
    process.stdout.write('closed\n');
    process.exit(0);
  });
});
process.stdout.write('ready\n');
