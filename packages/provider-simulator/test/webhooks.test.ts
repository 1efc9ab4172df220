/**
 * The simulator's webhook events: signed so Stripe's SDK accepts them, typed by the change, and the
 * delivery faults (drop, duplicate, delay) do what they say. Rates are 0 or 1 and the RNG is seeded.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterEach, describe, expect, it } from 'vitest';
import { createStripeProvider } from '../../../functions/adapters/provider/stripe-provider';
import { startProviderSimulator, type ProviderSimulator } from '../src/provider-simulator';

const SECRET = 'whsec_simulator_test';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A receiver that verifies every event with Stripe's SDK, as the service does. */
async function receiver() {
  const events: Array<{ id: string; type: string; at: number; object: any }> = [];
  let refused = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const e = Stripe.webhooks.constructEvent(Buffer.concat(chunks), String(req.headers['stripe-signature']), SECRET);
        events.push({ id: e.id, type: e.type, at: Date.now(), object: e.data.object });
        res.writeHead(200).end('{}');
      } catch {
        refused++;
        res.writeHead(400).end('{}');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events, refused: () => refused };
}

async function simWith(faults: Record<string, number>) {
  const rx = await receiver();
  const sim: ProviderSimulator = await startProviderSimulator({ port: 0, seed: 3, faults, webhook: { url: rx.url, secret: SECRET } });
  cleanups.push(() => sim.stop());
  const provider = createStripeProvider({ apiKey: 'sk_test_x', host: '127.0.0.1', port: sim.port, protocol: 'http', timeoutMs: 2000, tag: { service: 'idempotent-payments', stage: 'test' } });
  /** One charged payment: create + confirm. */
  const charge = async (paymentId: string) => {
    const intent = await provider.createIntent({ paymentId, amountMinor: 1000, currency: 'EUR' });
    await provider.confirmIntent(intent.id, { paymentId, attempt: 1, paymentMethod: 'tok_success' });
    return intent.id;
  };
  const settle = async (n: number) => {
    const deadline = Date.now() + 10_000;
    while (rx.events.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sim.webhooksSettled();
  };
  return { sim, rx, charge, settle };
}

describe('provider simulator webhooks', () => {
  it("signs each change as Stripe does (the SDK verifies it) with the intent's metadata", async () => {
    const { sim, rx, charge, settle } = await simWith({});
    const intentId = await charge('pay_wh_1');
    await settle(2);
    expect(rx.events.map((e) => e.type)).toEqual(['payment_intent.created', 'payment_intent.succeeded']);
    expect(rx.events[1]!.object).toMatchObject({ id: intentId, object: 'payment_intent', status: 'succeeded', metadata: { payment_id: 'pay_wh_1', service: 'idempotent-payments', stage: 'test' } });
    expect(new Set(rx.events.map((e) => e.id)).size).toBe(2);
    expect(rx.refused()).toBe(0);
    expect(sim.webhookStats()).toMatchObject({ events: 2, delivered: 2, failed: 0 });
  });

  it('webhookDropRate 1 sends nothing; webhookDuplicateRate 1 sends every event twice under the same id', async () => {
    const dropped = await simWith({ webhookDropRate: 1 });
    await dropped.charge('pay_wh_2');
    await dropped.settle(0);
    expect(dropped.rx.events).toEqual([]);
    expect(dropped.sim.webhookStats()).toMatchObject({ events: 2, dropped: 2, delivered: 0 });

    const doubled = await simWith({ webhookDuplicateRate: 1 });
    await doubled.charge('pay_wh_3');
    await doubled.settle(4);
    const ids = doubled.rx.events.map((e) => e.id);
    expect(ids).toHaveLength(4);
    expect(new Set(ids).size).toBe(2);
  });

  it('webhookDelayMs holds events back by a random time up to it (so they can arrive out of order)', async () => {
    const { rx, charge, settle } = await simWith({ webhookDelayMs: 400 });
    const started = Date.now();
    for (let i = 0; i < 5; i++) await charge(`pay_wh_d${i}`);
    await settle(10);
    expect(rx.events).toHaveLength(10);
    expect(Math.max(...rx.events.map((e) => e.at - started))).toBeGreaterThan(50);
  });
});
