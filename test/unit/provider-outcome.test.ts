import { describe, expect, it } from 'vitest';
import { INTENT_STATUSES, ProviderError, type ProviderIntent } from '../../functions/core/ports/payment-provider';
import { confirmOutcome, declineCode, errorOutcome, intentState, isProviderFailure, isUnexpectedState } from '../../functions/core/processing/provider-outcome';

const intent = (over: Partial<ProviderIntent> = {}): ProviderIntent => ({
  id: 'pi_1',
  paymentId: 'pay_1',
  status: 'requires_payment_method',
  amountMinor: 100,
  currency: 'USD',
  amountReceived: 0,
  created: 1,
  ...over,
});

describe('what an intent status means', () => {
  it.each([
    ['succeeded', 'succeeded'],
    ['canceled', 'canceled'],
    ['requires_payment_method', 'confirmable'],
    ['requires_confirmation', 'confirmable'],
    ['processing', 'in_flight'],
    ['requires_action', 'needs_action'],
    ['requires_capture', 'in_flight'],
  ] as const)('%s → %s', (status, kind) => {
    expect(intentState(intent({ status })).kind).toBe(kind);
  });

  it('covers every status the port declares', () => {
    for (const status of INTENT_STATUSES) expect(() => intentState(intent({ status }))).not.toThrow();
  });

  it('a payment method required after a failed confirmation is a decline, with our code', () => {
    const s = intentState(intent({ lastError: { code: 'card_declined', message: 'no', declineCode: 'insufficient_funds' } }));
    expect(s).toMatchObject({ kind: 'declined', code: 'INSUFFICIENT_FUNDS' });
  });

  it('after a confirmation: requires_action needs the customer (never completed server-side), processing is waited for, anything still confirmable is unknown', () => {
    expect(confirmOutcome(intent({ status: 'requires_action' })).kind).toBe('needs_action');
    for (const status of ['processing', 'requires_capture'] as const) expect(confirmOutcome(intent({ status })).kind).toBe('processing');
    expect(confirmOutcome(intent({ status: 'requires_confirmation' })).kind).toBe('unknown');
    expect(confirmOutcome(intent({ status: 'succeeded' })).kind).toBe('succeeded');
  });
});

describe('what a provider error means', () => {
  it.each([
    [new ProviderError('declined', 'card_declined', 'x', { declineCode: 'generic_decline' }), 'declined', 'CARD_DECLINED'],
    [new ProviderError('rejected', 'resource_missing', 'no such payment method'), 'declined', 'INVALID_TOKEN'],
    [new ProviderError('throttled', 'rate_limit', 'slow down', { retryAfterMs: 1000 }), 'retryable', 'RATE_LIMITED'],
    [new ProviderError('throttled', 'lock_timeout', 'busy'), 'retryable', 'RATE_LIMITED'],
    [new ProviderError('outage', 'authentication_error', 'bad key', { httpStatus: 401 }), 'outage', 'PROVIDER_AUTH_ERROR'],
    [new ProviderError('outage', 'permission_error', 'no', { httpStatus: 403 }), 'outage', 'PROVIDER_AUTH_ERROR'],
    [new ProviderError('unknown', 'HTTP_500', 'boom', { httpStatus: 500 }), 'unknown', 'PROVIDER_UNAVAILABLE'],
    [new ProviderError('unknown', 'HTTP_502', 'bad gateway', { httpStatus: 502 }), 'unknown', 'PROVIDER_UNAVAILABLE'],
    [new ProviderError('unknown', 'TIMEOUT', 'slow'), 'unknown', 'PROVIDER_TIMEOUT'],
    [new ProviderError('unknown', 'NETWORK_ERROR', 'reset'), 'unknown', 'NETWORK_ERROR'],
    [new ProviderError('unknown', 'INVALID_RESPONSE', 'garbage'), 'unknown', 'INVALID_RESPONSE'],
  ])('%s', (err, kind, code) => {
    expect(errorOutcome(err)).toMatchObject({ kind, code });
  });

  it('any 5xx is unknown (it may have committed), never a plain retryable error', () => {
    for (const status of [500, 502, 503, 504]) {
      expect(errorOutcome(new ProviderError('unknown', `HTTP_${status}`, 'x', { httpStatus: status })).kind).toBe('unknown');
    }
  });

  it('an error raised before the request left is final for the payment, never an unclear outcome', () => {
    const notSent = new ProviderError('rejected', 'request_not_sent', 'lone surrogate', { notSent: true });
    expect(errorOutcome(notSent)).toMatchObject({ kind: 'declined', code: 'REQUEST_NOT_SENT' });
    expect(isProviderFailure(errorOutcome(notSent))).toBe(false);
  });

  it('an error that is not a provider answer is rethrown (a crash is not an outcome)', () => {
    expect(() => errorOutcome(new TypeError('bug'))).toThrow(TypeError);
  });

  it('only provider-wide trouble counts against the breaker', () => {
    expect(isProviderFailure({ kind: 'declined', code: 'CARD_DECLINED', message: '' })).toBe(false);
    expect(isProviderFailure({ kind: 'succeeded', intent: intent({ status: 'succeeded' }) })).toBe(false);
    expect(isProviderFailure({ kind: 'unknown', code: 'PROVIDER_TIMEOUT', message: '' })).toBe(true);
    expect(isProviderFailure({ kind: 'outage', code: 'PROVIDER_AUTH_ERROR', message: '' })).toBe(true);
    expect(isProviderFailure({ kind: 'needs_action', intent: intent({ status: 'requires_action' }) })).toBe(false);
    expect(isProviderFailure({ kind: 'processing', intent: intent({ status: 'processing' }) })).toBe(false);
  });

  it('recognises the refusal of a confirm or cancel on an intent past that point', () => {
    expect(isUnexpectedState(new ProviderError('rejected', 'payment_intent_unexpected_state', 'x'))).toBe(true);
    expect(isUnexpectedState(new ProviderError('rejected', 'resource_missing', 'x'))).toBe(false);
    expect(isUnexpectedState(new ProviderError('unknown', 'payment_intent_unexpected_state', 'x'))).toBe(false);
  });

  it('decline codes are our stable codes; odd provider codes never leak as free text', () => {
    expect(declineCode('insufficient_funds')).toBe('INSUFFICIENT_FUNDS');
    expect(declineCode('expired_card')).toBe('EXPIRED_CARD');
    expect(declineCode('Your card <script>')).toBe('CARD_DECLINED');
  });
});
