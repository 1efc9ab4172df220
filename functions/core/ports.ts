/**
 * What the core needs from the outside world, owned by the core: adapters implement these, wiring
 * plugs them in. Storage details (key formats, index shards, buckets) stay in the adapters.
 */
import type { ChangeInfo, Payment, PaymentStatus } from './payment';
import type { Refund, RefundChange } from './refund';

export type { PaymentProvider } from './ports/payment-provider';

/** Structured logging; the core never imports a logger, it is given one. */
export interface Logger {
  debug(message: string, attrs?: Record<string, unknown>): void;
  info(message: string, attrs?: Record<string, unknown>): void;
  warn(message: string, attrs?: Record<string, unknown>): void;
  error(message: string, attrs?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/**
 * Business counters, owned by the core like the Logger: wiring backs it with CloudWatch EMF. Names are
 * the ones in `MetricName`; dimension values must stay low-cardinality (an outcome, a state), never a
 * tenant or payment id.
 */
export interface Metrics {
  count(name: MetricName, value?: number, dimensions?: Readonly<Record<string, string>>): void;
}

/** Every metric the service emits (the dashboard, alarms and README list the same names). */
export const METRIC_NAMES = [
  'PaymentsCreated',
  'PaymentsReplayed',
  'IdempotencyKeyMismatches',
  /** Dimension `outcome`: succeeded, declined, unknown, provider_error, outage. */
  'PaymentAttempts',
  'RetriesScheduled',
  /** Dimension `outcome`: what the intent showed (succeeded, declined, canceled, not_charged). */
  'UnknownOutcomesResolved',
  'RefundsIssued',
  /** Tenant refunds accepted (pending, sent by the worker). */
  'RefundsCreated',
  'RefundsReplayed',
  /** Tenant refunds refused because the payment had less left to refund than asked. */
  'RefundsExceedingCapture',
  /** Tenant refunds the provider ended succeeded. */
  'RefundsSucceeded',
  /** Payments the tenant canceled (their intent cancelled first). */
  'PaymentsCanceled',
  /** Refunds the provider ended failed (money still captured): each needs an operator. */
  'RefundsFailed',
  /** Captures on intents other integrations made (not ours): counted, never touched. */
  'ForeignCaptures',
  /** Dimension `state`: the state the provider circuit breaker moved to. */
  'BreakerStateChanges',
  'ReconcilerItemsRead',
  'ReconcilerResolved',
  'ReconcilerExpired',
  'ReconcilerDiscrepancies',
  'ReconcilerFailures',
  /** One per reconciliation run that completed: the heartbeat the ReconcilerNotRunning alarm watches. */
  'ReconcilerRunsCompleted',
  /** Successful payments whose intent shows no capture, found by a reconciler run. */
  'SuccessWithoutCapture',
  /** Attempts held because the provider refused our credentials or account (401/403): an outage. */
  'ProviderAuthFailures',
  /** Open payments whose provider outcome the last reconciler run could not resolve (a gauge per run). */
  'UnknownOutcomeBacklog',
  'AuditEntriesWritten',
  'AuditChainFailures',
  /**
   * Provider webhook events, dimension `outcome`: resolve_payment, resolve_refund (a resolve was queued),
   * or why one was ignored (not_ours, unknown_type, unknown_object, final, no_reference), or bad_signature.
   */
  'ProviderEvents',
  'WebhookEventsCreated',
  /** One per delivery attempt step, dimension `outcome`: delivered, retry_scheduled, waiting, given_up, dropped. */
  'WebhookDeliveries',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

export const noMetrics: Metrics = { count: () => {} };

export type Clock = () => Date;

// ---- Queue ------------------------------------------------------------------------------------------

export interface PaymentMessage {
  readonly paymentId: string;
  /** Why the message was sent: created, retry, requeue, operator_retry, deferred. */
  readonly reason: string;
  /** Epoch ms before which the worker must not attempt the payment (re-sent with more delay). */
  readonly notBefore?: number;
  /** The attempt number a retry message was scheduled to start; stale once the payment's attempt reached it. */
  readonly forAttempt?: number;
  /**
   * Resolve the payment from its intent now, and do nothing else: never claim an attempt (a provider event
   * said something happened; the scheduled retry, if any, keeps its time).
   */
  readonly resolveOnly?: boolean;
}

/** A refund the worker moves on (RefundProcessor): sent when a refund is owed or its check is due. */
export interface RefundMessage {
  readonly refundId: string;
  readonly reason: string;
}

export interface PaymentQueue {
  /** Delays over the queue's maximum are capped by the adapter; callers chain longer waits with notBefore. */
  send(message: PaymentMessage | RefundMessage, delaySeconds?: number): Promise<void>;
}

// ---- Payment store ----------------------------------------------------------------------------------

/** An idempotency key of one tenant and the payment it holds. */
export interface IdempotencyRecord {
  readonly tenantId: string;
  readonly idempotencyKey: string;
  readonly paymentId: string;
  readonly generation: number;
  readonly requestHash: string;
  readonly createdAt: string;
  /** Epoch seconds. Past it the key acts as absent even before TTL deletes it. */
  readonly expiresAt: number;
}

export type InsertResult =
  | { readonly kind: 'created' }
  /** `key` is the live record when it blocked the insert; `payment` is the stored item at the attempted id. */
  | { readonly kind: 'conflict'; readonly key?: IdempotencyRecord; readonly payment?: Payment };

export type FirstInsertResult =
  | { readonly kind: 'created' }
  /** The id was taken: `payment` is the stored item (the key's first payment). */
  | { readonly kind: 'exists'; readonly payment: Payment };

/** Fields of a payment the core sets; the store adds its own bookkeeping (index shards, due time). */
export type StoredFields = 'id' | 'status' | 'version' | 'lastChange' | 'openShard' | 'dueAt';

export interface TransitionRequest {
  readonly to: PaymentStatus;
  readonly change: ChangeInfo;
  readonly now: Date;
  /** Attributes to set along with the status. */
  readonly set?: Partial<Omit<Payment, StoredFields>>;
  readonly remove?: ReadonlyArray<keyof Payment>;
  /** When the reconciler should look at the payment if nothing else moves it (open statuses only). */
  readonly dueAt?: number;
  readonly operator?: boolean;
}

/** A new version without a status change: audited, conditional, and it may move the due time. */
export interface TouchRequest {
  readonly change: ChangeInfo;
  readonly now: Date;
  /** Open payments only. */
  readonly dueAt?: number;
  readonly set?: Partial<Omit<Payment, StoredFields>>;
}

export interface OpenDuePage {
  readonly items: Payment[];
  readonly next?: Record<string, unknown>;
  readonly scanned: number;
}

export interface PaymentStore {
  get(id: string): Promise<Payment | undefined>;
  /** Up to 100 payments by id in one round trip; missing ids are absent from the result. */
  getMany(ids: readonly string[]): Promise<Map<string, Payment>>;
  getKey(tenantId: string, key: string): Promise<IdempotencyRecord | undefined>;
  /**
   * The first payment of a key (generation 0), which carries its key (keyExpiresAt, requestHash), in one
   * conditional write; when the id is taken, the stored payment. `writeId` names this one create call.
   */
  insertFirst(payment: Payment, writeId: string): Promise<FirstInsertResult>;
  /**
   * Key record and payment in one transaction. `writeId` names this one create call: resending the same
   * write with the same id (after a lost response) is recognised as that write.
   */
  insertWithKey(payment: Payment, key: IdempotencyRecord, nowEpochSeconds: number, writeId?: string): Promise<InsertResult>;
  /** One state-machine transition, conditional on the caller's version and status. */
  transition(current: Payment, req: TransitionRequest): Promise<Payment>;
  /** A new version in the same status (throws ConcurrentUpdateError when the payment moved). */
  touch(current: Payment, req: TouchRequest): Promise<Payment>;
  /**
   * Moves an open payment's due time later, keeping its version (nothing to audit: no new version).
   * False when the payment moved on, is no longer open, or is already due later.
   */
  postpone(current: Payment, dueAt: number): Promise<boolean>;
  /**
   * Stores the id of the payment's provider intent, right after the create and before any confirmation,
   * keeping the version: bookkeeping of the attempt that holds the payment, not a new state (the next
   * version carries it into the audit trail). Conditional on the version and status read, and on no other
   * intent being recorded; throws ConcurrentUpdateError otherwise. Returns the payment with the id.
   */
  recordIntent(current: Payment, intentId: string): Promise<Payment>;
  /** The partitions of the open-payments index; the reconciler walks them in turn. */
  openPartitions(): readonly string[];
  /** One page of open payments of one partition whose due time has passed. */
  openDue(partition: string, dueBefore: number, startKey?: Record<string, unknown>, limit?: number): Promise<OpenDuePage>;
}

// ---- Refunds -------------------------------------------------------------------------------------------

export interface OpenRefundsPage {
  readonly items: Refund[];
  readonly next?: Record<string, unknown>;
}

/** The refunds the service owes (Refunds table). */
export interface RefundStore {
  get(id: string): Promise<Refund | undefined>;
  /** Writes a new pending refund unless one with its id exists; either way returns the stored record. */
  create(refund: Refund & { readonly dueAt: number }): Promise<{ readonly created: boolean; readonly record: Refund }>;
  /**
   * One change, conditional on the version read (ConcurrentUpdateError otherwise). While the refund stays
   * pending, `dueAt` is when it is looked at next; a final status leaves the open index.
   */
  update(current: Refund, change: RefundChange & { readonly updatedAt: string }, dueAt?: number): Promise<Refund>;
  openPartitions(): readonly string[];
  /** One page of pending refunds of one partition that are due. */
  openDue(partition: string, dueBefore: number, startKey?: Record<string, unknown>, limit?: number): Promise<OpenRefundsPage>;
}

/** The refund key record (IdempotencyKeys table) of one tenant refund request. */
export interface RefundKeyRecord {
  readonly tenantId: string;
  readonly idempotencyKey: string;
  readonly paymentId: string;
  readonly refundId: string;
  readonly requestHash: string;
  readonly createdAt: string;
  /** Epoch seconds. Past it the key acts as absent even before TTL deletes it. */
  readonly expiresAt: number;
}

export type RefundInsertResult =
  | { readonly kind: 'created' }
  /** The key is live: it holds this refund request, or another (compare requestHash). */
  | { readonly kind: 'key_taken'; readonly key: RefundKeyRecord }
  /** The payment refused: not success (or not this tenant's), or less left to refund than asked. `payment` as stored. */
  | { readonly kind: 'payment_refused'; readonly payment?: Payment };

export interface RefundPage {
  /** Oldest first. */
  readonly items: Refund[];
  readonly nextCursor: string | null;
}

/** Tenant refunds: the one write that makes a refund, and the listing of a payment's refunds. */
export interface TenantRefundStore {
  getRefundKey(tenantId: string, paymentId: string, key: string): Promise<RefundKeyRecord | undefined>;
  /**
   * One transaction: the key record (absent or expired), the payment's refunded amount raised by the
   * refund's amount (on condition that the payment is this tenant's, success, and has that much left), and
   * the refund record. All or nothing, whatever runs concurrently.
   */
  insertTenantRefund(refund: Refund & { readonly dueAt: number }, key: RefundKeyRecord, capturedMinor: number, nowEpochSeconds: number): Promise<RefundInsertResult>;
  get(id: string): Promise<Refund | undefined>;
  listForPayment(paymentId: string, limit: number, cursor?: string): Promise<RefundPage>;
}

// ---- Listing ----------------------------------------------------------------------------------------

export interface PaymentListQuery {
  readonly tenantId: string;
  /** Only payments in this status. */
  readonly status?: PaymentStatus;
  readonly limit: number;
  /** Opaque: a previous page's nextCursor for the same tenant and status. */
  readonly cursor?: string;
}

export interface PaymentListPage {
  /** Newest first (createdAt, then id, descending). */
  readonly items: Payment[];
  /** Null on the last page. */
  readonly nextCursor: string | null;
}

/**
 * A tenant's payments by index, newest first. The store mints and checks the cursor: one minted for
 * another tenant or another status filter is an InvalidCursorError.
 */
export interface PaymentLister {
  listByTenant(query: PaymentListQuery): Promise<PaymentListPage>;
}
