import { describe, expect, it } from 'vitest';
import app from '../../consumers/app.js';
import billing from '../../consumers/billing.js';
import { OrderPlaced } from '../../producers/contracts.js';
import { createTestWarren, raw, runHandler } from '../../src/testing/index.js';

const order = { orderId: 'o-1', customerId: 'c-1', amountCents: 1299, items: [{ sku: 'book', quantity: 1 }] };

describe('smoke', () => {
  it('runs the app', async () => {
    const t = await createTestWarren(app);
    const d = await t.publish(OrderPlaced, order);
    expect(d.map((r) => [r.consumer, r.action])).toEqual(expect.arrayContaining([['billing', 'ack'], ['shipping', 'ack']]));
    const big = await t.publish(OrderPlaced, { ...order, orderId: 'o-2', amountCents: 10_000_000 });
    expect(big.find((r) => r.consumer === 'billing')?.reason).toBe('non-retryable');
    expect(t.deadLetters(billing).map((m) => m.reason)).toEqual(['non-retryable']);
    await t.close();
  });
  it('runHandler', async () => {
    const r = await runHandler(billing, order);
    expect(r.action).toBe('ack');
    const bad = await runHandler(billing, raw('{"orderId":'));
    expect(bad).toMatchObject({ action: 'dead-letter', reason: 'invalid' });
    expect(bad.copy?.queue).toBe('billing.orders.dlq');
  });
});
