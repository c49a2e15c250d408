// The test-owned node helper itself: a node of our own starts on its own ports, survives the
// faults the chaos suite injects, and never touches the shared broker.
import { readFileSync, readlinkSync } from 'node:fs';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RABBITMQ4_ROOT, RabbitNode, startNode } from '../helpers/rabbit-node.js';

async function rawConnection(url: string) {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  return conn;
}

describe('test-owned RabbitMQ node', () => {
  let node: RabbitNode;
  beforeAll(async () => {
    node = await startNode(9);
  });
  afterAll(async () => {
    await node?.destroy();
  });

  it('listens on its own ports, with its own management API, named as asked', async () => {
    // 5689 for the host's RabbitMQ, 5789 for 4.x in the chroot (CHAOS_RABBITMQ=4).
    const port = node.flavour === '4' ? 5789 : 5689;
    expect(node.amqpPort).toBe(port);
    const conn = await rawConnection(node.amqpUrl);
    await conn.close();
    const overview = (await (await node.management.request('GET', '/api/overview')).json()) as { node: string; listeners: { port: number }[] };
    expect(overview.node).toBe(node.name);
    expect(overview.listeners.map((l) => l.port)).toContain(port);
    expect(overview.listeners.map((l) => l.port)).not.toContain(5672);
    expect(await node.rabbitmqVersion()).toMatch(node.flavour === '4' ? /^4\./ : /^3\./);
  });

  it("its pid file names its Erlang VM as this test's processes see it (for 4.x: a host pid, inside the chroot)", async () => {
    // kill(), freeze() and thaw() signal this pid: a wrong one would signal some other process.
    const pid = await node.pid();
    expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('beam.smp');
    expect(readlinkSync(`/proc/${pid}/root`)).toBe(node.flavour === '4' ? RABBITMQ4_ROOT : '/');
  });

  it('keeps a confirmed persistent message across SIGKILL and restart', async () => {
    const conn = await rawConnection(node.amqpUrl);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('helper.durable', { durable: true });
    await ch.purgeQueue('helper.durable');
    ch.sendToQueue('helper.durable', Buffer.from('kept'), { persistent: true });
    await ch.waitForConfirms();
    // The confirm means the message is on disk; the queue's own record is in Mnesia, whose log is
    // written behind. A SIGKILL moments after the declare can lose the queue (and the message with
    // it): flush that log first, as any running broker does within moments.
    await node.mustCtl(['eval', 'mnesia:sync_log().']);
    const closed = new Promise((resolve) => conn.once('close', resolve));
    await node.kill();
    await closed;
    await node.start();
    const conn2 = await rawConnection(node.amqpUrl);
    const ch2 = await conn2.createChannel();
    const got = await ch2.get('helper.durable', { noAck: true });
    expect(got && got.content.toString()).toBe('kept');
    await conn2.close();
  });

  it('stop_app closes client connections; start_app takes them again', async () => {
    const conn = await rawConnection(node.amqpUrl);
    const closed = new Promise((resolve) => conn.once('close', resolve));
    await node.stopApp();
    await closed;
    await expect(rawConnection(node.amqpUrl)).rejects.toThrow();
    await node.startApp();
    const again = await rawConnection(node.amqpUrl);
    await again.close();
  });

  it('a memory watermark of 0 blocks publishing connections; restoring it unblocks them', async () => {
    const conn = await rawConnection(node.amqpUrl);
    const ch = await conn.createConfirmChannel();
    const blocked = new Promise((resolve) => conn.once('blocked', resolve));
    // The broker blocks a connection when it next publishes.
    ch.sendToQueue('nowhere', Buffer.from('x'));
    await node.setMemoryWatermark(0);
    ch.sendToQueue('nowhere', Buffer.from('x'));
    await blocked;
    const unblocked = new Promise((resolve) => conn.once('unblocked', resolve));
    await node.setMemoryWatermark(0.4);
    await unblocked;
    await conn.close();
  });

  it('a frozen node stops answering; thawed, it answers again', async () => {
    await node.freeze();
    try {
      const attempt = amqp.connect(node.amqpUrl, { timeout: 1000 });
      await expect(attempt).rejects.toThrow();
    } finally {
      await node.thaw();
    }
    const conn = await rawConnection(node.amqpUrl);
    await conn.close();
  });
});
