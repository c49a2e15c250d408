// RabbitMQ nodes owned by a test: started, stopped, killed, frozen and clustered on purpose, on
// their own ports, so fault tests never touch the shared broker on 5672/15672/25672.
//
// Node k (1..9) is `warren-chaos-k@localhost` on amqp 5680+k, management 15680+k and
// distribution 25680+k, with its own config, plugins, data and log files under
// $TMPDIR/warren-chaos/. It runs as the `rabbitmq` user when the test runs as root (so every node
// shares that user's Erlang cookie and can be clustered), else as the current user.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { managementAt } from './broker.js';
import { portOpen } from './net.js';

const RABBITMQ_HOME = '/var/lib/rabbitmq';
const isRoot = process.getuid?.() === 0;

/** Why test-owned nodes cannot run here (a message that says what to install), or undefined. */
export function nodeSupportProblem(): string | undefined {
  const found = ['/usr/sbin/rabbitmq-server', '/usr/lib/rabbitmq/bin/rabbitmq-server'].some((p) => existsSync(p));
  if (!found) {
    return (
      'The chaos suite starts its own RabbitMQ nodes (ports 5681-5689) and needs the rabbitmq-server ' +
      "package on this machine: on Debian/Ubuntu `sudo apt-get install rabbitmq-server`. It never stops the broker on 5672."
    );
  }
  return undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What a test adds to a node's setup (see `create()`). */
export interface NodeSetup {
  /** Lines appended to rabbitmq.conf (e.g. a TLS listener and its `ssl_options.*`). */
  extraConfig?: readonly string[];
  /** Plugins enabled beside rabbitmq_management (e.g. rabbitmq_auth_mechanism_ssl). */
  plugins?: readonly string[];
}

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class RabbitNode {
  readonly index: number;
  /** The Erlang node name, e.g. `warren-chaos-1@localhost`. */
  readonly name: string;
  readonly amqpPort: number;
  readonly managementPort: number;
  readonly distPort: number;
  readonly dir: string;
  /** guest/guest on this node's port (loopback_users is off on test nodes). */
  readonly amqpUrl: string;
  readonly managementUrl: string;
  /** The management API of this node (connections, queues, …), as `management` is for the shared broker. */
  readonly management: ReturnType<typeof managementAt>;

  constructor(index: number) {
    if (!Number.isInteger(index) || index < 1 || index > 9) throw new Error(`node index must be 1..9, got ${index}`);
    this.index = index;
    this.name = `warren-chaos-${index}@localhost`;
    this.amqpPort = 5680 + index;
    this.managementPort = 15680 + index;
    this.distPort = 25680 + index;
    this.dir = path.join(os.tmpdir(), 'warren-chaos', `node-${index}`);
    this.amqpUrl = `amqp://guest:guest@127.0.0.1:${this.amqpPort}`;
    this.managementUrl = `http://guest:guest@127.0.0.1:${this.managementPort}`;
    this.management = managementAt(() => this.managementUrl);
  }

  get logFile(): string {
    return path.join(this.dir, 'log', `${this.name}.log`);
  }

  #env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      HOME: isRoot ? RABBITMQ_HOME : (process.env.HOME ?? os.homedir()),
      // Our own (empty) env file: the shared broker's rabbitmq-env.conf sets its NODENAME.
      RABBITMQ_CONF_ENV_FILE: path.join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_NODENAME: this.name,
      RABBITMQ_NODE_PORT: String(this.amqpPort),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: path.join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(this.dir, 'log'),
      RABBITMQ_PID_FILE: path.join(this.dir, 'pid'),
      RABBITMQ_CONFIG_FILE: path.join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(this.dir, 'enabled_plugins'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      ERL_EPMD_ADDRESS: '127.0.0.1',
    };
  }

  /** Writes a fresh config (wiping any data an earlier run left), with `setup`'s additions, and starts the node. */
  async create(setup: NodeSetup = {}): Promise<this> {
    await this.#killLeftover();
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(path.join(this.dir, 'mnesia'), { recursive: true });
    await mkdir(path.join(this.dir, 'log'), { recursive: true });
    await writeFile(path.join(this.dir, 'rabbitmq-env.conf'), '');
    await writeFile(path.join(this.dir, 'enabled_plugins'), `[${['rabbitmq_management', ...(setup.plugins ?? [])].join(',')}].\n`);
    await writeFile(
      path.join(this.dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${this.amqpPort}`,
        'management.tcp.ip = 127.0.0.1',
        `management.tcp.port = ${this.managementPort}`,
        'loopback_users = none',
        // Connections show in the management API within a second (the default is 5 s).
        'collect_statistics_interval = 500',
        // A nearly full disk must not raise a disk alarm that blocks publishers mid-scenario.
        'disk_free_limit.absolute = 10MB',
        ...(setup.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    if (isRoot) await this.#chownTree();
    await this.start();
    return this;
  }

  async #chownTree(): Promise<void> {
    let uid: number;
    let gid: number;
    try {
      uid = Number(execFileSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' }).trim());
      gid = Number(execFileSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' }).trim());
    } catch {
      throw new Error('running as root, but there is no rabbitmq user to run test nodes as (install rabbitmq-server)');
    }
    const walk = async (p: string): Promise<void> => {
      await chown(p, uid, gid);
      if ((await stat(p)).isDirectory()) for (const e of await readdir(p)) await walk(path.join(p, e));
    };
    await chown(path.dirname(this.dir), uid, gid).catch(() => undefined);
    await walk(this.dir);
  }

  /** Starts the node's Erlang VM (detached) and waits until AMQP answers. Data from before is kept. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (await portOpen('127.0.0.1', this.amqpPort, 500)) throw new Error(`port ${this.amqpPort} is already taken; is ${this.name} still running?`);
    const command = 'ulimit -n 65536 2>/dev/null; exec "$@"';
    const argv = isRoot ? ['runuser', '-u', 'rabbitmq', '--', 'rabbitmq-server'] : ['rabbitmq-server'];
    // Detached with ignored stdio: a node whose stdio pipes close when the test process exits dies with it.
    const child = spawn('sh', ['-c', command, 'sh', ...argv], { env: this.#env(), detached: true, stdio: 'ignore' });
    child.unref();
    await this.waitUntilUp(timeoutMs);
  }

  /** Waits until the RabbitMQ application runs and AMQP answers. */
  async waitUntilUp(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // await_startup fails at once until the node has registered with epmd: retry it.
    for (;;) {
      const r = await this.ctl(['await_startup', '--timeout', '30'], 35_000);
      if (r.code === 0 && (await portOpen('127.0.0.1', this.amqpPort, 500))) return;
      if (Date.now() > deadline) {
        throw new Error(`${this.name} did not start within ${timeoutMs} ms: ${r.stderr.trim() || r.stdout.trim()} (log: ${this.logFile})`);
      }
      await sleep(500);
    }
  }

  /** Runs `rabbitmqctl -n <node> ...args` and returns its output (never throws for a non-zero exit). */
  ctl(args: string[], timeoutMs = 60_000): Promise<CtlResult> {
    return new Promise((resolve) => {
      execFile(
        'rabbitmqctl',
        ['-n', this.name, ...args],
        { env: { ...this.#env(), HOME: isRoot ? RABBITMQ_HOME : process.env.HOME }, timeout: timeoutMs },
        (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /** Like `ctl`, but throws with rabbitmqctl's output when it fails. */
  async mustCtl(args: string[], timeoutMs = 60_000): Promise<string> {
    const r = await this.ctl(args, timeoutMs);
    if (r.code !== 0) throw new Error(`rabbitmqctl -n ${this.name} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** The Erlang VM's OS pid, from the pid file the node writes. */
  async pid(): Promise<number> {
    const text = await readFile(path.join(this.dir, 'pid'), 'utf8');
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${this.name}: no pid in its pid file`);
    return pid;
  }

  /** Stops the RabbitMQ application (the VM keeps running); connections are closed by the broker. */
  async stopApp(): Promise<void> {
    await this.mustCtl(['stop_app']);
  }

  async startApp(): Promise<void> {
    await this.mustCtl(['start_app']);
    await this.waitUntilUp();
  }

  /** SIGKILL the VM: no clean shutdown, sockets reset. Waits until the process is gone. */
  async kill(): Promise<void> {
    const pid = await this.pid();
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (alive(pid) || (await portOpen('127.0.0.1', this.amqpPort, 500))) {
      if (Date.now() > deadline) throw new Error(`${this.name} (pid ${pid}) still alive 10 s after SIGKILL`);
      await sleep(50);
    }
  }

  /** SIGSTOP the VM: sockets stay open, nothing answers (not even heartbeats). */
  async freeze(): Promise<void> {
    process.kill(await this.pid(), 'SIGSTOP');
  }

  async thaw(): Promise<void> {
    process.kill(await this.pid(), 'SIGCONT');
  }

  /** Memory alarm on (0 → every publishing connection is blocked) or back to a normal watermark. */
  async setMemoryWatermark(fraction: number): Promise<void> {
    await this.mustCtl(['set_vm_memory_high_watermark', String(fraction)]);
  }

  /** Stops the whole node (VM included). */
  async stop(): Promise<void> {
    let pid: number | undefined;
    try {
      pid = await this.pid();
    } catch {
      pid = undefined;
    }
    if (pid !== undefined && !alive(pid)) return;
    await this.ctl(['stop'], 60_000);
    const deadline = Date.now() + 30_000;
    while (pid !== undefined && alive(pid)) {
      if (Date.now() > deadline) {
        process.kill(pid, 'SIGKILL');
        break;
      }
      await sleep(100);
    }
  }

  /** Stops the node and deletes its files. */
  async destroy(): Promise<void> {
    await this.thaw().catch(() => undefined);
    await this.stop().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** A node an earlier, crashed run left behind on our ports: kill it. */
  async #killLeftover(): Promise<void> {
    let pid: number | undefined;
    try {
      pid = await this.pid();
    } catch {
      return;
    }
    if (!alive(pid)) return;
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (alive(pid) && Date.now() < deadline) await sleep(50);
  }

  /** Lines of this node's log that contain `text`. */
  async logLines(text: string): Promise<string[]> {
    const log = await readFile(this.logFile, 'utf8').catch(() => '');
    return log.split('\n').filter((l) => l.includes(text));
  }
}

/** Starts one fresh test-owned node. */
export async function startNode(index: number): Promise<RabbitNode> {
  const problem = nodeSupportProblem();
  if (problem !== undefined) throw new Error(problem);
  return new RabbitNode(index).create();
}

/** Starts fresh nodes and joins them into one cluster (the first is the seed). */
export async function startCluster(indices: number[]): Promise<RabbitNode[]> {
  const nodes = await Promise.all(indices.map((i) => startNode(i)));
  const [seed, ...rest] = nodes;
  if (seed === undefined) throw new Error('a cluster needs at least one node');
  for (const n of rest) {
    await n.stopApp();
    await n.mustCtl(['reset']);
    await n.mustCtl(['join_cluster', seed.name]);
    await n.startApp();
  }
  return nodes;
}

/** Names of the running members of the cluster `node` is in. */
export async function runningMembers(node: RabbitNode): Promise<string[]> {
  const out = await node.mustCtl(['cluster_status', '--formatter', 'json']);
  const status = JSON.parse(out) as { running_nodes?: string[] };
  return status.running_nodes ?? [];
}
