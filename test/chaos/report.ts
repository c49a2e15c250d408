// Global setup of the chaos project: starts an empty figures file, and after the run prints the
// table of figures per scenario and queue type, with the RabbitMQ version the nodes ran, and
// writes it to test/chaos/results/latest.json and rabbitmq-<version>.json.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { formatTable, FIGURES_FILE, RESULTS_DIR, type Row } from './results.js';

export default async function setup(): Promise<() => Promise<void>> {
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(FIGURES_FILE, '');
  const started = new Date();
  return async () => {
    if (!existsSync(FIGURES_FILE)) return;
    const rows = (await readFile(FIGURES_FILE, 'utf8'))
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Row)
      // In scenario order (titles start with the scenario's number), whatever order they ran in.
      .sort((a, b) => Number.parseInt(a.title, 10) - Number.parseInt(b.title, 10));
    if (rows.length === 0) return;
    const machine = `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
    const rabbitmq = [...new Set(rows.map((r) => r.rabbitmq))].join(' and ');
    console.log(`\nchaos figures (RabbitMQ ${rabbitmq}, ${started.toISOString()}, ${machine}):\n\n${formatTable(rows)}\n`);
    // latest.json is the last run; rabbitmq-<version>.json the last run on that version (CI runs
    // the suite on 3.x and then on 4.x: both tables are kept).
    const json = JSON.stringify({ started, rabbitmq, machine, rows }, null, 2);
    await writeFile(`${RESULTS_DIR}/latest.json`, json);
    await writeFile(`${RESULTS_DIR}/rabbitmq-${rabbitmq.replaceAll(' ', '-')}.json`, json);
  };
}
