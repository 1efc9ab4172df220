/**
 * GET /api/audit/payments
 *
 * - `paymentID=<id>`: that payment's entries (default order asc). The payment must belong to the
 *   caller's tenant; another tenant's payment is a 404 PAYMENT_NOT_FOUND, like a missing one.
 *   `verify=true` adds `verification`: the whole chain checked (not only this page), and whether the
 *   log has caught up with the payment's current version (the stream is asynchronous).
 * - otherwise: the caller tenant's entries, optionally in a time range `from`/`to` (ISO 8601, both
 *   inclusive; default order desc).
 * - `limit` 1..1000 (default 100), `cursor` from a previous page's nextCursor, `order` asc|desc.
 *
 * Unknown parameters are rejected, so a misspelt `paymentId` does not silently list the whole tenant.
 */
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  verifyPaymentAudit,
  type AuditReader,
  type SortOrder,
} from '../adapters/dynamo/audit-repository';
import { parseIsoInstant, type AuditEntry } from '../core/audit';
import { cursorScope, type CursorSeal } from '../core/cursor-seal';
import { AppError, InvalidCursorError, NotFoundError } from '../core/errors';
import type { Payment } from '../core/payment';
import { apiHandler, json, type ApiRequest, type ApiResponse } from '../shared/http';
import { wiring } from '../wiring';

export const AUDIT_ROUTE = 'GET /api/audit/payments';

const KNOWN_PARAMS = new Set(['paymentID', 'from', 'to', 'limit', 'cursor', 'order', 'verify']);
const PAYMENT_ID = /^[A-Za-z0-9_-]{1,128}$/;

export interface AuditApiDeps {
  readonly audit: AuditReader;
  readonly payments: { get(id: string): Promise<Payment | undefined> };
  /** Signs the cursors handed out for the query they were made for. */
  readonly cursors: CursorSeal;
}

function badParam(field: string, message: string): AppError {
  return new AppError('INVALID_QUERY_PARAMETER', message, 400, false, [{ field, code: 'INVALID_QUERY_PARAMETER', message }]);
}

/** An entry as the API shows it: stored fields without index bookkeeping (tenantSort). */
export function auditEntryView(e: AuditEntry) {
  return {
    paymentID: e.paymentId,
    version: e.version,
    tenantId: e.tenantId,
    action: e.action,
    fromStatus: e.fromStatus,
    toStatus: e.toStatus,
    actor: e.actor,
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
    timestamp: e.timestamp,
    details: e.details,
    prevHash: e.prevHash,
    hash: e.hash,
  };
}

interface AuditQuery {
  readonly paymentId?: string;
  readonly from?: string;
  readonly to?: string;
  readonly limit: number;
  readonly cursor?: string;
  readonly order?: SortOrder;
  readonly verify: boolean;
}

export function parseAuditQuery(query: Record<string, string>): AuditQuery {
  for (const name of Object.keys(query)) {
    if (!KNOWN_PARAMS.has(name)) {
      throw badParam(name, `Unknown query parameter ${name}; allowed: ${[...KNOWN_PARAMS].join(', ')}`);
    }
  }
  const paymentId = query.paymentID;
  if (paymentId !== undefined && !PAYMENT_ID.test(paymentId)) throw badParam('paymentID', 'paymentID is not a valid payment id');

  let limit = DEFAULT_PAGE_SIZE;
  if (query.limit !== undefined) {
    limit = /^\d{1,4}$/.test(query.limit) ? Number(query.limit) : NaN;
    if (!(limit >= 1 && limit <= MAX_PAGE_SIZE)) throw badParam('limit', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }

  let order: SortOrder | undefined;
  if (query.order !== undefined) {
    if (query.order !== 'asc' && query.order !== 'desc') throw badParam('order', 'order must be asc or desc');
    order = query.order;
  }

  let verify = false;
  if (query.verify !== undefined) {
    if (query.verify !== 'true' && query.verify !== 'false') throw badParam('verify', 'verify must be true or false');
    verify = query.verify === 'true';
    if (verify && paymentId === undefined) throw badParam('verify', 'verify=true needs paymentID');
  }

  const instant = (name: 'from' | 'to'): string | undefined => {
    const raw = query[name];
    if (raw === undefined) return undefined;
    if (paymentId !== undefined) throw badParam(name, `${name} cannot be combined with paymentID`);
    const iso = parseIsoInstant(raw);
    if (!iso) throw badParam(name, `${name} must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z`);
    return iso;
  };
  const from = instant('from');
  const to = instant('to');
  if (from !== undefined && to !== undefined && from > to) throw badParam('from', 'from must not be after to');

  if (query.cursor !== undefined && query.cursor === '') throw new InvalidCursorError('The cursor is empty');
  return { paymentId, from, to, limit, cursor: query.cursor, order, verify };
}

export function auditApiRoute(deps: AuditApiDeps) {
  return async (req: ApiRequest): Promise<ApiResponse> => {
    const route = `${req.method} ${req.resource}`;
    if (route !== AUDIT_ROUTE) throw new AppError('ROUTE_NOT_FOUND', `No route for ${route}`, 404);
    const q = parseAuditQuery(req.query);

    const order = q.order ?? (q.paymentId !== undefined ? 'asc' : 'desc');
    const scope = cursorScope('audit', req.tenantId, q.paymentId, order, q.from, q.to);
    const cursor = q.cursor === undefined ? undefined : await deps.cursors.open(scope, q.cursor);
    const signed = async (next: string | null) => (next === null ? null : deps.cursors.seal(scope, next));

    if (q.paymentId !== undefined) {
      const payment = await deps.payments.get(q.paymentId);
      if (!payment || payment.tenantId !== req.tenantId) throw new NotFoundError('payment');
      const page = await deps.audit.listForPayment(payment, { limit: q.limit, cursor, order });
      const body: Record<string, unknown> = {
        entries: page.entries.map(auditEntryView),
        nextCursor: await signed(page.nextCursor),
        count: page.entries.length,
      };
      if (q.verify) {
        const result = await verifyPaymentAudit(deps.audit, payment);
        body.verification = {
          ...result,
          paymentVersion: payment.version,
          // The log trails the payment by the stream's delay; a shorter complete chain is not broken.
          upToDate: result.ok && result.count === payment.version,
        };
      }
      return json(200, body);
    }

    const page = await deps.audit.listForTenant(req.tenantId, { from: q.from, to: q.to, limit: q.limit, cursor, order });
    return json(200, { entries: page.entries.map(auditEntryView), nextCursor: await signed(page.nextCursor), count: page.entries.length });
  };
}

export const handler = apiHandler((req) => auditApiRoute({ audit: wiring().audit(), payments: wiring().store(), cursors: wiring().cursors() })(req));
