// Routing as RabbitMQ decides it, checked on both transports (see harness.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage, defineTopology, type ExchangeType } from '../../src/index.js';
import { harness, side, type Harness } from './harness.js';

let h: Harness;
beforeEach(() => {
  h = harness();
});
afterEach(async () => {
  await h.close();
});

const Note = z.object({ n: z.number() });

/** One exchange of `type`, a queue per binding, and a contract publishing to the exchange. */
function exchangeWith(type: ExchangeType, bindings: Record<string, { routingKey?: string; arguments?: Record<string, unknown> }>) {
  const exchange = h.name('ex');
  const queues = Object.fromEntries(Object.keys(bindings).map((k) => [k, h.name(`q-${k}`)]));
  const topology = defineTopology({
    exchanges: { [exchange]: { type } },
    queues: Object.fromEntries(Object.entries(bindings).map(([k, b]) => [queues[k] as string, { bindings: [{ exchange, routingKey: b.routingKey ?? '', ...(b.arguments ? { arguments: b.arguments } : {}) }] }])),
  });
  const message = defineMessage({ name: 'note', exchange, routingKey: 'x', schema: Note });
  return { exchange, queues, topology, message };
}

describe(`routing (${side})`, () => {
  it('topic: * is exactly one word, # zero or more', async () => {
    const { queues, topology, message } = exchangeWith('topic', {
      star: { routingKey: 'order.*' },
      hash: { routingKey: 'order.#' },
      eu: { routingKey: '#.eu' },
      mid: { routingKey: '*.*.eu' },
    });
    const w = await h.start({ topology, messages: [message] });
    for (const key of ['order.placed', 'order.placed.eu', 'order', 'refund.x.eu', 'eu']) {
      await w.publish(message, { n: 1 }, { routingKey: key, mandatory: false });
    }
    const counts = Object.fromEntries(await Promise.all(Object.entries(queues).map(async ([k, q]) => [k, await h.count(q)])));
    // order.* ← order.placed; order.# ← order.placed, order.placed.eu, order; #.eu ← order.placed.eu, refund.x.eu, eu; *.*.eu ← order.placed.eu, refund.x.eu
    expect(counts).toEqual({ star: 1, hash: 3, eu: 3, mid: 2 });
  });

  it('direct: the routing key equals the binding key; fanout: every queue', async () => {
    const direct = exchangeWith('direct', { a: { routingKey: 'a' }, b: { routingKey: 'b' } });
    const fanout = exchangeWith('fanout', { one: {}, two: {} });
    const toFanout = defineMessage({ name: 'fanned', exchange: fanout.exchange, routingKey: 'x', schema: Note });
    const topology = defineTopology({
      exchanges: { [direct.exchange]: { type: 'direct' }, [fanout.exchange]: { type: 'fanout' } },
      queues: {
        [direct.queues.a as string]: { bindings: [{ exchange: direct.exchange, routingKey: 'a' }] },
        [direct.queues.b as string]: { bindings: [{ exchange: direct.exchange, routingKey: 'b' }] },
        [fanout.queues.one as string]: { bindings: [{ exchange: fanout.exchange, routingKey: '' }] },
        [fanout.queues.two as string]: { bindings: [{ exchange: fanout.exchange, routingKey: 'ignored' }] },
      },
    });
    const w = await h.start({ topology, messages: [direct.message, toFanout] });
    await w.publish(direct.message, { n: 1 }, { routingKey: 'a' });
    await w.publish(direct.message, { n: 2 }, { routingKey: 'a' });
    await w.publish(toFanout, { n: 3 }, { routingKey: 'anything' });
    expect([await h.count(direct.queues.a as string), await h.count(direct.queues.b as string)]).toEqual([2, 0]);
    expect([await h.count(fanout.queues.one as string), await h.count(fanout.queues.two as string)]).toEqual([1, 1]);
  });

  it('headers: x-match all needs every header, any needs one', async () => {
    const { queues, topology, message } = exchangeWith('headers', {
      all: { arguments: { 'x-match': 'all', region: 'eu', tier: 'gold' } },
      any: { arguments: { 'x-match': 'any', region: 'eu', tier: 'gold' } },
    });
    const w = await h.start({ topology, messages: [message] });
    await w.publish(message, { n: 1 }, { headers: { region: 'eu', tier: 'gold' }, mandatory: false });
    await w.publish(message, { n: 2 }, { headers: { region: 'eu', tier: 'silver' }, mandatory: false });
    await w.publish(message, { n: 3 }, { headers: { region: 'us' }, mandatory: false });
    expect([await h.count(queues.all as string), await h.count(queues.any as string)]).toEqual([1, 2]);
  });

  it('an alternate exchange takes what the exchange cannot route; a mandatory message nothing takes fails UNROUTABLE', async () => {
    const main = h.name('ex');
    const ae = h.name('ae');
    const lost = h.name('q-lost');
    const routed = h.name('q-routed');
    const bare = h.name('ex-bare');
    const topology = defineTopology({
      exchanges: { [main]: { type: 'direct', alternateExchange: ae }, [ae]: { type: 'fanout' }, [bare]: { type: 'direct' } },
      queues: { [lost]: { bindings: [{ exchange: ae, routingKey: '' }] }, [routed]: { bindings: [{ exchange: main, routingKey: 'known' }] } },
    });
    const viaMain = defineMessage({ name: 'main', exchange: main, routingKey: 'known', schema: Note });
    const viaBare = defineMessage({ name: 'bare', exchange: bare, routingKey: 'nowhere', schema: Note });
    const w = await h.start({ topology, messages: [viaMain, viaBare] });
    await w.publish(viaMain, { n: 1 });
    await w.publish(viaMain, { n: 2 }, { routingKey: 'unknown' });
    expect([await h.count(routed), await h.count(lost)]).toEqual([1, 1]);
    expect((await h.messages(lost)).map((m) => m.body)).toEqual([{ n: 2 }]);
    await expect(w.publish(viaBare, { n: 3 })).rejects.toMatchObject({ code: 'UNROUTABLE' });
  });

  it('an exchange bound to an exchange passes on what its binding matches', async () => {
    const upstream = h.name('ex-up');
    const downstream = h.name('ex-down');
    const queue = h.name('q');
    const topology = defineTopology({
      exchanges: { [upstream]: { type: 'topic' }, [downstream]: { type: 'direct' } },
      queues: { [queue]: { bindings: [{ exchange: downstream, routingKey: 'eu.order' }] } },
    });
    const message = defineMessage({ name: 'up', exchange: upstream, routingKey: 'eu.order', schema: Note });
    const w = await h.start({ topology, messages: [message] });
    await h.bindExchange(downstream, upstream, 'eu.*');
    await w.publish(message, { n: 1 });
    await w.publish(message, { n: 2 }, { routingKey: 'eu.refund', mandatory: false });
    await w.publish(message, { n: 3 }, { routingKey: 'us.order', mandatory: false });
    expect((await h.messages(queue)).map((m) => m.body)).toEqual([{ n: 1 }]);
  });

  it('a binding to an exchange that routes nowhere still counts as routed: no alternate exchange, a mandatory message comes back', async () => {
    const main = h.name('ex');
    const downstream = h.name('ex-down');
    const ae = h.name('ae');
    const lost = h.name('q-lost');
    const topology = defineTopology({
      exchanges: { [main]: { type: 'direct', alternateExchange: ae }, [downstream]: { type: 'direct' }, [ae]: { type: 'fanout' } },
      queues: { [lost]: { bindings: [{ exchange: ae, routingKey: '' }] } },
    });
    const message = defineMessage({ name: 'main', exchange: main, routingKey: 'k', schema: Note });
    const w = await h.start({ topology, messages: [message] });
    await h.bindExchange(downstream, main, 'k');
    await expect(w.publish(message, { n: 1 })).rejects.toMatchObject({ code: 'UNROUTABLE' });
    await w.publish(message, { n: 2 }, { routingKey: 'other' });
    expect((await h.messages(lost)).map((m) => m.body)).toEqual([{ n: 2 }]);
  });
});

