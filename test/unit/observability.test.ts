/**
 * The core counts what operators watch through its Metrics port, and the provider is traced call by
 * call with its outcome; both without any AWS service (fakes for the port and the tracer).
 */
import { describe, expect, it } from 'vitest';
import { withTracing } from '../../functions/adapters/provider/traced-provider';
import { CircuitBreaker } from '../../functions/core/circuit-breaker';
import type { Payment } from '../../functions/core/payment';
import type { MetricName, Metrics } from '../../functions/core/ports';
import { ProviderError } from '../../functions/core/ports/payment-provider';
import { PaymentProcessor } from '../../functions/core/processing/payment-processor';
import { FakeIntentProvider, type ConfirmBehaviour } from '../helpers/fake-intent-provider';
import { FakeClock, FakeQueue, FakeRepository, paymentFixture } from '../helpers/fakes';

function recordingMetrics() {
  const counts: Array<{ name: MetricName; value: number; dimensions?: Readonly<Record<string, string>> }> = [];
  const metrics: Metrics = { count: (name, value = 1, dimensions) => counts.push({ name, value, ...(dimensions ? { dimensions } : {}) }) };
  return { counts, metrics };
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

function setup(behaviours: ConfirmBehaviour[]) {
  const clock = new FakeClock();
  const repo = new FakeRepository();
  const provider = new FakeIntentProvider(() => clock.t);
  let n = 0;
  provider.confirmBehaviour = () => behaviours[Math.min(n++, behaviours.length - 1)]!;
  const queue = new FakeQueue();
  const { counts, metrics } = recordingMetrics();
  const p: Payment = paymentFixture({ metadata: {}, openShard: undefined, dueAt: undefined });

  repo.put(p);
  const processor = new PaymentProcessor({
    store: repo,
    provider,
    queue,
    breaker: new CircuitBreaker('test', { minFailingPayments: 1_000_000, now: () => clock.t }),
    config: { retryBaseSeconds: 1, retryCapSeconds: 60, leaseSeconds: 30, providerTimeoutMs: 5000 },
    clock: clock.now,
    random: () => 0.5,
    logger: silent,
    metrics,
  });
  const drain = async () => {
    for (let i = 0; i < 10 && queue.sent.length > 0; i++) {
      const { message } = queue.sent.shift()!;
      if (message.notBefore !== undefined && message.notBefore > clock.t) clock.t = message.notBefore;
      await processor.process(message);
    }
  };
  return { processor, counts, drain };
}

describe('core metrics', () => {
  it('an unclear attempt counts as unknown, schedules a retry, and is resolved before the next attempt succeeds', async () => {
    const s = setup(['timeout_not_committed', 'succeed']);
    await s.processor.process({ paymentId: 'pay_1', reason: 'created' });
    await s.drain();
    expect(s.counts).toEqual([
      { name: 'PaymentAttempts', value: 1, dimensions: { outcome: 'unknown' } },
      { name: 'RetriesScheduled', value: 1 },
      { name: 'UnknownOutcomesResolved', value: 1, dimensions: { outcome: 'not_charged' } },
      { name: 'PaymentAttempts', value: 1, dimensions: { outcome: 'succeeded' } },
    ]);
  });

  it.each([
    ['decline', 'declined'],
    ['error', 'unknown'],
    ['rate_limited', 'provider_error'],
    ['auth_error', 'outage'],
  ] as const)('a %s attempt counts as outcome %s', async (behaviour, outcome) => {
    const s = setup([behaviour]);
    await s.processor.process({ paymentId: 'pay_1', reason: 'created' });
    expect(s.counts[0]).toEqual({ name: 'PaymentAttempts', value: 1, dimensions: { outcome } });
  });
});

describe('provider tracing', () => {
  function fakeTracer() {
    const subsegments: Array<{ name: string; annotations: Record<string, string>; closed: boolean }> = [];
    const segment = {
      addNewSubsegment(name: string) {
        const sub = { name, annotations: {} as Record<string, string>, closed: false };
        subsegments.push(sub);
        return { addAnnotation: (k: string, v: string) => (sub.annotations[k] = v), addError() {}, close: () => (sub.closed = true) };
      },
    };
    let current: unknown = segment;
    const tracer = { isTracingEnabled: () => true, getSegment: () => current, setSegment: (s: unknown) => (current = s) };
    return { subsegments, tracer: tracer as unknown as Parameters<typeof withTracing>[1], current: () => current, segment };
  }

  it('wraps each provider call in a subsegment annotated with the operation and its outcome', async () => {
    const clock = new FakeClock();
    const inner = new FakeIntentProvider(() => clock.t);
    inner.confirmBehaviour = () => 'decline';
    const t = fakeTracer();
    const provider = withTracing(inner, t.tracer);
    const intent = await provider.createIntent({ paymentId: 'pay_1', amountMinor: 100, currency: 'EUR', intentSeq: 0 } as never);
    await expect(provider.confirmIntent(intent.id, { paymentId: 'pay_1', attempt: 1, paymentMethod: 'tok_x' })).rejects.toBeInstanceOf(ProviderError);
    expect(t.subsegments).toEqual([
      { name: 'provider.createIntent', annotations: { providerOperation: 'createIntent', outcome: 'requires_payment_method' }, closed: true },
      { name: 'provider.confirmIntent', annotations: { providerOperation: 'confirmIntent', outcome: 'error_declined' }, closed: true },
    ]);
    // The parent segment is current again after each call.
    expect(t.current()).toBe(t.segment);
  });
});
