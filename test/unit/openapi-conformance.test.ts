/**
 * The handlers and docs/openapi.yaml cannot drift: about 200 requests (each request field at its
 * edges, wrong types, content types, duplicated headers, odd query parameters) go to the real route
 * handlers in process, and for each one
 *
 *   - a request the handler accepts is one the document allows (the handler is never more lenient);
 *   - a request the document refuses is refused with a 4xx: 415 for a body not sent as JSON,
 *     INVALID_JSON for one that does not parse, else a code the document declares (`x-error-codes`) for
 *     the field named in `details`;
 *   - a request the document allows may still be refused (an unknown currency, too many decimals), but
 *     only with a code the document declares for the field at fault;
 *   - every response, error or not, matches the response the document declares for its status.
 *
 * test/e2e/openapi-contract.test.ts checks real HTTP responses of the local stack the same way.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import type { AuditReader } from '../../functions/adapters/dynamo/audit-repository';
import { auditApiRoute } from '../../functions/api/audit-api';
import { createPaymentRoute } from '../../functions/api/create-payment';
import { stripeChargeRules } from '../../functions/adapters/provider/stripe-amounts';
import { paymentQueriesRoute } from '../../functions/api/payment-queries';
import { retryPaymentRoute } from '../../functions/api/retry-payment';
import { cancelPaymentRoute } from '../../functions/api/cancel-payment';
import { refundsRoute } from '../../functions/api/refunds-api';
import { CancelService } from '../../functions/core/cancel-service';
import type { Payment } from '../../functions/core/payment';
import { RefundsService } from '../../functions/core/refunds-service';
import { PaymentsService } from '../../functions/core/payments-service';
import { webhookEndpointsRoute } from '../../functions/api/webhook-endpoints';
import { webhookEventsRoute } from '../../functions/api/webhook-events';
import { WebhookEndpoints } from '../../functions/core/webhooks/endpoints';
import { apiHandler, type ApiHandlerOptions, type ApiRequest, type ApiResponse } from '../../functions/shared/http';
import { FakeDeliveryQueue, FakeEndpointStore, FakeEventStore } from '../helpers/fake-webhooks';
import { FakeClock, FakeQueue, FakeTenantRefundStore, KeyedStore, paymentFixture, testCursorSeal } from '../helpers/fakes';
import { ajv, declaredCodes, documentAllows, openapi, responseProblems, type DocRequest } from '../helpers/openapi';

const TENANT = 'tenant-1';
const MAX_AMOUNT = 1_000_000;
const JSON_CT = { 'content-type': 'application/json' };

interface Case extends DocRequest {
  readonly name: string;
}

function event(method: string, resource: string, req: DocRequest): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) {
    const values = Array.isArray(v) ? v : [v];
    headers[k] = values[values.length - 1]!;
    multiValueHeaders[k] = values;
  }
  return {
    httpMethod: method,
    resource,
    path: resource,
    headers,
    multiValueHeaders,
    pathParameters: req.path ?? null,
    queryStringParameters: req.query ?? null,
    multiValueQueryStringParameters: null,
    stageVariables: null,
    body: req.body ?? null,
    isBase64Encoded: false,
    requestContext: { requestId: 'req-1', identity: { apiKeyId: TENANT } } as never,
  } as never;
}

function service() {
  const store = new KeyedStore();
  const payments = new PaymentsService({ store, queue: new FakeQueue(), clock: new FakeClock().now, idempotencyTtlSeconds: 86_400, maxRetries: 3, stuckAfterSeconds: 120 });
  return { store, payments };
}

const emptyLister = { listByTenant: async () => ({ items: [], nextCursor: null }) };
const emptyAudit: AuditReader = {
  get: async () => undefined,
  listForPayment: async () => ({ entries: [], nextCursor: null }),
  listForTenant: async () => ({ entries: [], nextCursor: null }),
};
// The action routes run their Idempotency-Key requests through this (the store is DynamoDB's in AWS).
const identity: ApiHandlerOptions['identity'] = () => ({ principals: undefined, idempotent: (_key, run) => run() });

/** A fresh handler per request, so one case's key never answers another's. */
const ROUTES: Record<string, () => (req: ApiRequest) => Promise<ApiResponse>> = {
  // As wiring builds it: with the provider's charge rules (minimums, units, metadata room).
  'POST /api/payments/process': () => createPaymentRoute({ payments: service().payments, maxAmount: MAX_AMOUNT, chargeRules: stripeChargeRules }),
  'POST /api/payments/validate-key': () => paymentQueriesRoute({ payments: service().payments, lister: emptyLister, cursors: testCursorSeal(), maxAmount: MAX_AMOUNT, chargeRules: stripeChargeRules }),
  'GET /api/payments': () => paymentQueriesRoute({ payments: service().payments, lister: emptyLister, cursors: testCursorSeal(), maxAmount: MAX_AMOUNT }),
  'POST /api/payments/{paymentID}/retry': () => {
    const { store, payments } = service();
    store.payments.put(paymentFixture({ id: 'pay_r', tenantId: TENANT, status: 'retrying', retryCount: 1 }));
    return retryPaymentRoute({ payments });
  },
  'POST /api/payments/{paymentID}/refunds': () => refundsFor(),
  'GET /api/payments/{paymentID}/refunds': () => refundsFor(),
  'POST /api/payments/{paymentID}/cancel': () => {
    const { store } = service();
    store.payments.put(paymentFixture({ id: 'pay_c', tenantId: TENANT, status: 'retrying', retryCount: 1 }));
    // The provider cancels the intent; the payment is written canceled (as the processor does).
    const processor = {
      cancel: async (p: Payment) => {
        store.payments.put({ ...p, status: 'canceled', version: p.version + 1 });
        return { kind: 'settled' as const, status: 'canceled' as const, attempt: p.attempt, via: 'cancel' as const };
      },
    };
    return cancelPaymentRoute({ cancels: new CancelService({ store: store.payments, processor }) });
  },
  'POST /api/webhook-endpoints': () =>
    webhookEndpointsRoute({
      endpoints: new WebhookEndpoints({ store: new FakeEndpointStore(), resolve: async () => ['93.184.216.34'], urlPolicy: { allowLoopbackHttp: false }, now: new FakeClock().now }),
    }),
  'GET /api/events': () => webhookEventsRoute({ feed: { events: new FakeEventStore(), endpoints: new FakeEndpointStore(), queue: new FakeDeliveryQueue() }, cursors: testCursorSeal() }),
  'GET /api/audit/payments': () => auditApiRoute({ audit: emptyAudit, cursors: testCursorSeal(), payments: { get: async () => paymentFixture({ id: 'pay_a', tenantId: TENANT }) } }),
};

/** A successful USD payment of 12.30 with its intent, refundable. */
function refundsFor() {
  const { store } = service();
  store.payments.put(paymentFixture({ id: 'pay_s', tenantId: TENANT, status: 'success', amountMinor: 1230, currency: 'USD', intentId: 'pi_s' }));
  const refunds = new RefundsService({ payments: store.payments, refunds: new FakeTenantRefundStore(), queue: new FakeQueue(), clock: new FakeClock().now, idempotencyTtlSeconds: 86_400, stuckAfterSeconds: 120 });
  return refundsRoute({ refunds, maxAmount: MAX_AMOUNT });
}

async function send(method: string, route: string, req: DocRequest) {
  const action = method === 'POST' && (route.endsWith('/retry') || route.endsWith('/cancel'));
  const handler = apiHandler(ROUTES[`${method} ${route}`]!(), { access: 'any', idempotentAction: action, identity });
  const res = await handler(event(method, route, req));
  const headers = Object.fromEntries(Object.entries(res.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
  return { status: res.statusCode, header: (n: string) => headers[n.toLowerCase()], body: JSON.parse(res.body) as { error?: { code: string; details?: Array<{ field?: string; code: string }> } } };
}

/**
 * Rules the document states in words rather than schema: a create's key comes in the body or the
 * header (one is required, and both must agree), and unknown query parameters are refused.
 */
function operationRule(method: string, route: string, req: DocRequest): string | undefined {
  if (method === 'POST' && (route === '/api/payments/process' || route === '/api/payments/validate-key')) {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(req.body ?? '') ?? {};
    } catch {
      return undefined;
    }
    const header = Object.entries(req.headers ?? {}).find(([k]) => k.toLowerCase() === 'idempotency-key')?.[1];
    const bodyKey = typeof body === 'object' ? body.idempotencyKey : undefined;
    if (bodyKey === undefined && header === undefined) return 'no idempotency key';
    if (bodyKey !== undefined && header !== undefined && bodyKey !== header) return 'body and header keys differ';
  }
  if (method === 'GET' && req.query) {
    const known =
      route === '/api/payments' ? ['status', 'limit', 'cursor'] : route === '/api/events' ? ['limit', 'cursor'] : ['paymentID', 'from', 'to', 'limit', 'cursor', 'order', 'verify'];
    const unknown = Object.keys(req.query).find((k) => !known.includes(k));
    if (unknown) return `unknown query parameter ${unknown}`;
  }
  return undefined;
}

/** Everything wrong with how the handler answered one request, judged by the document. */
async function disagreements(method: string, route: string, c: Case): Promise<string[]> {
  const res = await send(method, route, c);
  const where = `${c.name}: ${res.status} ${res.body.error?.code ?? ''}`;
  const out = responseProblems(method, route, res).map((p) => `${c.name}: ${p}`);
  const docVerdict = documentAllows(method, route, c);
  const refusal = docVerdict.ok ? operationRule(method, route, c) : docVerdict.problem;
  if (res.status >= 500) return [...out, `${where}: a request is never answered with a 5xx`];
  if (res.status < 400) {
    if (refusal) out.push(`${where}: accepted what the document refuses (${refusal})`);
    return out;
  }
  const error = res.body.error!;
  if (refusal?.startsWith('content-type')) {
    if (res.status !== 415) out.push(`${where}: ${refusal}, expected 415`);
    return out;
  }
  if (refusal?.startsWith('unknown query parameter')) {
    if (error.code !== 'INVALID_QUERY_PARAMETER') out.push(`${where}: ${refusal}, expected INVALID_QUERY_PARAMETER`);
    return out;
  }
  if (refusal === 'the body is not JSON' || refusal === 'the body is not a JSON object' || refusal === 'the body is required') {
    if (error.code !== 'INVALID_JSON') out.push(`${where}: ${refusal}, expected INVALID_JSON`);
    return out;
  }
  if (!error.details?.length) return [...out, `${where}: a refused field is named in details (${refusal ?? 'document allows it'})`];
  for (const d of error.details) {
    const codes = declaredCodes(method, route, d.field ?? '');
    if (!codes.includes(d.code)) out.push(`${where}: ${d.code} on ${d.field} is not among the codes the document declares for it (${codes.join(', ') || 'none'})`);
  }
  return out;
}

// ---- The requests ------------------------------------------------------------------------------

const DROP = Symbol('drop');
const base = { idempotencyKey: 'order-1', amount: 12.3, currency: 'USD', paymentMethod: { type: 'card', token: 'tok_success' }, metadata: { orderId: '1' } };
const with_ = (over: Record<string, unknown>) => {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) if (v === DROP) delete out[k];
  else out[k] = v;
  return out;
};
const json = (name: string, body: unknown, headers: Record<string, string | string[]> = {}): Case => ({ name, body: JSON.stringify(body), headers: { ...JSON_CT, ...headers } });

const FIELD_VALUES: Record<string, unknown[]> = {
  idempotencyKey: ['k', 'order 1001', 'a,b;c=d', '~!@#$%^&*()', 'k'.repeat(255), 'k'.repeat(256), ' lead', 'trail ', 'tab\there', 'ключ', '', '   ', 42, null, true, DROP],
  amount: [12.3, 0.01, 1, 1e6, 1e6 + 0.01, 12.345, 0, -0, -1, 1e-7, 5e-324, 1e21, '12.30', '0012.30', '12.', '.5', ' 12.30', '12.30 ', '1e3', '0x10', '-1', '+1', '', 'abc', '١٢', null, true, [12], { v: 12 }, DROP],
  currency: ['USD', 'JPY', 'KWD', 'EUR', 'usd', 'Usd', 'ABC', 'XXX', 'US', 'USDD', 'U$D', '', ' USD', 840, null, DROP],
  paymentMethod: [
    { type: 'wallet', token: 'tok_success' },
    { type: 'card', token: 'pm_card_visa', extra: 'x' },
    { type: 'crypto', token: 'tok_success' },
    { type: 'Card', token: 'tok_success' },
    { type: '', token: 'tok_success' },
    { type: 1, token: 'tok_success' },
    { token: 'tok_success' },
    { type: 'card' },
    { type: 'card', token: '' },
    { type: 'card', token: 'tok success' },
    { type: 'card', token: 't'.repeat(255) },
    { type: 'card', token: 't'.repeat(256) },
    { type: 'card', token: 'tok_é' },
    { type: 'card', token: 7 },
    { type: 'card', token: null },
    'card',
    [],
    null,
    DROP,
  ],
  metadata: [
    {},
    { a: 'b' },
    { a: '' },
    { [`${'k'.repeat(40)}`]: 'v' },
    { [`${'k'.repeat(41)}`]: 'v' },
    { a: 'v'.repeat(500) },
    { a: 'v'.repeat(501) },
    Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, 'v'])),
    Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])),
    { '': 'v' },
    { constructor: 'x' },
    { toString: 'x' },
    { prototype: 'x' },
    { a: 1 },
    { a: true },
    { a: null },
    { a: { b: 'c' } },
    { a: ['x'] },
    ['a'],
    'a',
    null,
    DROP,
  ],
};

const createCases: Case[] = [
  ...Object.entries(FIELD_VALUES).flatMap(([field, values]) =>
    values.map((v) => json(`${field} = ${v === DROP ? '(absent)' : JSON.stringify(v)?.slice(0, 40)}`, with_({ [field]: v }))),
  ),
  json('amount "12.345" for USD', with_({ amount: '12.345' })),
  json('amount 1.5 JPY', with_({ amount: 1.5, currency: 'JPY' })),
  json('amount 1 JPY', with_({ amount: 1, currency: 'JPY' })),
  json('amount 1.234 KWD', with_({ amount: 1.234, currency: 'KWD' })),
  json('unknown top-level field', with_({ note: 'x' })),
  json('__proto__ metadata key', JSON.parse(`{"idempotencyKey":"k","amount":1,"currency":"USD","paymentMethod":{"type":"card","token":"tok_success"},"metadata":{"__proto__":"x"}}`)),
  // The key in the header, alone or beside the body's.
  ...['k', 'order 1001', ' lead', 'tab\there', 'ключ', 'k'.repeat(256), ''].map((h) => json(`header key ${JSON.stringify(h).slice(0, 30)} alone`, with_({ idempotencyKey: DROP }), { 'Idempotency-Key': h })),
  json('header key equal to the body key', base, { 'Idempotency-Key': 'order-1' }),
  json('header key different from the body key', base, { 'Idempotency-Key': 'order-2' }),
  json('two Idempotency-Key headers, equal', with_({ idempotencyKey: DROP }), { 'Idempotency-Key': ['k', 'k'] }),
  json('two Idempotency-Key headers, different', with_({ idempotencyKey: DROP }), { 'Idempotency-Key': ['k1', 'k2'] }),
  json('Idempotency-Key sent under two spellings', with_({ idempotencyKey: DROP }), { 'Idempotency-Key': 'k1', 'idempotency-key': 'k2' }),
  json('body key null with a header key', with_({ idempotencyKey: null }), { 'Idempotency-Key': 'k' }),
  // Content types.
  ...['application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'Application/JSON', 'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'application/json; charset=iso-8859-1', 'application/jsonp', 'application/xml'].map(
    (ct): Case => ({ name: `content-type ${ct}`, body: JSON.stringify(base), headers: { 'content-type': ct } }),
  ),
  { name: 'no content-type', body: JSON.stringify(base), headers: {} },
  // Bodies that are not a JSON object.
  ...['', '   ', '[]', 'null', '"x"', '42', '{', 'hello', `\ufeff${JSON.stringify(base)}`].map((b): Case => ({ name: `body ${JSON.stringify(b).slice(0, 30)}`, body: b, headers: JSON_CT })),
];

const validateKeyCases: Case[] = [
  json('the key alone', { idempotencyKey: 'k' }),
  json('the key in the header alone', {}, { 'Idempotency-Key': 'k' }),
  json('no key', {}),
  json('header key different from the body key', { idempotencyKey: 'k1' }, { 'Idempotency-Key': 'k2' }),
  json('header key equal to the body key', { idempotencyKey: 'k1' }, { 'Idempotency-Key': 'k1' }),
  json('two Idempotency-Key headers', {}, { 'Idempotency-Key': ['k1', 'k2'] }),
  json('key with an inner space', { idempotencyKey: 'order 1001' }),
  json('key with a trailing space', { idempotencyKey: 'k ' }),
  json('a whole request', base),
  json('amount only', { idempotencyKey: 'k', amount: 10 }),
  json('metadata only', { idempotencyKey: 'k', metadata: { a: 'b' } }),
  json('invalid metadata only', { idempotencyKey: 'k', metadata: { a: 1 } }),
  json('lower-case currency', with_({ currency: 'usd' })),
  json('amount with a space', with_({ amount: '1.00 ' })),
  { name: 'as text/plain', body: JSON.stringify({ idempotencyKey: 'k' }), headers: { 'content-type': 'text/plain' } },
  { name: 'no content-type', body: JSON.stringify({ idempotencyKey: 'k' }), headers: {} },
  { name: 'an array body', body: '[]', headers: JSON_CT },
];

const retry = (name: string, body: string | undefined, headers: Record<string, string | string[]> = JSON_CT): Case => ({ name, body, headers, path: { paymentID: 'pay_r' } });
const retryCases: Case[] = [
  retry('no body', undefined, {}),
  retry('empty body without a content type', '', {}),
  retry('{}', '{}'),
  retry('a reason', JSON.stringify({ reason: 'incident over' })),
  retry('a reason of 500 characters', JSON.stringify({ reason: 'r'.repeat(500) })),
  retry('a reason of 501 characters', JSON.stringify({ reason: 'r'.repeat(501) })),
  retry('a numeric reason', JSON.stringify({ reason: 5 })),
  retry('a null reason', JSON.stringify({ reason: null })),
  retry('a reason as text/plain', JSON.stringify({ reason: 'x' }), { 'content-type': 'text/plain' }),
  retry('a reason without a content type', JSON.stringify({ reason: 'x' }), {}),
  retry('a non-JSON body', 'nope'),
  retry('an array body', '[]'),
  retry('with an Idempotency-Key', '{}', { ...JSON_CT, 'Idempotency-Key': 'reopen 1' }),
  retry('with a malformed Idempotency-Key', '{}', { ...JSON_CT, 'Idempotency-Key': 'tab\there' }),
  retry('with two Idempotency-Key headers', '{}', { ...JSON_CT, 'Idempotency-Key': ['a', 'b'] }),
];

const refund = (name: string, body: string | undefined, headers: Record<string, string | string[]> = { ...JSON_CT, 'Idempotency-Key': 'refund 1' }): Case => ({ name, body, headers, path: { paymentID: 'pay_s' } });
const refundCases: Case[] = [
  refund('no body: what remains', undefined, { 'Idempotency-Key': 'refund 1' }),
  refund('{}', '{}'),
  ...[5, 12.3, 12.31, 0.01, '5.00', '5', 1.001, '1.001', 0, -1, '-1', '', 'abc', 1e21, null, true, [5]].map((amount) => refund(`amount ${JSON.stringify(amount)}`, JSON.stringify({ amount }))),
  refund('a reason', JSON.stringify({ amount: 1, reason: 'returned' })),
  refund('a reason of 501 characters', JSON.stringify({ reason: 'r'.repeat(501) })),
  refund('a numeric reason', JSON.stringify({ reason: 5 })),
  refund('no Idempotency-Key', '{}', JSON_CT),
  refund('a malformed Idempotency-Key', '{}', { ...JSON_CT, 'Idempotency-Key': 'tab\there' }),
  refund('two Idempotency-Key headers', '{}', { ...JSON_CT, 'Idempotency-Key': ['a', 'b'] }),
  refund('as text/plain', '{}', { 'content-type': 'text/plain', 'Idempotency-Key': 'k' }),
  refund('a non-JSON body', 'nope'),
  refund('an array body', '[]'),
];
const refundListCases: Case[] = ([{}, { limit: '1' }, { limit: '100' }, { limit: '0' }, { limit: '101' }, { limit: 'ten' }] as Array<Record<string, string>>).map((query) => ({
  name: `query ${JSON.stringify(query)}`,
  query,
  path: { paymentID: 'pay_s' },
}));
const cancel = (name: string, body: string | undefined, headers: Record<string, string | string[]> = { ...JSON_CT, 'Idempotency-Key': 'cancel 1' }): Case => ({ name, body, headers, path: { paymentID: 'pay_c' } });
const cancelCases: Case[] = [
  cancel('no body', undefined, { 'Idempotency-Key': 'cancel 1' }),
  cancel('{}', '{}'),
  cancel('a reason', JSON.stringify({ reason: 'order withdrawn' })),
  cancel('a reason of 500 characters', JSON.stringify({ reason: 'r'.repeat(500) })),
  cancel('a reason of 501 characters', JSON.stringify({ reason: 'r'.repeat(501) })),
  cancel('a null reason', JSON.stringify({ reason: null })),
  cancel('no Idempotency-Key', '{}', JSON_CT),
  cancel('a malformed Idempotency-Key', '{}', { ...JSON_CT, 'Idempotency-Key': 'tab\there' }),
  cancel('as text/plain', '{}', { 'content-type': 'text/plain', 'Idempotency-Key': 'k' }),
  cancel('a non-JSON body', 'nope'),
  cancel('an array body', '[]'),
];

const listCases: Case[] = (
  [
    {},
    { status: 'failed' },
    { status: 'done' },
    { status: 'FAILED' },
    { limit: '1' },
    { limit: '100' },
    { limit: '0' },
    { limit: '101' },
    { limit: '2.5' },
    { limit: '-1' },
    { limit: 'ten' },
    { cursor: '' },
    { cursor: 'c'.repeat(2049) },
    { state: 'failed' },
  ] as Array<Record<string, string>>
).map((query) => ({ name: `query ${JSON.stringify(query).slice(0, 40)}`, query }));

const auditCases: Case[] = (
  [
    {},
    { paymentID: 'pay_a' },
    { paymentID: 'pay_a', verify: 'true' },
    { paymentID: 'pay a' },
    { paymentID: 'p'.repeat(129) },
    { verify: 'yes' },
    { order: 'asc' },
    { order: 'sideways' },
    { limit: '1000' },
    { limit: '1001' },
    { limit: '0' },
    { from: '2026-01-01', to: '2026-02-01' },
    { cursor: '' },
    { paymentId: 'pay_a' },
  ] as Array<Record<string, string>>
).map((query) => ({ name: `query ${JSON.stringify(query).slice(0, 40)}`, query }));

const endpointCases: Case[] = [
  ...[
    'https://hooks.example.com/in',
    'https://hooks.example.com:8443/in?x=1',
    'https://hooks.example.com/a b',
    'http://hooks.example.com/in',
    'ftp://hooks.example.com/in',
    'https://user:pw@hooks.example.com/in',
    'https://hooks.example.com/in#frag',
    `https://hooks.example.com/${'p'.repeat(2030)}`,
    `https://hooks.example.com/${'p'.repeat(2040)}`,
    'hooks.example.com/in',
    '',
    42,
    null,
    DROP,
  ].map((url) => json(`url = ${url === DROP ? '(absent)' : JSON.stringify(url)?.slice(0, 40)}`, url === DROP ? { events: ['payment.succeeded'] } : { url })),
  ...[['payment.succeeded'], ['payment.succeeded', 'payment.succeeded'], ['refund.failed', 'payment.canceled'], [], ['payment.created'], 'payment.succeeded', [1], null].map((events) =>
    json(`events = ${JSON.stringify(events)}`, { url: 'https://hooks.example.com/in', events }),
  ),
  json('a secret sent along', { url: 'https://hooks.example.com/in', secret: 'whsec_mine' }),
  { name: 'as text/plain', body: JSON.stringify({ url: 'https://hooks.example.com/in' }), headers: { 'content-type': 'text/plain' } },
  ...['', '[]', 'null', '{'].map((b): Case => ({ name: `body ${JSON.stringify(b)}`, body: b, headers: JSON_CT })),
];

const eventListCases: Case[] = ([{}, { limit: '1' }, { limit: '100' }, { limit: '0' }, { limit: '101' }, { limit: 'x' }, { cursor: '' }, { cursor: 'c'.repeat(2049) }, { cursor: 'forged.AAAAAAAAAAAAAAAAAAAAAA' }, { type: 'payment.succeeded' }] as Array<Record<string, string>>).map(
  (query) => ({ name: `query ${JSON.stringify(query).slice(0, 40)}`, query }),
);

describe('the handlers accept exactly what docs/openapi.yaml allows, and answer as it declares', () => {
  it('every component schema compiles (JSON Schema 2020-12, Ajv strict)', () => {
    for (const name of Object.keys(openapi.components.schemas)) expect(ajv.getSchema(`openapi#/components/schemas/${name}`), name).toBeTypeOf('function');
  });

  it.each([
    ['POST', '/api/payments/process', createCases],
    ['POST', '/api/payments/validate-key', validateKeyCases],
    ['POST', '/api/payments/{paymentID}/retry', retryCases],
    ['GET', '/api/payments', listCases],
    ['GET', '/api/audit/payments', auditCases],
    ['POST', '/api/payments/{paymentID}/refunds', refundCases],
    ['GET', '/api/payments/{paymentID}/refunds', refundListCases],
    ['POST', '/api/payments/{paymentID}/cancel', cancelCases],
    ['POST', '/api/webhook-endpoints', endpointCases],
    ['GET', '/api/events', eventListCases],
  ] as const)('%s %s', async (method, route, cases) => {
    const out: string[] = [];
    for (const c of cases) out.push(...(await disagreements(method, route, c)));
    expect(out).toEqual([]);
  });

  it('has enough cases to mean something', () => {
    expect(createCases.length + validateKeyCases.length + retryCases.length + listCases.length + auditCases.length).toBeGreaterThanOrEqual(200);
  });
});

describe('the drift found from outside (issue 19), named', () => {
  const create = (c: Case) => send('POST', '/api/payments/process', c);
  it.each([
    ['currency usd', json('', with_({ currency: 'usd' })), 400, 'UNSUPPORTED_CURRENCY'],
    ['currency Usd', json('', with_({ currency: 'Usd' })), 400, 'UNSUPPORTED_CURRENCY'],
    ['amount " 12.30"', json('', with_({ amount: ' 12.30' })), 400, 'INVALID_AMOUNT'],
    ['amount "12.30 "', json('', with_({ amount: '12.30 ' })), 400, 'INVALID_AMOUNT'],
    ['a numeric metadata value', json('', with_({ metadata: { a: 1 } })), 400, 'INVALID_METADATA'],
    ['JSON sent as text/plain', { name: '', body: JSON.stringify(base), headers: { 'content-type': 'text/plain' } }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['JSON sent without a content type', { name: '', body: JSON.stringify(base) }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['two Idempotency-Key headers', json('', with_({ idempotencyKey: DROP }), { 'Idempotency-Key': ['k1', 'k2'] }), 400, 'INVALID_IDEMPOTENCY_KEY'],
    ['a key with an inner space', json('', with_({ idempotencyKey: 'order 1001' })), 201, undefined],
  ])('create: %s', async (_name, c, status, code) => {
    const res = await create(c);
    expect(res.status).toBe(status);
    expect(res.body.error?.code).toBe(code);
  });

  it('validate-key: a body key different from the Idempotency-Key header is 400 IDEMPOTENCY_KEY_CONFLICT, as on create', async () => {
    const res = await send('POST', '/api/payments/validate-key', json('', { idempotencyKey: 'k1' }, { 'Idempotency-Key': 'k2' }));
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('IDEMPOTENCY_KEY_CONFLICT');
  });

  it('retry: a reason of 501 characters is refused, not cut', async () => {
    const res = await send('POST', '/api/payments/{paymentID}/retry', retry('', JSON.stringify({ reason: 'r'.repeat(501) })));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'INVALID_REASON', details: [{ field: 'reason' }] });
  });
});
