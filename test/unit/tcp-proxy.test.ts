// The chaos suite's TCP proxy, against a local echo server: it forwards, holds traffic while
// paused without dropping it, cuts, refuses, and tears a chunk in half.
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

let echo: net.Server;
let proxy: TcpProxy;

beforeEach(async () => {
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
  const address = echo.address() as net.AddressInfo;
  proxy = await startTcpProxy(`amqp://guest:secret@127.0.0.1:${address.port}/vh`);
});

afterEach(async () => {
  await proxy.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

function open(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxy.port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the socket receives until it closes or `bytes` have arrived. */
function receive(s: net.Socket, bytes: number, timeoutMs = 2000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      s.removeAllListeners('data');
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size >= bytes) done(false);
    });
    s.once('close', () => done(true));
  });
}

describe('tcp proxy', () => {
  it('gives a URL with the original credentials and vhost on its own port, and forwards both ways', async () => {
    expect(proxy.url).toBe(`amqp://guest:secret@127.0.0.1:${proxy.port}/vh`);
    const s = await open();
    s.write('hello');
    expect((await receive(s, 5)).data.toString()).toBe('hello');
    expect(proxy.bytesUp).toBe(5);
    expect(proxy.bytesDown).toBe(5);
    s.destroy();
  });

  it('holds traffic while paused, with the socket open, and delivers all of it on resume', async () => {
    const s = await open();
    proxy.pause('both');
    s.write('held');
    const during = await receive(s, 4, 300);
    expect(during).toEqual({ data: Buffer.alloc(0), closed: false });
    proxy.resume();
    expect((await receive(s, 4)).data.toString()).toBe('held');
    s.destroy();
  });

  it('cut() destroys open connections; refusing closes new ones at once', async () => {
    const s = await open();
    const closed = receive(s, 1);
    proxy.cut();
    expect((await closed).closed).toBe(true);
    proxy.refusing = true;
    const t = await open();
    expect((await receive(t, 1)).closed).toBe(true);
  });

  it('tear() forwards half of the next chunk, then closes the connection', async () => {
    const s = await open();
    s.write('ping');
    await receive(s, 4);
    proxy.tear('down');
    s.write('0123456789');
    const got = await receive(s, 10);
    expect(got.data.toString()).toBe('01234');
    expect(got.closed).toBe(true);
    expect(proxy.connections).toBe(0);
  });
});
