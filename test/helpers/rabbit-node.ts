// RabbitMQ nodes owned by a test: started, stopped, killed, frozen and clustered on purpose, on
// their own ports, so fault tests never touch the shared broker on 5672/15672/25672.
//
// Node k (1..9) is `warren-chaos-k@localhost` on amqp 5680+k, management 15680+k and
// distribution 25680+k, with its own config, plugins, data and log files under
// $TMPDIR/warren-chaos/. It runs as the `rabbitmq` user when the test runs as root (so every node
// shares that user's Erlang cookie and can be clustered), else as the current user.
//
// With CHAOS_RABBITMQ=4 the nodes are RabbitMQ 4.x instead: the same binaries as the node
// `.ci/rabbitmq4 up` runs, inside its Debian 13 chroot ($RABBITMQ4_ROOT, default
// /var/tmp/warren-rabbitmq4). Node k is then `warren-chaos4-k@localhost` on 5780+k / 15780+k /
// 25780+k, with its files under ROOT/tmp/warren-chaos4/, run (and rabbitmqctl'd) as the chroot's
// rabbitmq user with that user's Erlang cookie. The chroot shares the host's network, epmd and
// pid namespace, so ports, pids and signals work from here as they do for host nodes. Needs root.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { managementAt } from './broker.js';
import { portOpen } from './net.js';

const RABBITMQ_HOME = '/var/lib/rabbitmq';
const isRoot = process.getuid?.() === 0;

/** Which RabbitMQ test-owned nodes run: Debian's package on the host (3.x), or 4.x in the chroot. */
export type RabbitFlavour = '3' | '4';

/** The flavour CHAOS_RABBITMQ asks for: `4` for RabbitMQ 4.x in the chroot, else the host's. */
export function nodeFlavour(): RabbitFlavour {
  const v = process.env.CHAOS_RABBITMQ?.trim() ?? '';
  if (v === '' || v === '3') return '3';
  if (v === '4') return '4';
  throw new Error(`CHAOS_RABBITMQ must be 3 (the host's rabbitmq-server) or 4 (RabbitMQ 4.x in .ci/rabbitmq4's chroot), got '${v}'`);
}

/** The chroot `.ci/rabbitmq4` builds, with RabbitMQ 4.x in it. */
export const RABBITMQ4_ROOT = path.resolve(process.env.RABBITMQ4_ROOT ?? '/var/tmp/warren-rabbitmq4');
const CHROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Why RabbitMQ 4.x nodes cannot run in the chroot here, or undefined. */
function chrootProblem(): string | undefined {
  const up = 'run `sudo bash .ci/rabbitmq4 up` first (it builds the chroot, mounts proc and dev in it and creates its Erlang cookie)';
  if (!isRoot) return `CHAOS_RABBITMQ=4 runs test-owned RabbitMQ 4.x nodes inside ${RABBITMQ4_ROOT} with chroot, which needs root`;
  if (!existsSync(path.join(RABBITMQ4_ROOT, 'usr/lib/rabbitmq/bin/rabbitmq-server'))) return `CHAOS_RABBITMQ=4 needs RabbitMQ 4.x in the chroot ${RABBITMQ4_ROOT}, and there is none: ${up}`;
  if (!existsSync(path.join(RABBITMQ4_ROOT, 'proc/self')) || !existsSync(path.join(RABBITMQ4_ROOT, 'dev/null'))) return `proc or dev is not mounted in ${RABBITMQ4_ROOT}: ${up}`;
  if (!existsSync(path.join(RABBITMQ4_ROOT, RABBITMQ_HOME, '.erlang.cookie'))) return `${RABBITMQ4_ROOT} has no Erlang cookie for its rabbitmq user: ${up}`;
  return undefined;
}

/** The chroot's rabbitmq user as uid and gid: not the host's, whose ids differ. */
function chrootRabbitmqIds(): { uid: number; gid: number } {
  const passwd = readFileSync(path.join(RABBITMQ4_ROOT, 'etc/passwd'), 'utf8');
  const fields = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === 'rabbitmq');
  const uid = Number(fields?.[2]);
  const gid = Number(fields?.[3]);
  if (fields === undefined || !Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error(`no rabbitmq user in ${RABBITMQ4_ROOT}/etc/passwd: run \`sudo bash .ci/rabbitmq4 up\``);
  return { uid, gid };
}

/** The host's rabbitmq user as uid and gid (root runs host nodes as that user). */
function hostRabbitmqIds(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root, but there is no rabbitmq user to run test nodes as (install rabbitmq-server)');
  }
}

/** Why test-owned nodes cannot run here (a message that says what to install), or undefined. */
export function nodeSupportProblem(flavour: RabbitFlavour = nodeFlavour()): string | undefined {
  if (flavour === '4') return chrootProblem();
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
  /** `3`: the host's rabbitmq-server; `4`: RabbitMQ 4.x inside .ci/rabbitmq4's chroot. */
  readonly flavour: RabbitFlavour;
  /** The Erlang node name, e.g. `warren-chaos-1@localhost` (`warren-chaos4-1@localhost` for 4.x). */
  readonly name: string;
  readonly amqpPort: number;
  readonly managementPort: number;
  readonly distPort: number;
  /** This node's files, as a path on the host. */
  readonly dir: string;
  /** The same directory as the node sees it (inside the chroot for 4.x). */
  readonly #nodeDir: string;
  /** guest/guest on this node's port (loopback_users is off on test nodes). */
  readonly amqpUrl: string;
  readonly managementUrl: string;
  /** The management API of this node (connections, queues, …), as `management` is for the shared broker. */
  readonly management: ReturnType<typeof managementAt>;

  constructor(index: number, flavour: RabbitFlavour = nodeFlavour()) {
    if (!Number.isInteger(index) || index < 1 || index > 9) throw new Error(`node index must be 1..9, got ${index}`);
    this.index = index;
    this.flavour = flavour;
    // 4.x nodes on ports of their own (5780+k), so they never meet the 3.x ones or rabbit4@localhost.
    const base = flavour === '4' ? 5780 : 5680;
    this.name = `${flavour === '4' ? 'warren-chaos4' : 'warren-chaos'}-${index}@localhost`;
    this.amqpPort = base + index;
    this.managementPort = 10_000 + base + index;
    this.distPort = 20_000 + base + index;
    this.#nodeDir = flavour === '4' ? path.posix.join('/tmp/warren-chaos4', `node-${index}`) : path.join(os.tmpdir(), 'warren-chaos', `node-${index}`);
    this.dir = flavour === '4' ? path.join(RABBITMQ4_ROOT, this.#nodeDir) : this.#nodeDir;
    this.amqpUrl = `amqp://guest:guest@127.0.0.1:${this.amqpPort}`;
    this.managementUrl = `http://guest:guest@127.0.0.1:${this.managementPort}`;
    this.management = managementAt(() => this.managementUrl);
  }

  get logFile(): string {
    return path.join(this.dir, 'log', `${this.name}.log`);
  }

  #env(): NodeJS.ProcessEnv {
    const inChroot = this.flavour === '4';
    const dir = this.#nodeDir;
    return {
      PATH: inChroot ? CHROOT_PATH : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'),
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      // The Erlang cookie is $HOME/.erlang.cookie: the rabbitmq user's, so nodes can be clustered.
      HOME: isRoot || inChroot ? RABBITMQ_HOME : (process.env.HOME ?? os.homedir()),
      // Our own (empty) env file: the shared broker's rabbitmq-env.conf sets its NODENAME.
      RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_NODENAME: this.name,
      RABBITMQ_NODE_PORT: String(this.amqpPort),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(dir, 'log'),
      RABBITMQ_PID_FILE: path.join(dir, 'pid'),
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
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

  /** `[file, args]` that run RabbitMQ's `command` (rabbitmq-server, rabbitmqctl) for this node. */
  #command(command: string, args: string[]): [string, string[]] {
    if (this.flavour === '4') {
      const { uid, gid } = chrootRabbitmqIds();
      // The scripts themselves, not Debian's wrapper, which sends every node's output to one file.
      return ['chroot', [`--userspec=${uid}:${gid}`, RABBITMQ4_ROOT, `/usr/lib/rabbitmq/bin/${command}`, ...args]];
    }
    if (command === 'rabbitmq-server' && isRoot) return ['runuser', ['-u', 'rabbitmq', '--', command, ...args]];
    return [command, args];
  }

  async #chownTree(): Promise<void> {
    const { uid, gid } = this.flavour === '4' ? chrootRabbitmqIds() : hostRabbitmqIds();
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
    const argv = this.#command('rabbitmq-server', []).flat();
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
      const [file, argv] = this.#command('rabbitmqctl', ['-n', this.name, ...args]);
      execFile(
        file,
        argv,
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

  /** The Erlang VM's OS pid, from the pid file the node writes (a host pid for 4.x too: the chroot shares the pid namespace). */
  async pid(): Promise<number> {
    const text = await readFile(path.join(this.dir, 'pid'), 'utf8');
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${this.name}: no pid in its pid file`);
    return pid;
  }

  /** The RabbitMQ version the node reports (its management API's overview), e.g. `4.0.5`. */
  async rabbitmqVersion(): Promise<string> {
    const overview = await this.management.json<{ rabbitmq_version?: string }>('/api/overview');
    if (overview?.rabbitmq_version === undefined) throw new Error(`${this.name}: no rabbitmq_version in /api/overview`);
    return overview.rabbitmq_version;
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
export async function startNode(index: number, flavour: RabbitFlavour = nodeFlavour()): Promise<RabbitNode> {
  const problem = nodeSupportProblem(flavour);
  if (problem !== undefined) throw new Error(problem);
  return new RabbitNode(index, flavour).create();
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
