// A TCP proxy owned by a test, between warren and the broker, to cut or stall the network on
// purpose. It listens on 127.0.0.1 only and forwards to one target.
import net from 'node:net';

export interface TcpProxy {
  /** amqp URL that goes through the proxy (credentials and vhost of `amqpUrl`, proxy's port). */
  readonly url: string;
  readonly port: number;
  /** Bytes forwarded client → broker so far. */
  readonly bytesUp: number;
  /** Bytes forwarded broker → client so far. */
  readonly bytesDown: number;
  /** Open client connections. */
  readonly connections: number;
  /** Stops forwarding in one or both directions; sockets stay open. */
  pause(direction?: 'up' | 'down' | 'both'): void;
  resume(): void;
  /** Destroys every open connection (the listener keeps accepting, unless refusing). */
  cut(): void;
  /**
   * Tears a frame: on each open connection, the next chunk in `direction` is forwarded only in
   * part (its first half), and then the connection is destroyed.
   */
  tear(direction?: 'up' | 'down'): void;
  /** While true, every new connection is closed at once: the broker looks down. */
  refusing: boolean;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  tear: 'up' | 'down' | undefined;
}

/** Starts a proxy on a free loopback port forwarding to the host and port of `amqpUrl`. */
export async function startTcpProxy(amqpUrl: string): Promise<TcpProxy> {
  const target = new URL(amqpUrl);
  const targetPort = Number(target.port || 5672);
  const targetHost = target.hostname;
  const pairs = new Set<Pair>();
  let pausedUp = false;
  let pausedDown = false;
  let bytesUp = 0;
  let bytesDown = 0;

  const state = { refusing: false };
  const server = net.createServer((client) => {
    if (state.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    const pair: Pair = { client, upstream, tear: undefined };
    pairs.add(pair);
    const forward = (to: net.Socket, chunk: Buffer, direction: 'up' | 'down'): void => {
      if (pair.tear === direction) {
        pair.tear = undefined;
        to.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)), () => end());
        return;
      }
      to.write(chunk);
    };
    // Paused directions buffer in the kernel/stream: data is held, not dropped.
    client.on('data', (chunk: Buffer) => {
      bytesUp += chunk.length;
      forward(upstream, chunk, 'up');
    });
    upstream.on('data', (chunk: Buffer) => {
      bytesDown += chunk.length;
      forward(client, chunk, 'down');
    });
    if (pausedUp) client.pause();
    if (pausedDown) upstream.pause();
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy did not get a TCP port');
  const proxied = new URL(amqpUrl);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(address.port);

  const cut = (): void => {
    for (const p of pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    pairs.clear();
  };
  return {
    get refusing() {
      return state.refusing;
    },
    set refusing(on: boolean) {
      state.refusing = on;
    },
    url: proxied.toString(),
    port: address.port,
    get bytesUp() {
      return bytesUp;
    },
    get bytesDown() {
      return bytesDown;
    },
    get connections() {
      return pairs.size;
    },
    pause(direction = 'both') {
      if (direction !== 'down') {
        pausedUp = true;
        for (const p of pairs) p.client.pause();
      }
      if (direction !== 'up') {
        pausedDown = true;
        for (const p of pairs) p.upstream.pause();
      }
    },
    resume() {
      pausedUp = false;
      pausedDown = false;
      for (const p of pairs) {
        p.client.resume();
        p.upstream.resume();
      }
    },
    cut,
    tear(direction = 'down') {
      for (const p of pairs) p.tear = direction;
    },
    close() {
      cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const started: TcpProxy[] = [];

/** A proxy to the test broker, remembered so `releaseProxies()` / `closeProxies()` reach it after the test. */
export async function testProxy(amqpUrl: string): Promise<TcpProxy> {
  const p = await startTcpProxy(amqpUrl);
  started.push(p);
  return p;
}

/** Lets traffic and new connections through again, so clients behind a proxy can close cleanly. */
export function releaseProxies(): void {
  for (const p of started) {
    p.resume();
    p.refusing = false;
  }
}

/** Closes every proxy `testProxy()` started (after the clients behind them are closed). */
export async function closeProxies(): Promise<void> {
  await Promise.all(started.splice(0).map((p) => p.close()));
}
