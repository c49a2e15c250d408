// batchSocketWrites(): our wrapper around amqplib's multiplexer (no broker). The batching itself,
// against RabbitMQ, is in test/integration/publish.test.ts ("writes a burst of publishes …").
import type { ChannelModel } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { batchSocketWrites } from '../../src/amqp/batch-writes.js';

function fakeModel(readIncoming: () => void) {
  const calls: string[] = [];
  const stream = { cork: () => calls.push('cork'), uncork: () => calls.push('uncork') };
  const muxer = { _readIncoming: readIncoming };
  return { model: { connection: { stream, muxer } } as unknown as ChannelModel, muxer, calls };
}

describe('batchSocketWrites()', () => {
  it('corks the socket for one pass of the multiplexer and uncorks it after, even when the pass throws', () => {
    const f = fakeModel(() => {
      f.calls.push('pass');
      if (f.calls.length > 3) throw new Error('boom');
    });
    expect(batchSocketWrites(f.model)).toBe(true);
    f.muxer._readIncoming();
    expect(f.calls).toEqual(['cork', 'pass', 'uncork']);
    expect(() => f.muxer._readIncoming()).toThrow('boom');
    expect(f.calls).toEqual(['cork', 'pass', 'uncork', 'cork', 'pass', 'uncork']);
  });

  it('changes nothing and says so when amqplib internals are not as expected', () => {
    expect(batchSocketWrites({} as ChannelModel)).toBe(false);
    expect(batchSocketWrites({ connection: { stream: {}, muxer: { _readIncoming: () => undefined } } } as unknown as ChannelModel)).toBe(false);
    const noMux = { connection: { stream: { cork: () => undefined, uncork: () => undefined }, muxer: {} } };
    expect(batchSocketWrites(noMux as unknown as ChannelModel)).toBe(false);
    expect(noMux.connection.muxer).toEqual({});
  });
});
