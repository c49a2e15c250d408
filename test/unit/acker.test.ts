// The ack coalescer's own logic, against a fake channel that records what would go on the wire.
// (What the broker makes of it is checked against RabbitMQ in test/integration/consume.test.ts.)
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Channel, Inbound } from '../../src/amqp/transport.js';
import { Acker } from '../../src/consume/acker.js';

function fakeChannel() {
  const wire: string[] = [];
  let closed = false;
  const channel = {
    ack: (deliveryTag: number, multiple: boolean) => {
      if (closed) throw new Error('Channel closed');
      wire.push(`ack ${deliveryTag}${multiple ? ' multiple' : ''}`);
    },
    nack: (deliveryTag: number, _multiple: boolean, requeue: boolean) => {
      if (closed) throw new Error('Channel closed');
      wire.push(`nack ${deliveryTag}${requeue ? ' requeue' : ''}`);
    },
  } as unknown as Channel;
  return { channel, wire, close: () => (closed = true) };
}

const msg = (tag: number) => ({ deliveryTag: tag, messageId: undefined, headers: {} }) as unknown as Inbound;
const nextTurn = () => new Promise((r) => setImmediate(r));

describe('Acker', () => {
  it('acks a run of finished deliveries with one multiple ack at the end of the turn', async () => {
    const { channel, wire } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    const slots = [1, 2, 3, 4].map((t) => acker.track(msg(t), 0));
    for (const s of slots) acker.ack(s);
    expect(wire).toEqual([]); // nothing until the turn ends
    await nextTurn();
    expect(wire).toEqual(['ack 4 multiple']);
  });

  it('never lets a multiple ack cover a delivery still running: those behind it are acked one by one', async () => {
    const { channel, wire } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    const [s1, s2, s3, s4] = [1, 2, 3, 4].map((t) => acker.track(msg(t), 0));
    acker.ack(s1!);
    acker.ack(s3!);
    acker.ack(s4!);
    await nextTurn();
    // 2 is still running: 1 alone as a run, 3 and 4 singly (their prefetch slots are freed now).
    expect(wire).toEqual(['ack 1 multiple', 'ack 3', 'ack 4']);
    acker.ack(s2!);
    await nextTurn();
    expect(wire.slice(3)).toEqual(['ack 2 multiple']); // covers only 2: 1, 3 and 4 are no longer outstanding
  });

  it('sends nacks at once, and a later multiple ack steps over them', async () => {
    const { channel, wire } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    const [s1, s2, s3] = [1, 2, 3].map((t) => acker.track(msg(t), 0));
    acker.ack(s1!);
    acker.nack(s2!, false);
    expect(wire).toEqual(['nack 2']);
    acker.ack(s3!);
    await nextTurn();
    expect(wire).toEqual(['nack 2', 'ack 3 multiple']);
  });

  it('settles each delivery once: a second ack or a nack after an ack is ignored', async () => {
    const { channel, wire } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    const s = acker.track(msg(7), 0);
    acker.ack(s);
    acker.ack(s);
    acker.nack(s, true);
    await nextTurn();
    expect(wire).toEqual(['ack 7 multiple']);
  });

  it('flush() sends pending acks now (before a channel closes)', () => {
    const { channel, wire } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    acker.ack(acker.track(msg(1), 0));
    acker.flush();
    expect(wire).toEqual(['ack 1 multiple']);
  });

  it('swallows the error of a channel that closed meanwhile (the broker redelivers those messages)', async () => {
    const { channel, wire, close } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    acker.ack(acker.track(msg(1), 0));
    close();
    await nextTurn();
    expect(wire).toEqual([]);
  });

  it('does not pile up finished deliveries behind one that never settles', async () => {
    const { channel, wire } = fakeChannel();
    const acker = new Acker(channel, pino({ level: 'silent' }));
    acker.track(msg(1), 0); // never settled (a manual-mode handler that forgot to ack)
    for (let t = 2; t <= 5001; t += 1) {
      acker.ack(acker.track(msg(t), 0));
      if (t % 100 === 0) await nextTurn();
    }
    await nextTurn();
    expect(wire).toHaveLength(5000);
    expect(wire.every((w) => !w.endsWith('multiple'))).toBe(true);
    // Cleared whenever more than 1024 are tracked: at most that plus one turn (100) plus the open one.
    expect(acker.tracked).toBeLessThanOrEqual(1125);
  });
});
