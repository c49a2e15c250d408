// The Publisher (src/publish/) through the public API, over a scripted transport that plays the
// broker's part: the window, the buffer, re-publishing, returns, nacks, timeouts and the counts
// in health(). What RabbitMQ makes of the same publishes is checked in test/integration.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { connect, defineMessage, defineTopology, WarrenError, type ConnectOptions, type Warren } from '../../src/index.js';
import { ScriptedTransport } from '../helpers/scripted-transport.js';

const topology = defineTopology({
  exchanges: { pings: { type: 'topic' } },
  queues: { 'ping.q': { bindings: [{ exchange: 'pings', routingKey: 'ping.#' }] } },
});
const Ping = defineMessage({ name: 'ping', exchange: 'pings', routingKey: 'ping.one', schema: z.object({ n: z.number().int() }) });
/** A contract whose exchange the broker does not have. */
const Ghost = defineMessage({ name: 'ghost', exchange: 'ghosts', routingKey: 'boo', schema: z.object({ n: z.number().int() }) });

const clients: Warren[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(clients.splice(0).map((w) => w.close()));
});

async function start(publisher: NonNullable<ConnectOptions['publisher']> = {}) {
  const transport = new ScriptedTransport();
  // closeTimeout: a test that leaves a publish unsettled must not hold afterEach for 30 s.
  const warren = await connect({ urls: ['amqp://fake'], transport, topology, publisher, closeTimeout: 100 });
  clients.push(warren);
  return { warren, transport };
}

/** The error a publish rejects with. Attached at once, so an early rejection is never reported as unhandled. */
function rejection(publish: Promise<unknown>): Promise<WarrenError> {
  return publish.then(
    () => {
      throw new Error('expected the publish to fail, but the broker confirmed it');
    },
    (err: unknown) => {
      if (err instanceof WarrenError) return err;
      throw err;
    },
  );
}

const bodies = (t: ScriptedTransport) => t.published.map((m) => m.json());

/** Fakes only the publisher's deadline sweep (an interval) and the clock; channels reopen on real timers. */
function fakeClock(): void {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
}

describe('Publisher over a scripted transport', () => {
  it('keeps at most publisher.maxInFlight messages on the wire until their confirms come', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start({ maxInFlight: 2 });
    const publishes = [0, 1, 2, 3, 4].map((n) => warren.publish(Ping, { n }));
    expect(bodies(transport)).toEqual([{ n: 0 }, { n: 1 }]);
    expect(warren.health().publisher).toMatchObject({ inFlight: 2, buffered: 3 });

    transport.published[1]?.ack(); // confirms may come out of order: one slot frees up either way
    expect(bodies(transport)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
    transport.published[0]?.ack();
    expect(bodies(transport)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }]);
    expect(warren.health().publisher).toMatchObject({ inFlight: 2, buffered: 1, confirmed: 2 });
    transport.confirmAll(); // 2 and 3: both slots free, 4 goes out
    expect(bodies(transport)).toHaveLength(5);
    transport.confirmAll();

    const receipts = await Promise.all(publishes);
    expect(receipts.map((r) => r.messageId)).toEqual(transport.published.map((m) => m.messageId));
    expect(warren.health().publisher).toMatchObject({ inFlight: 0, buffered: 0, published: 5, confirmed: 5 });
  });

  it('buffers publishes while the connection is down and sends them in order once it is back', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const oldLink = transport.link('publish');
    const release = transport.hold('connect');
    oldLink.drop();
    const publishes = [1, 2, 3].map((n) => warren.publish(Ping, { n }));
    expect(warren.health().publisher).toMatchObject({ buffered: 3, inFlight: 0 });
    expect(transport.published).toHaveLength(0);

    release();
    await transport.waitFor(() => transport.published.length === 3, 'the buffered messages sent');
    expect(bodies(transport)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(transport.published.every((m) => m.channel.link !== oldLink)).toBe(true);
    transport.confirmAll();
    await expect(Promise.all(publishes)).resolves.toHaveLength(3);
  });

  it('rejects a publish that finds the buffer full with PUBLISH_BUFFER_FULL, and sends the others', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start({ maxBufferedMessages: 2 });
    const release = transport.hold('connect');
    transport.link('publish').drop();
    const kept = [1, 2].map((n) => warren.publish(Ping, { n }));
    const refused = await rejection(warren.publish(Ping, { n: 3 }, { messageId: 'third' }));
    expect(refused.code).toBe('PUBLISH_BUFFER_FULL');
    expect(refused).toMatchObject({ messageId: 'third' });

    release();
    await transport.waitFor(() => transport.published.length === 2, 'the buffered messages sent');
    transport.confirmAll();
    await Promise.all(kept);
    expect(bodies(transport)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(warren.health().publisher).toMatchObject({ published: 2, confirmed: 2, failed: 0 });
  });

  it("with whenFull 'wait', a publish that finds the buffer full waits for room instead", async () => {
    expect.hasAssertions();
    const { warren, transport } = await start({ maxBufferedMessages: 1, whenFull: 'wait' });
    const release = transport.hold('connect');
    transport.link('publish').drop();
    const publishes = [1, 2, 3].map((n) => warren.publish(Ping, { n }));
    expect(warren.health().publisher).toMatchObject({ buffered: 1, waitingForRoom: 2 });

    release();
    await transport.waitFor(() => transport.published.length === 3, 'all three sent');
    expect(bodies(transport)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    transport.confirmAll();
    await expect(Promise.all(publishes)).resolves.toHaveLength(3);
  });

  it('stops sending while publish() reports a full socket, and goes on at drain', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const channel = transport.publishChannel();
    channel.fillSocket();
    const publishes = [1, 2, 3].map((n) => warren.publish(Ping, { n }));
    expect(bodies(transport)).toEqual([{ n: 1 }]); // taken by the socket, which then said "full"
    expect(warren.health().publisher).toMatchObject({ inFlight: 1, buffered: 2 });
    channel.drain();
    expect(bodies(transport)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    transport.confirmAll();
    await expect(Promise.all(publishes)).resolves.toHaveLength(3);
  });

  it('holds publishes while the broker blocks the connection (resource alarm)', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    transport.link('publish').block('low on memory');
    const publish = warren.publish(Ping, { n: 1 });
    expect(transport.published).toHaveLength(0);
    expect(warren.health()).toMatchObject({ blocked: true, publisher: { buffered: 1 } });
    transport.link('publish').unblock();
    expect(bodies(transport)).toEqual([{ n: 1 }]);
    transport.confirmAll();
    await expect(publish).resolves.toEqual({ messageId: transport.published[0]?.messageId });
  });

  it('re-publishes unconfirmed messages after the connection drops: same messageId and properties, same order', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const [first, ...rest] = [1, 2, 3].map((n) => warren.publish(Ping, { n }, { headers: { 'x-n': n } }));
    const original = transport.publishChannel();
    transport.published[0]?.ack();
    await first;

    original.link.drop();
    await transport.waitFor(() => transport.published.length === 5, 'the two unconfirmed messages re-published');
    const [, lost2, lost3, again2, again3] = transport.published;
    expect(again2?.channel.link).not.toBe(original.link);
    expect([again2?.properties, again3?.properties]).toEqual([lost2?.properties, lost3?.properties]);
    expect([again2?.json(), again3?.json()]).toEqual([{ n: 2 }, { n: 3 }]);

    again2?.ack();
    again3?.ack();
    expect(await Promise.all(rest)).toEqual([{ messageId: lost2?.messageId }, { messageId: lost3?.messageId }]);
    expect(warren.health().publisher).toMatchObject({ published: 3, confirmed: 3, failed: 0 });
  });

  it('after the broker closes the channel with an error, re-sends the unconfirmed messages one at a time, in order', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const publishes = [1, 2].map((n) => warren.publish(Ping, { n }));
    const [lost1, lost2] = transport.published;
    transport.publishChannel().closeByBroker(541, 'INTERNAL_ERROR - something broke');

    // Either may be what the broker closed the channel for: each goes out alone, to find out.
    await transport.waitFor(() => transport.published.length === 3, 'the first re-sent');
    expect(transport.published[2]?.messageId).toBe(lost1?.messageId);
    expect(warren.health().publisher).toMatchObject({ inFlight: 1, buffered: 1 });
    transport.published[2]?.ack();
    expect(transport.published[3]?.messageId).toBe(lost2?.messageId);
    transport.published[3]?.ack();
    expect(await Promise.all(publishes)).toEqual([{ messageId: lost1?.messageId }, { messageId: lost2?.messageId }]);
  });

  it('fails with PUBLISH_FAILED a message the broker closes the channel on again while it is alone in flight; the others go on', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const poison = rejection(warren.publish(Ping, { n: 1 }));
    const fine = warren.publish(Ping, { n: 2 });
    transport.publishChannel().closeByBroker(541, 'INTERNAL_ERROR');
    await transport.waitFor(() => transport.published.length === 3, 'the first re-sent alone');
    transport.publishChannel().closeByBroker(541, 'INTERNAL_ERROR');

    const err = await poison;
    expect(err.code).toBe('PUBLISH_FAILED');
    expect(err).toMatchObject({ replyCode: 541 });
    await transport.waitFor(() => transport.published.length === 4, 'the other re-sent');
    expect(transport.published.map((m) => m.json())).toEqual([{ n: 1 }, { n: 2 }, { n: 1 }, { n: 2 }]);
    transport.published[3]?.ack();
    await fine;
    expect(warren.health().publisher).toMatchObject({ confirmed: 1, failed: 1, buffered: 0, bufferedBytes: 0 }); // the failed one left nothing behind
  });

  it('fails only the publish whose exchange the broker refused (404); the others on that channel are re-published', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const before = warren.publish(Ping, { n: 1 });
    const ghost = rejection(warren.publish(Ghost, { n: 2 }));
    const after = warren.publish(Ping, { n: 3 });
    const original = transport.publishChannel();
    original.closeByBroker(404, "NOT_FOUND - no exchange 'ghosts' in vhost '/'");

    const err = await ghost;
    expect(err.code).toBe('PUBLISH_FAILED');
    expect(err).toMatchObject({ replyCode: 404 });
    expect(err.message).toContain("no exchange 'ghosts'");

    await transport.waitFor(() => transport.published.length === 5, 'the other two re-published');
    const again = transport.published.slice(3);
    expect(again.map((m) => [m.exchange, m.json()])).toEqual([
      ['pings', { n: 1 }],
      ['pings', { n: 3 }],
    ]);
    transport.confirmAll();
    await Promise.all([before, after]);
    expect(warren.health().publisher).toMatchObject({ published: 3, confirmed: 2, failed: 1 });
  });

  it('rejects a message the broker returned as unroutable with UNROUTABLE (the ack after the return changes nothing)', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const publish = rejection(warren.publish(Ping, { n: 1 }, { routingKey: 'nowhere' }));
    expect(transport.published[0]?.properties.mandatory).toBe(true);
    transport.published[0]?.returnUnroutable(312, 'NO_ROUTE');
    const err = await publish;
    expect(err.code).toBe('UNROUTABLE');
    expect(err).toMatchObject({ replyCode: 312, replyText: 'NO_ROUTE' });
    expect(warren.health().publisher).toMatchObject({ inFlight: 0, returned: 1, confirmed: 0 });
  });

  it('rejects a message the broker nacked with PUBLISH_NACKED', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const publish = rejection(warren.publish(Ping, { n: 1 }));
    transport.published[0]?.nack();
    expect((await publish).code).toBe('PUBLISH_NACKED');
    expect(warren.health().publisher).toMatchObject({ inFlight: 0, nacked: 1, confirmed: 0 });
  });

  it('fails connect() with ACCESS_REFUSED when the broker refuses the login, without retrying', async () => {
    expect.hasAssertions();
    const transport = new ScriptedTransport();
    transport.failNext('connect', new Error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"'));
    const err = await rejection(connect({ urls: ['amqp://fake'], transport, topology }));
    expect(err.code).toBe('ACCESS_REFUSED');
    expect(transport.links).toHaveLength(0);
  });

  it('keeps publishes waiting while the publish channel cannot be reopened, and sends them once it is', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    transport.failNext('channel', new Error('No channels left to allocate'));
    transport.publishChannel().closeByBroker(541, 'INTERNAL_ERROR');
    const publish = warren.publish(Ping, { n: 1 });
    await transport.waitFor(() => transport.of('failed').length === 1, 'a failed attempt to reopen the channel');
    expect(transport.published).toHaveLength(0);
    expect(warren.health().publisher).toMatchObject({ buffered: 1 });
    await transport.waitFor(() => transport.published.length === 1, 'the message sent on a channel opened after the failure');
    transport.confirmAll();
    await expect(publish).resolves.toEqual({ messageId: transport.published[0]?.messageId });
  });

  describe('deadlines (fake clock)', () => {
    it('rejects a sent message with no confirm by its deadline with PUBLISH_TIMEOUT, sent: true', async () => {
      expect.hasAssertions();
      const { warren, transport } = await start({ timeout: 1000 });
      fakeClock();
      const publish = rejection(warren.publish(Ping, { n: 1 }));
      vi.advanceTimersByTime(999);
      expect(warren.health().publisher.timedOut).toBe(0);
      vi.advanceTimersByTime(200);
      const err = await publish;
      expect(err.code).toBe('PUBLISH_TIMEOUT');
      expect(err).toMatchObject({ sent: true, timeoutMs: 1000 });

      transport.published[0]?.ack(); // a late confirm: the caller already has its answer
      expect(warren.health().publisher).toMatchObject({ timedOut: 1, confirmed: 0, inFlight: 0 });
    });

    it('rejects a message still waiting to be sent with PUBLISH_TIMEOUT, sent: false, and never sends it', async () => {
      expect.hasAssertions();
      const { warren, transport } = await start();
      fakeClock();
      const release = transport.hold('connect');
      transport.link('publish').drop();
      const publish = rejection(warren.publish(Ping, { n: 1 }, { timeoutMs: 500 }));
      vi.advanceTimersByTime(600);
      const err = await publish;
      expect(err.code).toBe('PUBLISH_TIMEOUT');
      expect(err).toMatchObject({ sent: false });

      release();
      const later = warren.publish(Ping, { n: 2 });
      await transport.waitFor(() => transport.published.length === 1, 'the next message sent');
      transport.confirmAll();
      await later;
      expect(bodies(transport)).toEqual([{ n: 2 }]);
    });

    it("with whenFull 'wait', rejects with PUBLISH_BUFFER_FULL when no room frees up by the deadline", async () => {
      expect.hasAssertions();
      const { warren, transport } = await start({ maxBufferedMessages: 1, whenFull: 'wait', timeout: 1000 });
      fakeClock();
      const release = transport.hold('connect');
      transport.link('publish').drop();
      const waiting = rejection(warren.publish(Ping, { n: 1 }));
      const waitingForRoom = rejection(warren.publish(Ping, { n: 2 }));
      vi.advanceTimersByTime(1100);
      expect((await waitingForRoom).code).toBe('PUBLISH_BUFFER_FULL');
      expect((await waiting).code).toBe('PUBLISH_TIMEOUT');
      expect(warren.health().publisher).toMatchObject({ buffered: 0, waitingForRoom: 0, timedOut: 1, failed: 1 });
      release();
    });
  });

  it('counts each publish once in health().publisher, by what became of it', async () => {
    expect.hasAssertions();
    const { warren, transport } = await start({ timeout: 1000 });
    fakeClock();
    const confirmed = warren.publish(Ping, { n: 1 });
    const nacked = rejection(warren.publish(Ping, { n: 2 }));
    const returned = rejection(warren.publish(Ping, { n: 3 }));
    const timedOut = rejection(warren.publish(Ping, { n: 4 }));
    const [m1, m2, m3] = transport.published;
    m1?.ack();
    m2?.nack();
    m3?.returnUnroutable();
    vi.advanceTimersByTime(1100);
    await Promise.all([confirmed, nacked, returned, timedOut]);
    const failed = rejection(warren.publish(Ghost, { n: 5 }));
    transport.publishChannel().closeByBroker(404, "NOT_FOUND - no exchange 'ghosts' in vhost '/'");
    await failed;
    expect(warren.health().publisher).toEqual({
      inFlight: 0,
      buffered: 0,
      bufferedBytes: 0,
      waitingForRoom: 0,
      published: 5,
      confirmed: 1,
      nacked: 1,
      returned: 1,
      timedOut: 1,
      failed: 1,
    });
  });

  it("refuses a publish after close() has finished as closed, not as 'closing'", async () => {
    expect.hasAssertions();
    const { warren, transport } = await start();
    const pending = warren.publish(Ping, { n: 1 });
    const closing = warren.close();
    transport.published[0]?.ack();
    await pending;
    await closing;
    const after = await rejection(warren.publish(Ping, { n: 3 }));
    expect(after).toMatchObject({ code: 'CLOSED', message: expect.stringMatching(/warren is closed\./) });
  });
});
