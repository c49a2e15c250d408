import type { ChannelModel } from 'amqplib';

/** The parts of amqplib's connection internals this relies on (amqplib 0.10 – 2.x). */
interface Internals {
  connection?: {
    stream?: { cork?: () => void; uncork?: () => void };
    muxer?: { _readIncoming?: () => void };
  };
}

/**
 * Makes amqplib write the frames it has queued on a connection in one socket write instead of
 * one write (one syscall, one TCP segment) per frame.
 *
 * amqplib queues each frame on its channel's stream; its multiplexer then moves them to the
 * socket one `write()` at a time, and with TCP_NODELAY each becomes its own segment that the
 * broker reads separately. Corking the socket around one pass of the multiplexer turns a burst of
 * publishes (or acks) into one `writev`. Order and backpressure are unchanged: the multiplexer
 * still stops at the socket's high-water mark and resumes on 'drain'.
 *
 * Returns false, changing nothing, where amqplib's internals are not as expected.
 */
export function batchSocketWrites(model: ChannelModel): boolean {
  const conn = (model as unknown as Internals).connection;
  const stream = conn?.stream;
  const muxer = conn?.muxer;
  const readIncoming = muxer?._readIncoming;
  if (stream === undefined || muxer === undefined || typeof readIncoming !== 'function') return false;
  if (typeof stream.cork !== 'function' || typeof stream.uncork !== 'function') return false;
  const cork = stream.cork.bind(stream);
  const uncork = stream.uncork.bind(stream);
  muxer._readIncoming = function batched(this: unknown): void {
    cork();
    try {
      readIncoming.call(this);
    } finally {
      uncork();
    }
  };
  return true;
}
