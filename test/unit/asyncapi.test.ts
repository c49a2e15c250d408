import { readFileSync } from 'node:fs';
import { DiagnosticSeverity, Parser } from '@asyncapi/parser';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import shop from '../../consumers/app.js';
import { formatDocument } from '../../src/cli/docs.js';
import { asyncApiDocument, ConfigError, defineApp, defineConsumer, defineMessage, planApp, WarrenHeader, type App, type AsyncApiDocument } from '../../src/index.js';
import inventory from '../fixtures/asyncapi-app.js';

const parser = new Parser();
/** DiagnosticSeverity.Error as a number: the diagnostics come typed with another copy of @stoplight/types and its enum. */
const ERROR: number = DiagnosticSeverity.Error;

/** The errors the official AsyncAPI parser finds in a document (its warnings and hints aside). */
async function errorsOf(doc: AsyncApiDocument | string): Promise<string[]> {
  const diagnostics = await parser.validate(doc as Parameters<Parser['validate']>[0]);
  return diagnostics.filter((d) => Number(d.severity) === ERROR).map((d) => `${d.path.join('.')}: ${d.message}`);
}

const handle = (): void => undefined;
const amqp = (doc: AsyncApiDocument, channel: string): Record<string, unknown> => doc.channels[channel]?.bindings.amqp ?? {};
const props = (schema: Record<string, unknown> | undefined): Record<string, Record<string, unknown>> => (schema?.['properties'] ?? {}) as Record<string, Record<string, unknown>>;

describe('asyncApiDocument: valid AsyncAPI 3.0', () => {
  it('the example app (consumers/app.ts), as the YAML `warren docs` writes: the official parser finds no error', async () => {
    expect.hasAssertions();
    const yaml = formatDocument(shop, asyncApiDocument(shop), 'yaml');
    expect(await errorsOf(yaml)).toEqual([]);
    expect(await errorsOf(formatDocument(shop, asyncApiDocument(shop), 'json'))).toEqual([]);
  });

  it('an app with every exchange type, classic, quorum and stream queues, dead letters and retries: no error, and every $ref resolves', async () => {
    expect.hasAssertions();
    const doc = asyncApiDocument(inventory);
    expect(await errorsOf(doc)).toEqual([]);
    const { document } = await parser.parse(doc as never);
    expect(document).toBeDefined();
    expect(document?.channels().length).toBe(Object.keys(doc.channels).length);
    expect(document?.operations().length).toBe(Object.keys(doc.operations).length);
    // The recursive part of a payload resolves through its rebased $ref.
    const category = document?.messages().get('audit.entry')?.payload()?.properties()?.['category'];
    expect(category?.properties()?.['children']?.type()).toBe('array');
  });

  it('the committed docs/asyncapi.yaml is what `npm run docs:asyncapi` writes now (run it after changing the example app or warren docs)', () => {
    const committed = readFileSync(new URL('../../docs/asyncapi.yaml', import.meta.url), 'utf8');
    expect(committed).toBe(formatDocument(shop, asyncApiDocument(shop), 'yaml'));
  });
});

describe('asyncApiDocument: channels', () => {
  const doc = asyncApiDocument(inventory);

  it.each<[string, string, Record<string, unknown>]>([
    ['a topic exchange', 'inv.events', { name: 'inv.events', type: 'topic', durable: true, autoDelete: false, vhost: 'inventory' }],
    ['a direct exchange', 'inv.commands', { name: 'inv.commands', type: 'direct', durable: true, autoDelete: false, vhost: 'inventory' }],
    ['a transient auto-delete fanout exchange', 'inv.broadcast', { name: 'inv.broadcast', type: 'fanout', durable: false, autoDelete: true, vhost: 'inventory' }],
    ['an internal headers exchange', 'inv.match', { name: 'inv.match', type: 'headers', durable: true, autoDelete: false, vhost: 'inventory' }],
    ['a built-in exchange it binds to and publishes to', 'amq.topic', { name: 'amq.topic', type: 'topic', vhost: 'inventory' }],
    ['the default exchange', 'amq.default', { name: '', type: 'default', vhost: 'inventory' }],
    ["another app's exchange a consumed contract names", 'legacy.orders', { name: 'legacy.orders', vhost: 'inventory' }],
  ])('%s: an AMQP routingKey channel with the exchange', (_case, id, exchange) => {
    expect(amqp(doc, id)).toMatchObject({ is: 'routingKey', bindingVersion: '0.3.0' });
    expect(amqp(doc, id)['exchange']).toEqual(exchange);
    expect(doc.channels[id]?.address).toBe(exchange['name']);
  });

  it("an exchange's arguments and internal flag, which the AMQP binding has no field for, are x-warren-* fields", () => {
    expect(amqp(doc, 'inv.commands')['x-warren-arguments']).toEqual({ 'alternate-exchange': 'inv.unrouted' });
    expect(amqp(doc, 'inv.match')['x-warren-internal']).toBe(true);
  });

  it('a queue: an AMQP queue channel with its flags; its type, arguments and bindings as x-warren-* fields', () => {
    expect(amqp(doc, 'inv.stock')).toEqual({
      is: 'queue',
      queue: { name: 'inv.stock', durable: true, exclusive: false, autoDelete: false, vhost: 'inventory' },
      'x-warren-queue-type': 'quorum',
      'x-warren-arguments': { 'x-queue-type': 'quorum', 'x-delivery-limit': 5, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'inv.stock.dlq' },
      'x-warren-bindings': [{ exchange: 'inv.events', routingKey: 'stock.#' }],
      bindingVersion: '0.3.0',
    });
    expect(amqp(doc, 'inv.audit')['x-warren-queue-type']).toBe('stream');
    expect(amqp(doc, 'inv.audit')['x-warren-bindings']).toEqual([
      { exchange: 'inv.broadcast', routingKey: '' },
      { exchange: 'amq.topic', routingKey: 'audit.*' },
    ]);
    expect(amqp(doc, 'inv.flagged')['x-warren-bindings']).toEqual([{ exchange: 'inv.match', routingKey: '', arguments: { 'x-match': 'any', flagged: true } }]);
    expect(amqp(doc, 'inv.restock')['x-warren-arguments']).toMatchObject({ 'x-queue-type': 'classic', 'x-max-length': 1000, 'x-overflow': 'reject-publish' });
    expect(amqp(doc, 'inv.replies')['queue']).toMatchObject({ exclusive: true, autoDelete: true });
    expect(doc.channels['inv.replies']?.description).toContain('exclusive');
  });

  it("a queue each declaration of planApp(), the exclusive ones and those consumed but declared elsewhere; nothing else", () => {
    const queues = Object.values(doc.channels).filter((c) => c.bindings.amqp['is'] === 'queue').map((c) => c.address);
    const planned = planApp(inventory).filter((e) => e.kind === 'queue').map((e) => e.name);
    expect(queues.sort()).toEqual([...planned, 'inv.replies', 'legacy.orders.inbox'].sort());
    expect(doc.channels['legacy.orders.inbox']?.description).toContain('not declared by this app');
  });

  it('a dead-letter queue says what it holds; its message is the dead letter, with every x-warren-* header described', () => {
    const dlq = doc.channels['inv.stock.dlq'];
    expect(dlq?.title).toBe('Dead-letter queue inv.stock.dlq');
    expect(dlq?.description).toContain("Dead letters of 'inv.stock'");
    expect(dlq?.description).toContain('warren dlq replay inv.stock');
    expect(amqp(doc, 'inv.stock.dlq')).toMatchObject({ 'x-warren-queue-type': 'quorum', 'x-warren-dead-letters-of': 'inv.stock' });
    expect(dlq?.messages).toEqual({ 'stock.changed.dead-letter': { $ref: '#/components/messages/stock.changed.dead-letter' } });
    const deadLetter = doc.components.messages['stock.changed.dead-letter'];
    expect(Object.keys(props(deadLetter?.headers)).sort()).toEqual([...Object.values(WarrenHeader), 'x-death'].sort());
    for (const header of Object.values(props(deadLetter?.headers))) expect(header['description']).toEqual(expect.any(String));
    expect(props(deadLetter?.headers)[WarrenHeader.reason]?.['description']).toContain('retries-exhausted');
  });

  it('a retry wait queue says which queue it returns messages to, and after how long', () => {
    const wait = doc.channels['inv.stock.retry.30s'];
    expect(wait?.title).toBe('Retry wait queue inv.stock.retry.30s');
    expect(wait?.description).toContain("back to 'inv.stock'");
    expect(amqp(doc, 'inv.stock.retry.30s')).toMatchObject({
      'x-warren-queue-type': 'quorum',
      'x-warren-retry-of': 'inv.stock',
      'x-warren-delay-ms': 30_000,
      'x-warren-arguments': expect.objectContaining({ 'x-message-ttl': 30_000, 'x-dead-letter-routing-key': 'inv.stock' }),
    });
    expect(wait?.messages).toEqual({ 'stock.changed': { $ref: '#/components/messages/stock.changed' } });
    // The app's default policy gives a consumer without its own one wait queue; the backoff policy one per delay.
    expect(Object.keys(doc.channels).filter((id) => id.startsWith('inv.restock.retry.'))).toEqual(['inv.restock.retry.5s']);
    expect(Object.keys(doc.channels).filter((id) => id.startsWith('legacy.orders.inbox.retry.'))).toHaveLength(7);
  });
});

describe('asyncApiDocument: operations', () => {
  const doc = asyncApiDocument(inventory);

  it('send: one for each contract the app publishes, on its exchange, the routing key in cc', () => {
    expect(Object.entries(doc.operations).filter(([, o]) => o.action === 'send').map(([id]) => id)).toEqual([
      'send.stock.changed',
      'send.restock.requested',
      'send.audit.entry',
      'send.ping',
      'send.item.flagged',
    ]);
    expect(doc.operations['send.stock.changed']).toMatchObject({
      channel: { $ref: '#/channels/inv.events' },
      messages: [{ $ref: '#/channels/inv.events/messages/stock.changed' }],
      bindings: { amqp: { cc: ['stock.changed'], deliveryMode: 2, mandatory: true, timestamp: true, bindingVersion: '0.3.0' } },
    });
    expect(doc.operations['send.restock.requested']?.bindings.amqp).toMatchObject({ cc: ['restock'], deliveryMode: 1, mandatory: false });
    expect(doc.operations['send.ping']?.channel).toEqual({ $ref: '#/channels/amq.default' });
  });

  it('receive: one for each consumer, on its queue, with its settings and what it does with a failure', () => {
    expect(Object.entries(doc.operations).filter(([, o]) => o.action === 'receive').map(([id]) => id)).toEqual([
      'receive.stock',
      'receive.restock',
      'receive.audit',
      'receive.flagged',
      'receive.replies',
      'receive.legacy',
    ]);
    const stock = doc.operations['receive.stock'];
    expect(stock).toMatchObject({
      channel: { $ref: '#/channels/inv.stock' },
      messages: [{ $ref: '#/channels/inv.stock/messages/stock.changed' }],
      bindings: { amqp: { ack: true } },
      'x-warren-consumer': { name: 'stock', prefetch: 10, concurrency: 1, ackMode: 'auto', retry: { maxAttempts: 4, delays: [1000, 30_000] } },
    });
    expect(stock?.description).toContain('retried after 1s, 30s, 30s (4 attempts in all)');
    expect(stock?.description).toContain("Dead letters go to queue 'inv.stock.dlq'");
    expect(doc.operations['receive.audit']?.bindings.amqp['ack']).toBe(false);
    expect(doc.operations['receive.audit']?.description).toContain('at most once');
    expect(doc.operations['receive.flagged']?.description).toContain('requeues it');
    expect(doc.operations['receive.restock']?.['x-warren-consumer']).toMatchObject({ ackMode: 'manual', retry: { maxAttempts: 3, delays: [5000] } });
  });
});

describe('asyncApiDocument: payloads (zod → JSON Schema)', () => {
  const schemas = asyncApiDocument(inventory).components.schemas;

  it("is what a sender must send: zod's input side (a field with a default may be left out; a transform's input travels)", () => {
    expect(schemas['stock.changed']).toMatchObject({ type: 'object', required: ['sku', 'delta'] });
    expect(props(schemas['stock.changed'])['warehouse']).toEqual({ type: 'string', default: 'main' });
    expect(props(schemas['stock.changed'])['sku']?.['description']).toBe('the stock-keeping unit');
    expect(props(schemas['restock.requested'])['quantity']).toEqual({ type: 'string', pattern: '^\\d+$' });
    expect(schemas['stock.changed']).not.toHaveProperty('$schema');
  });

  it('a part JSON Schema cannot express (a Date, a bigint, a z.custom()) accepts anything and says so; the rest is kept', () => {
    const audit = props(schemas['audit.entry']);
    for (const field of ['at', 'sequence', 'actor']) expect(audit[field]).toEqual({ description: expect.stringContaining('Not expressible in JSON Schema') });
    expect(audit['at']?.['description']).toContain('Date');
    expect(audit['category']).toEqual({ $ref: '#/components/schemas/audit.entry/definitions/__schema0' });
  });

  it('a schema that cannot be converted at all: the document says so instead of failing', () => {
    const Broken = defineMessage({ name: 'broken', exchange: '', routingKey: 'q', schema: z.lazy((): z.ZodString => { throw new Error('boom'); }) });
    const doc = asyncApiDocument(defineApp({ name: 'broken', messages: [Broken] }));
    expect(doc.components.schemas['broken']).toEqual({ description: expect.stringContaining("The contract's zod schema could not be converted to JSON Schema (") });
  });

  it('a message carries its contract: name, JSON, the AMQP type property, the headers warren adds on a retry', () => {
    const m = asyncApiDocument(shop).components.messages['order.placed'];
    expect(m).toMatchObject({ name: 'order.placed', contentType: 'application/json', payload: { $ref: '#/components/schemas/order.placed' }, bindings: { amqp: { messageType: 'order.placed' } } });
    expect(props(m?.headers)).toHaveProperty([WarrenHeader.attempt]);
  });
});

describe('asyncApiDocument: servers and info', () => {
  const app = (urls?: string[]): App => defineApp({ name: 'svc', consumers: [defineConsumer({ queue: 'q', message: defineMessage({ name: 'm', exchange: '', routingKey: 'q', schema: z.object({}) }), handle })], ...(urls !== undefined ? { connect: { urls } } : {}) });

  it("the app's connect.urls, with neither password nor user name; the channels take the first one's vhost", () => {
    const doc = asyncApiDocument(inventory);
    expect(doc.servers).toEqual({
      'rabbit-1.internal': { host: 'rabbit-1.internal:5672', protocol: 'amqp', protocolVersion: '0.9.1', pathname: '/inventory', description: expect.any(String) },
      'rabbit-2.internal': { host: 'rabbit-2.internal:5671', protocol: 'amqps', protocolVersion: '0.9.1', pathname: '/inventory', description: expect.any(String) },
    });
    const text = JSON.stringify(doc);
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain('inv:');
  });

  it('a placeholder localhost:5672 when the app names no broker; servers given instead of the app’s', () => {
    expect(asyncApiDocument(app()).servers).toEqual({ localhost: { host: 'localhost:5672', protocol: 'amqp', protocolVersion: '0.9.1', description: expect.stringContaining('placeholder') } });
    const doc = asyncApiDocument(app(['amqp://a:b@ignored:5672']), { servers: ['amqps://user:pw@rabbit.prod/%2F', 'amqp://rabbit.prod:5673'] });
    expect(doc.servers).toEqual({
      'rabbit.prod': { host: 'rabbit.prod:5671', protocol: 'amqps', protocolVersion: '0.9.1', description: expect.any(String) },
      'rabbit.prod-2': { host: 'rabbit.prod:5673', protocol: 'amqp', protocolVersion: '0.9.1', description: expect.any(String) },
    });
    expect(doc.channels['q']?.bindings.amqp['queue']).toMatchObject({ vhost: '/' });
  });

  it('a server URL that is not an AMQP one: a ConfigError naming it without its password', () => {
    const attempt = (): unknown => asyncApiDocument(app(), { servers: ['http://u:hunter2hunter2@h', 'u:hunter2hunter2@rabbit'] });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/servers\.0: 'http:\/\/u:\*\*\*@h\/' is not an amqp/);
    expect(attempt).not.toThrow(/hunter2/);
  });

  it('info: the app name and 1.0.0 unless given', () => {
    expect(asyncApiDocument(app()).info).toMatchObject({ title: 'svc', version: '1.0.0' });
    expect(asyncApiDocument(app(), { title: 'Service', version: '2.3.0' }).info).toMatchObject({ title: 'Service', version: '2.3.0' });
  });
});
