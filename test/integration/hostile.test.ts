// Hostile and malformed input, sent by clients that are not warren (raw amqplib): nothing loops,
// nothing is lost, and each such message ends in the dead-letter queue with a reason.
import { gzipSync } from 'node:zlib';
import type { GetMessage } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { defineConsumer, NonRetryableError, ValidationError, WarrenHeader, type RetryPolicy, type Warren } from '../../src/index.js';
import { cleanupTracked, drainQueue, queueCounts, sendRaw, track, waitFor, withRawChannel } from '../helpers/broker.js';
import { closeClients, openClient, pingSetup } from '../helpers/warren.js';

afterEach(async () => {
  await closeClients();
  await cleanupTracked();
});

const header = (m: GetMessage | undefined, name: string): unknown => (m?.properties.headers as Record<string, unknown> | undefined)?.[name];

/** A header value that makes the message's headers table just under 64 KiB: it fits, but a copy with warren's headers added does not. */
const nearly64KiB = 'h'.repeat(65_400);

describe('a message whose copy cannot be published', () => {
  it('is dead-lettered with its own headers left out when its retry copy cannot be encoded, instead of being requeued in a loop', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    let calls = 0;
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        retry: { maxAttempts: 5, delays: ['50ms'] },
        handle: () => {
          calls += 1;
          throw new Error('resizer busy');
        },
      }),
    );
    await sendRaw(s.queue, { body: '{"id":"big","n":1}', headers: { big: nearly64KiB, tenant: 'acme' }, messageId: 'big-headers' });

    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the dead letter');
    expect(calls).toBe(1); // handled once: not requeued thousands of times
    const [dead] = await drainQueue(s.dlq);
    expect(dead?.properties.messageId).toBe('big-headers');
    expect(header(dead, WarrenHeader.reason)).toBe('retry-failed');
    expect(header(dead, WarrenHeader.errorMessage)).toBe('resizer busy');
    expect(header(dead, 'big') === undefined).toBe(true); // (not toBeUndefined: a failure would print 65 KB)
    expect(String(header(dead, WarrenHeader.trimmedHeaders))).toContain('big');
    expect(JSON.parse(dead?.content.toString() ?? '')).toEqual({ id: 'big', n: 1 });
    expect(await queueCounts(s.queue)).toMatchObject({ messages: 0 });
    expect(warren.health().consumers[0]).toMatchObject({ delivered: 1, requeued: 0, deadLettered: { 'retry-failed': 1 } });
  });

  it('keeps the reason of a dead letter whose own headers are too large to copy', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        handle: () => {
          throw new NonRetryableError('card declined');
        },
      }),
    );
    await sendRaw(s.queue, { body: '{"id":"big","n":1}', headers: { big: nearly64KiB }, messageId: 'big-dead' });
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 1, 'the dead letter');
    const [dead] = await drainQueue(s.dlq);
    expect(header(dead, WarrenHeader.reason)).toBe('non-retryable');
    expect(header(dead, WarrenHeader.errorCode)).toBe('NON_RETRYABLE');
    expect(header(dead, 'big') === undefined).toBe(true); // (not toBeUndefined: a failure would print 65 KB)
    expect(String(header(dead, WarrenHeader.trimmedHeaders))).toBe('big');
  });
});

describe('a retry wait queue deleted under the consumer', () => {
  it('is declared again when a retry copy comes back unroutable, and the retry goes ahead (no requeue loop)', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const attempts: number[] = [];
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        retry: { maxAttempts: 3, delays: ['100ms'] },
        handle: (_p, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) throw new Error('not yet');
        },
      }),
    );
    const waitQueue = `${s.queue}.retry.100ms`;
    track.queue(waitQueue);
    await withRawChannel(async (ch) => void (await ch.deleteQueue(waitQueue)));
    await warren.publish(s.message, { id: 'a', n: 1 });
    await waitFor(() => attempts.length === 2, 'the retry');
    expect(attempts).toEqual([1, 2]);
    expect(warren.health().consumers[0]).toMatchObject({ retried: 1, requeued: 0, acked: 1 });
    expect((await queueCounts(waitQueue)).messages).toBe(0); // it exists again
  });
});

describe('a poison publish', () => {
  it('fails alone with VALIDATION_FAILED for a header value the broker would refuse, and disturbs nothing beside it', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology });
    const disconnects: string[] = [];
    warren.on('disconnected', (d) => disconnects.push(d.role));
    const beside = [1, 2, 3].map((n) => warren.publish(s.message, { id: `ok${n}`, n }));
    for (const bad of [Infinity, NaN, -Infinity, BigInt(1), () => 1, Symbol('x'), new Date(), [1, undefined]]) {
      const err = await warren.publish(s.message, { id: 'bad', n: 0 }, { headers: { bad } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).code).toBe('VALIDATION_FAILED');
      expect((err as ValidationError).issues[0]?.path).toEqual(expect.arrayContaining(['headers', 'bad']));
    }
    const tooBig = await warren.publish(s.message, { id: 'big', n: 0 }, { headers: { big: 'x'.repeat(70_000) } }).catch((e: unknown) => e);
    expect((tooBig as ValidationError).code).toBe('VALIDATION_FAILED');
    expect((tooBig as Error).message).toMatch(/Headers for message 'ping' cannot be sent: headers: \d+ bytes once encoded/);
    await expect(Promise.all(beside)).resolves.toHaveLength(3);
    expect(disconnects).toEqual([]);
    expect((await queueCounts(s.queue)).messages).toBe(3);
  });

  it('fails a message the broker keeps closing the connection for, after the second time, and re-sends the others', async () => {
    expect.hasAssertions();
    const s = pingSetup();
    const warren = await openClient({ topology: s.topology, reconnect: { initialDelay: 10, maxDelay: 100 } });
    const disconnects: string[] = [];
    warren.on('disconnected', (d) => disconnects.push(d.role));
    // A typed double is sent as given: warren does not second-guess an explicit AMQP type, and
    // RabbitMQ answers an infinite double by closing the connection (541 INTERNAL_ERROR).
    const poison = warren.publish(s.message, { id: 'poison', n: 0 }, { headers: { x: { '!': 'double', value: Infinity } } }).catch((e: unknown) => e);
    const others = Array.from({ length: 20 }, (_, i) => warren.publish(s.message, { id: `m${i}`, n: i }));
    const err = await poison;
    expect((err as { code?: string }).code).toBe('PUBLISH_FAILED');
    await expect(Promise.all(others)).resolves.toHaveLength(20);
    expect(disconnects.length).toBeGreaterThanOrEqual(1);
    expect(disconnects.length).toBeLessThanOrEqual(2);
    expect((await queueCounts(s.queue)).messages).toBe(20);
    expect(warren.health().publisher).toMatchObject({ confirmed: 20, failed: 1, inFlight: 0, buffered: 0, bufferedBytes: 0 });
  });
});

describe('hostile bodies and headers', () => {
  async function consumeAll(warren: Warren, s: ReturnType<typeof pingSetup>, options: { maxMessageBytes?: number; retry?: RetryPolicy } = {}) {
    const handled: { id: string; attempt: number }[] = [];
    let failFirst = true;
    await warren.consume(
      defineConsumer({
        queue: s.queue,
        message: s.message,
        ...(options.maxMessageBytes !== undefined ? { maxMessageBytes: options.maxMessageBytes } : {}),
        ...(options.retry !== undefined ? { retry: options.retry } : {}),
        handle: (p, ctx) => {
          handled.push({ id: p.id, attempt: ctx.attempt });
          if (p.id === 'spoofed' && failFirst) {
            failFirst = false;
            throw new Error('first attempt fails');
          }
        },
      }),
    );
    return handled;
  }

  it('dead-letters invalid UTF-8 inside JSON as invalid (DECODE_FAILED) instead of handing the handler U+FFFD', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled = await consumeAll(warren, s);
    const body = Buffer.concat([Buffer.from('{"id":"a'), Buffer.from([0xc3, 0x28]), Buffer.from('","n":1}')]);
    await sendRaw(s.queue, { body, messageId: 'bad-utf8' }, { body: '{"id":"fine","n":2}', messageId: 'fine' });
    await waitFor(() => handled.length === 1, 'the valid message');
    const [dead] = await drainQueue(s.dlq);
    expect(handled.map((h) => h.id)).toEqual(['fine']);
    expect(dead?.properties.messageId).toBe('bad-utf8');
    expect(header(dead, WarrenHeader.reason)).toBe('invalid');
    expect(header(dead, WarrenHeader.errorCode)).toBe('DECODE_FAILED');
  });

  it('dead-letters a body over the consumer maxMessageBytes before decoding it (MESSAGE_TOO_LARGE)', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled = await consumeAll(warren, s, { maxMessageBytes: 64 * 1024 });
    const big = JSON.stringify({ id: 'x'.repeat(200_000), n: 1 });
    await sendRaw(s.queue, { body: big, messageId: 'too-big' }, { body: '{"id":"fine","n":2}', messageId: 'fine' });
    await waitFor(() => handled.length === 1, 'the valid message');
    const [dead] = await drainQueue(s.dlq);
    expect(handled.map((h) => h.id)).toEqual(['fine']);
    expect(dead?.properties.messageId).toBe('too-big');
    expect(header(dead, WarrenHeader.reason)).toBe('invalid');
    expect(header(dead, WarrenHeader.errorCode)).toBe('MESSAGE_TOO_LARGE');
    expect(dead?.content.length).toBe(big.length); // dead-lettered as it came
  });

  it('decodes a gzip body, and dead-letters an encoding it does not decode, naming it', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled = await consumeAll(warren, s, { maxMessageBytes: 1024 });
    await sendRaw(
      s.queue,
      { body: gzipSync(Buffer.from('{"id":"zipped","n":1}')), contentEncoding: 'gzip', messageId: 'gz' },
      { body: Buffer.from('whatever'), contentEncoding: 'br', messageId: 'brotli' },
      // 100 KB of JSON that gzips to ~150 bytes: under the limit compressed, far over it decompressed.
      { body: gzipSync(Buffer.from(JSON.stringify({ id: 'a'.repeat(100_000), n: 1 }))), contentEncoding: 'gzip', messageId: 'bomb' },
    );
    await waitFor(async () => (await queueCounts(s.dlq)).messages === 2, 'two dead letters');
    expect(handled.map((h) => h.id)).toEqual(['zipped']);
    const dead = await drainQueue(s.dlq);
    const codeOf = (id: string): unknown => header(dead.find((m) => m.properties.messageId === id), WarrenHeader.errorCode);
    expect(codeOf('brotli')).toBe('UNSUPPORTED_CONTENT_ENCODING');
    expect(String(header(dead.find((m) => m.properties.messageId === 'brotli'), WarrenHeader.errorMessage))).toContain("'br'");
    expect(codeOf('bomb')).toBe('MESSAGE_TOO_LARGE');
  });

  it('does not let a spoofed x-warren-attempt skip the retries', async () => {
    expect.hasAssertions();
    const s = pingSetup({ deadLetter: true });
    const warren = await openClient({ topology: s.topology });
    const handled = await consumeAll(warren, s, { retry: { maxAttempts: 3, delays: ['50ms'] } });
    await sendRaw(s.queue, { body: '{"id":"spoofed","n":1}', headers: { [WarrenHeader.attempt]: 1e308 }, messageId: 'spoofed' });
    await waitFor(() => handled.length === 2, 'the retry');
    expect(handled).toEqual([
      { id: 'spoofed', attempt: 1 },
      { id: 'spoofed', attempt: 2 },
    ]);
    expect((await queueCounts(s.dlq)).messages).toBe(0);
  });
});
