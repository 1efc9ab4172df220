/**
 * lastError.message is our sentence for the code. While a payment is open it may say what happens
 * next; once it is over (failed after its last retry, expired) it must not promise another attempt.
 */
import { describe, expect, it } from 'vitest';
import { paymentView, statusView } from '../../functions/core/payment-view';
import { TERMINAL_STATUSES, type PaymentStatus } from '../../functions/core/payment';
import { PUBLIC_MESSAGE_CODES, publicMessage } from '../../functions/core/processing/public-messages';
import { paymentFixture } from '../helpers/fakes';

const PROMISE = /will be retried|before any retry|\bwaits\b|\bstill\b/i;
const CODES = [...PUBLIC_MESSAGE_CODES, 'PROVIDER_SOMETHING_NEW'];

const withError = (status: PaymentStatus, code: string) =>
  paymentFixture({ status, retryCount: 3, lastError: { code, message: 'stored text is never shown', retryable: true, timestamp: '2030-01-01T00:00:00.000Z' } });

describe('public error messages', () => {
  it.each(CODES)('%s: a failed or expired payment says nothing will happen next', (code) => {
    for (const status of TERMINAL_STATUSES) {
      const p = withError(status, code);
      expect(paymentView(p).lastError!.message, `${status}`).not.toMatch(PROMISE);
      expect(statusView(p).lastError!.message, `${status}`).not.toMatch(PROMISE);
    }
  });

  it('an open payment still says what happens next', () => {
    expect(paymentView(withError('retrying', 'PROVIDER_UNAVAILABLE')).lastError!.message).toMatch(/will be retried/);
    expect(paymentView(withError('failed', 'PROVIDER_UNAVAILABLE')).lastError!.message).toBe(publicMessage('PROVIDER_UNAVAILABLE', true));
    expect(paymentView(withError('failed', 'PROVIDER_UNAVAILABLE')).lastError!.message).toMatch(/failed after its last retry/);
  });
});
