/**
 * Listing a tenant's payments: the query parameters the API accepts, checked here so a misspelt or
 * out-of-range parameter is a 400 and never a silently different listing.
 */
import { cursorScope, type CursorSeal } from './cursor-seal';
import { AppError } from './errors';
import { PAYMENT_STATUSES, type PaymentStatus } from './payment';
import type { PaymentListPage, PaymentLister } from './ports';

export const LIST_DEFAULT_LIMIT = 20;
export const LIST_MAX_LIMIT = 100;
const MAX_CURSOR_CHARS = 2048;
const KNOWN = new Set(['status', 'limit', 'cursor']);

export interface ListPaymentsParams {
  readonly status?: PaymentStatus;
  readonly limit: number;
  readonly cursor?: string;
}

const bad = (field: string, code: string, message: string) => new AppError(code, message, 400, false, [{ field, code, message }]);

export function parseListParams(query: Record<string, string>): ListPaymentsParams {
  for (const name of Object.keys(query)) {
    if (!KNOWN.has(name)) throw bad(name, 'INVALID_QUERY_PARAMETER', `Unknown query parameter ${name}; use status, limit or cursor`);
  }
  let status: PaymentStatus | undefined;
  if (query.status !== undefined) {
    if (!(PAYMENT_STATUSES as readonly string[]).includes(query.status)) {
      throw bad('status', 'INVALID_QUERY_PARAMETER', `status must be one of ${PAYMENT_STATUSES.join(', ')}`);
    }
    status = query.status as PaymentStatus;
  }
  let limit = LIST_DEFAULT_LIMIT;
  if (query.limit !== undefined) {
    limit = /^\d{1,3}$/.test(query.limit) ? Number(query.limit) : NaN;
    if (!(limit >= 1 && limit <= LIST_MAX_LIMIT)) throw bad('limit', 'INVALID_QUERY_PARAMETER', `limit must be an integer from 1 to ${LIST_MAX_LIMIT}`);
  }
  const cursor = query.cursor;
  if (cursor !== undefined && (cursor === '' || cursor.length > MAX_CURSOR_CHARS)) throw bad('cursor', 'INVALID_CURSOR', 'The cursor is not valid for this query');
  return { status, limit, ...(cursor !== undefined ? { cursor } : {}) };
}

/**
 * One page of the tenant's payments, newest first. The cursor handed out is signed for this tenant and
 * status filter (cursor-seal.ts); one that is not is refused before the store reads anything.
 */
export async function listPayments(lister: PaymentLister, cursors: CursorSeal, tenantId: string, params: ListPaymentsParams): Promise<PaymentListPage> {
  const scope = cursorScope('payments', tenantId, params.status);
  const cursor = params.cursor === undefined ? undefined : await cursors.open(scope, params.cursor);
  const page = await lister.listByTenant({ tenantId, status: params.status, limit: params.limit, ...(cursor !== undefined ? { cursor } : {}) });
  return { ...page, nextCursor: page.nextCursor === null ? null : await cursors.seal(scope, page.nextCursor) };
}
