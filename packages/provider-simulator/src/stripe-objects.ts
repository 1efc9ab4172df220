/**
 * Stripe's object and error shapes as the simulator answers them, and the simulator's own ledger entry.
 * Shapes follow Stripe's published OpenAPI description (payment_intent, refund, charge, error).
 */
import { randomBytes } from 'node:crypto';

export type IntentStatus = 'requires_payment_method' | 'requires_confirmation' | 'requires_action' | 'processing' | 'requires_capture' | 'canceled' | 'succeeded';

export interface LastPaymentError {
  type: 'card_error' | 'invalid_request_error';
  code: string;
  decline_code?: string;
  message: string;
}

export interface IntentJson {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_capturable: number;
  amount_received: number;
  currency: string;
  status: IntentStatus;
  metadata: Record<string, string>;
  created: number;
  latest_charge: string | null;
  last_payment_error: LastPaymentError | null;
  next_action: { type: 'use_stripe_sdk'; use_stripe_sdk: Record<string, string> } | null;
  payment_method: string | null;
  canceled_at: number | null;
  cancellation_reason: string | null;
  capture_method: 'automatic';
  confirmation_method: 'automatic';
  client_secret: string;
  livemode: false;
}

export type RefundStatus = 'pending' | 'succeeded' | 'failed' | 'canceled';

export interface RefundJson {
  id: string;
  object: 'refund';
  amount: number;
  currency: string;
  payment_intent: string;
  charge: string | null;
  status: RefundStatus;
  failure_reason: string | null;
  metadata: Record<string, string>;
  created: number;
}

export interface LedgerEntry {
  /** Our payment id, from the intent's metadata.payment_id ('' when the intent has none). */
  readonly paymentId: string;
  /** succeeded: money captured; refunded: money returned; declined: a refused confirm (no money). */
  readonly status: 'succeeded' | 'declined' | 'refunded';
  readonly amountMinor: number;
  /** Upper case. */
  readonly currency: string;
  readonly intentId: string;
  readonly chargeId?: string;
  readonly refundId?: string;
  /** The Idempotency-Key of the request that moved the money, when it had one. */
  readonly idempotencyKey?: string;
  /** Decline code and message, for status 'declined'. */
  readonly code?: string;
  readonly declineCode?: string;
  readonly message?: string;
  /** ISO-8601. */
  readonly at: string;
}

export interface StripeErrorBody {
  type: 'invalid_request_error' | 'card_error' | 'api_error' | 'idempotency_error';
  message: string;
  code?: string;
  decline_code?: string;
  param?: string;
  payment_intent?: IntentJson;
}

/** What an endpoint answers; the HTTP layer writes it. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Hold the response this long before writing it. */
  hangMs?: number;
  /** Destroy the socket instead of answering. */
  reset?: boolean;
  /** Save under the request's idempotency key (the endpoint ran). */
  save?: boolean;
}

export const stripeError = (status: number, e: StripeErrorBody, extra: Partial<Reply> = {}): Reply => ({ status, body: { error: e }, ...extra });

/** A 500 the endpoint produced: saved under the key, as Stripe saves every answer of an endpoint that ran. */
export const apiError = (message: string, extra: Partial<Reply> = {}): Reply => stripeError(500, { type: 'api_error', message }, { save: true, ...extra });

export const paramError = (param: string, message: string, code = 'parameter_invalid'): Reply =>
  stripeError(400, { type: 'invalid_request_error', code, param, message });

export const noSuch = (object: 'payment_intent' | 'refund', id: string, param: string): Reply =>
  stripeError(404, { type: 'invalid_request_error', code: 'resource_missing', param, message: `No such ${object}: '${id}'` });

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
export function randomId(n: number): string {
  const bytes = randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[bytes[i]! % ALPHABET.length];
  return s;
}

/** Captured minus refunded, in minor units, over ledger entries. */
export function netCaptured(entries: readonly LedgerEntry[]): number {
  let net = 0;
  for (const e of entries) {
    if (e.status === 'succeeded') net += e.amountMinor;
    else if (e.status === 'refunded') net -= e.amountMinor;
  }
  return net;
}
