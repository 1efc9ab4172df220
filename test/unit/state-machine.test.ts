import { describe, expect, it } from 'vitest';
import { InvalidStateTransitionError } from '../../functions/core/errors';
import { PAYMENT_STATUSES, type PaymentStatus } from '../../functions/core/payment';
import { assertTransition, canReopen, isAllowed } from '../../functions/core/state-machine';

const ALLOWED = new Set([
  'pending>processing',
  'pending>expired',
  'processing>success',
  'processing>retrying',
  'processing>failed',
  // Past the open deadline, once its intent is cancelled (issue 17: every open status has a deadline).
  'processing>expired',
  'retrying>processing',
  'retrying>failed',
  'retrying>expired',
  // The tenant's cancel (issue 18), written only after the intent is cancelled; canceled is terminal.
  'pending>canceled',
  'retrying>canceled',
]);

describe('state machine', () => {
  const pairs = PAYMENT_STATUSES.flatMap((from) => PAYMENT_STATUSES.map((to) => [from, to] as [PaymentStatus, PaymentStatus]));

  it.each(pairs)('%s -> %s follows the transition table', (from, to) => {
    const allowed = ALLOWED.has(`${from}>${to}`);
    expect(isAllowed(from, to)).toBe(allowed);
    const attempt = () => assertTransition({ status: from }, to);
    if (allowed) expect(attempt).not.toThrow();
    else expect(attempt).toThrow(InvalidStateTransitionError);
  });

  it('never moves a final status, even for an operator, except re-opening a retryable failure', () => {
    for (const from of ['success', 'expired'] as const) {
      for (const to of PAYMENT_STATUSES) {
        expect(() => assertTransition({ status: from }, to, { operator: true })).toThrow(InvalidStateTransitionError);
      }
    }
    const retryableFailure = { status: 'failed' as const, lastError: { code: 'PROVIDER_UNAVAILABLE', message: 'x', retryable: true, timestamp: '' } };
    const declined = { status: 'failed' as const, lastError: { code: 'CARD_DECLINED', message: 'x', retryable: false, timestamp: '' } };
    expect(canReopen(retryableFailure)).toBe(true);
    expect(canReopen(declined)).toBe(false);
    expect(() => assertTransition(retryableFailure, 'retrying', { operator: true })).not.toThrow();
    expect(() => assertTransition(retryableFailure, 'retrying')).toThrow(InvalidStateTransitionError);
    expect(() => assertTransition(declined, 'retrying', { operator: true })).toThrow(InvalidStateTransitionError);
    expect(() => assertTransition(retryableFailure, 'processing', { operator: true })).toThrow(InvalidStateTransitionError);
  });

  it('reports the conflict as 409 INVALID_STATE_TRANSITION', () => {
    try {
      assertTransition({ status: 'success' }, 'processing');
    } catch (err) {
      expect(err).toMatchObject({ code: 'INVALID_STATE_TRANSITION', httpStatus: 409, details: [{ from: 'success', to: 'processing' }] });
    }
  });
});
