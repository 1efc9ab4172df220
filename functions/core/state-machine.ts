/**
 * The payment state machine: the only place that says which status may follow which.
 * Every change is applied as a conditional update on (version, source status), see payment-repository.
 */
import { InvalidStateTransitionError } from './errors';
import { isTerminal, type Payment, type PaymentStatus } from './payment';

const ALLOWED: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
  // pending | retrying → canceled: the tenant's cancel, written only after the intent is cancelled (cancel.ts).
  pending: ['processing', 'expired', 'canceled'],
  // processing → expired: past the open deadline, once the intent is cancelled (a lapsed attempt included).
  processing: ['success', 'retrying', 'failed', 'expired'],
  retrying: ['processing', 'failed', 'expired', 'canceled'],
  success: [],
  failed: [],
  expired: [],
  canceled: [],
};

/**
 * failed → retrying is not a normal transition: an operator may re-open a failed payment whose last
 * error was retryable (e.g. the provider was down past maxRetries). It is audited with the operator.
 */
export function canReopen(p: Pick<Payment, 'status' | 'lastError'>): boolean {
  return p.status === 'failed' && p.lastError?.retryable === true;
}

export function isAllowed(from: PaymentStatus, to: PaymentStatus): boolean {
  return ALLOWED[from].includes(to);
}

export interface TransitionOptions {
  /** An operator action may re-open a failed payment with a retryable last error. */
  readonly operator?: boolean;
}

export function assertTransition(p: Pick<Payment, 'status' | 'lastError'>, to: PaymentStatus, opts: TransitionOptions = {}): void {
  if (isAllowed(p.status, to)) return;
  if (opts.operator && to === 'retrying' && canReopen(p)) return;
  const reason = isTerminal(p.status)
    ? `Payment is ${p.status}, a final status${p.status === 'failed' ? ' (its last error is not retryable)' : ''}`
    : undefined;
  throw new InvalidStateTransitionError(p.status, to, reason);
}

export const allowedTargets = (from: PaymentStatus): readonly PaymentStatus[] => ALLOWED[from];
