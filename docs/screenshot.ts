// Screenshots the RabbitMQ management UI with the example shop running, for the README:
// starts the consumers (consumers/app.ts), publishes 200 orders, then saves the Connections and
// Queues pages to docs/management-connections.png and docs/management-queues.png.
//   npx tsx docs/screenshot.ts
// Needs the broker with its management UI (docker compose up -d) and chromium (Debian:
// apt-get install chromium). Env: AMQP_URL, RABBITMQ_MANAGEMENT_URL (its user and password log in
// to the UI), CHROMIUM (the browser binary, default `chromium`).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const env = {
  ...process.env,
  AMQP_URL: process.env['AMQP_URL'] ?? 'amqp://guest:guest@localhost:5672',
  RABBITMQ_MANAGEMENT_URL: process.env['RABBITMQ_MANAGEMENT_URL'] ?? 'http://guest:guest@localhost:15672',
};
const management = new URL(env.RABBITMQ_MANAGEMENT_URL);
const chromium = process.env['CHROMIUM'] ?? 'chromium';

/** Resolves when the child exits with 0; rejects with what it was doing otherwise. */
async function exited(child: ChildProcess, what: string): Promise<void> {
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  if (code !== 0) throw new Error(`${what} exited with ${code ?? signal}`);
}

/**
 * Runs a TypeScript file of this repository, as `npx tsx` would but in one process: npx and tsx
 * wrap node in processes of their own, and npx does not pass SIGTERM on to it.
 */
function tsx(args: string[], stdout: 'pipe' | 'ignore'): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env, stdio: ['ignore', stdout, 'inherit'] });
}

/** `warren run consumers/app.ts`, resolved once its JSON log says it is running. */
async function startConsumers(): Promise<ChildProcess> {
  const child = tsx(['src/cli/main.ts', 'run', 'consumers/app.ts'], 'pipe');
  return new Promise((resolve, reject) => {
    // Read every line to the end, not only up to "running": a pipe nobody reads stalls the writer.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const record = (line.startsWith('{') ? JSON.parse(line) : {}) as { msg?: unknown };
      if (typeof record.msg === 'string' && record.msg.startsWith('running')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`the consumers exited with ${code} before they were running`)));
  });
}

interface CdpReply {
  id?: number;
  result?: Record<string, unknown>;
  error?: { message: string };
}
type Send = (method: string, params?: Record<string, unknown>) => Promise<Record<string, unknown>>;

/**
 * Headless chromium driven through the DevTools protocol on a pipe (fd 3 in, fd 4 out; messages end
 * in NUL): the management UI is a page behind a login form, which a plain --screenshot cannot fill
 * in, and the pipe needs no port and no WebSocket client. `send` talks to the one page it opens.
 */
async function openPage(): Promise<{ send: Send; close: () => Promise<void> }> {
  const browser = spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1400,900', '--remote-debugging-pipe', 'about:blank'], {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'],
  });
  const [, , , toBrowser, fromBrowser] = browser.stdio;
  if (!(toBrowser instanceof Writable) || !(fromBrowser instanceof Readable)) throw new Error('chromium: no DevTools pipe');
  const failed = new Promise<never>((_, reject) => {
    browser.once('error', (err) => reject(new Error(`${chromium}: ${err.message} (set CHROMIUM to the browser binary)`)));
    browser.once('exit', (code) => reject(new Error(`${chromium} exited with ${code}`)));
  });
  failed.catch(() => undefined); // rejected when it exits, also after close(): only a pending send cares

  const waiting = new Map<number, (reply: CdpReply) => void>();
  let buffered = '';
  fromBrowser.setEncoding('utf8').on('data', (chunk: string) => {
    const messages = (buffered + chunk).split('\0');
    buffered = messages.pop() ?? '';
    for (const m of messages) {
      const reply = JSON.parse(m) as CdpReply;
      if (reply.id !== undefined) waiting.get(reply.id)?.(reply);
    }
  });
  let nextId = 0;
  const call = async (method: string, params: Record<string, unknown>, sessionId?: string): Promise<Record<string, unknown>> => {
    const id = ++nextId;
    const reply = new Promise<CdpReply>((resolve) => waiting.set(id, resolve));
    toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId !== undefined && { sessionId }) })}\0`);
    const { error, result } = await Promise.race([reply, failed]);
    waiting.delete(id);
    if (error !== undefined) throw new Error(`${method}: ${error.message}`);
    return result ?? {};
  };

  const { targetId } = await call('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await call('Target.attachToTarget', { targetId, flatten: true });
  if (typeof sessionId !== 'string') throw new Error('chromium: no page session');
  return {
    send: (method, params = {}) => call(method, params, sessionId),
    close: async () => {
      await call('Browser.close', {}).catch(() => undefined);
      if (browser.exitCode === null) await once(browser, 'exit');
    },
  };
}

/** The value of a JavaScript expression in the page. */
async function evaluate(send: Send, expression: string): Promise<unknown> {
  const { result } = (await send('Runtime.evaluate', { expression, returnByValue: true })) as { result?: { value?: unknown } };
  return result?.value;
}

/** Polls `check` until it is true: the UI and its statistics catch up with the broker a while after. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
    if (await check()) return;
  }
  throw new Error(`the management UI did not show ${what} within ${timeoutMs / 1000}s`);
}

function waitFor(send: Send, expression: string, what: string): Promise<void> {
  return until(async () => (await evaluate(send, expression)) === true, what);
}

/** A GET of the management API, as the user of RABBITMQ_MANAGEMENT_URL. */
async function api<T>(path: string): Promise<T> {
  const auth = Buffer.from(`${decodeURIComponent(management.username)}:${decodeURIComponent(management.password)}`).toString('base64');
  const res = await fetch(new URL(`/api/${path}`, management.origin), { headers: { authorization: `Basic ${auth}` } });
  if (!res.ok) throw new Error(`GET /api/${path}: ${res.status} ${res.statusText}`);
  return (await res.json()) as T;
}

/** Opens a page of the UI, waits until every text is on it, and saves a screenshot down to its footer. */
async function screenshot(send: Send, hash: string, texts: string[], file: string): Promise<void> {
  await send('Page.navigate', { url: `${management.origin}/${hash}` });
  await waitFor(send, `[${texts.map((t) => JSON.stringify(t)).join(',')}].every((t) => document.body.innerText.includes(t))`, texts.join(', '));
  // Cut the empty window below the footer off: the README shows the picture at its full height.
  const [width, height] = (await evaluate(send, `[document.documentElement.clientWidth, Math.ceil(document.querySelector('#footer').getBoundingClientRect().bottom) + 16]`)) as [number, number];
  const { data } = await send('Page.captureScreenshot', { format: 'png', clip: { x: 0, y: 0, width, height, scale: 1 }, captureBeyondViewport: true });
  const path = fileURLToPath(new URL(file, import.meta.url));
  await writeFile(path, Buffer.from(String(data), 'base64'));
  console.log(`wrote ${path}`);
}

const consumers = await startConsumers();
try {
  await exited(tsx(['producers/place-orders.ts', '200'], 'ignore'), 'producers/place-orders.ts');
  const { send, close } = await openPage();
  try {
    // Log in through the UI's own form rather than forge the cookie it keeps the credentials in,
    // whose format is the UI's own business (3.10 has no log-in-by-URL).
    await send('Page.navigate', { url: `${management.origin}/` });
    await waitFor(send, `document.querySelector('#login form') !== null`, 'its login form');
    const user = JSON.stringify(decodeURIComponent(management.username));
    const password = JSON.stringify(decodeURIComponent(management.password));
    await send('Runtime.evaluate', {
      expression: `{ const f = document.querySelector('#login form'); f.username.value = ${user}; f.password.value = ${password}; f.querySelector('[type=submit]').click(); }`,
    });
    await waitFor(send, `document.querySelector('#login') === null && document.querySelector('#main') !== null`, 'its overview after logging in (are the credentials in RABBITMQ_MANAGEMENT_URL right?)');
    // The broker emits statistics every 5 s, after the objects they are about: wait for them, or the
    // pictures show rates of 0 and connections with 0 channels. The rates fade again: queues first.
    await until(async () => {
      const queues = await api<{ name: string; message_stats?: { publish_details?: { rate: number } } }[]>('queues?columns=name,message_stats');
      return queues.some((q) => q.name === 'billing.orders' && (q.message_stats?.publish_details?.rate ?? 0) > 0);
    }, 'the rate the orders came in at');
    await screenshot(send, '#/queues', ['billing.orders', 'shipping.orders'], 'management-queues.png');
    await until(async () => {
      const connections = await api<{ channels?: number; client_properties?: { connection_name?: string } }[]>('connections?columns=channels,client_properties');
      const shop = connections.filter((c) => c.client_properties?.connection_name?.startsWith('shop:'));
      return shop.length >= 2 && shop.every((c) => (c.channels ?? 0) > 0);
    }, "the channels of the shop's connections");
    await screenshot(send, '#/connections', ['shop:publish', 'shop:consume'], 'management-connections.png');
  } finally {
    await close();
  }
} finally {
  // SIGTERM is the graceful stop: handlers finish and ack before the consumers exit.
  if (consumers.exitCode === null && consumers.signalCode === null) {
    consumers.kill('SIGTERM');
    await exited(consumers, 'the consumers');
  }
}
