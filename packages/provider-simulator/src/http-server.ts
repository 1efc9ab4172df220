/**
 * The HTTP face of the simulator: Stripe's routes (form-encoded bodies with bracket notation, JSON answers,
 * `Authorization: Bearer sk_test_...`), the simulator's own routes (JSON, no auth), and the replies'
 * delivery (held answers, reset sockets).
 *
 *   POST /v1/payment_intents                 amount, currency, metadata[...], confirm=false
 *   GET  /v1/payment_intents/:id             expand[]=latest_charge gives the charge (amount_refunded)
 *   POST /v1/payment_intents/:id/confirm     payment_method
 *   POST /v1/payment_intents/:id/cancel      cancellation_reason?
 *   GET  /v1/payment_intents/search          query=metadata['payment_id']:'<id>', limit
 *   GET  /v1/payment_intents                 created[gte|gt|lt|lte], limit (1..100, default 10), starting_after,
 *                                            expand[]=data.latest_charge; newest first, has_more
 *   POST /v1/refunds                         payment_intent, amount?, metadata[...]
 *   GET  /v1/refunds/:id                     expand[]=charge
 *   GET  /v1/refunds                         payment_intent, limit, starting_after, expand[]=data.charge
 *   GET  /v1/ledger[?paymentId=]             {entries}
 *   GET  /v1/faults, POST /v1/faults         {faults}; unknown fault or bad value → 400
 *   POST /v1/reset                           forgets everything (and empties the files)
 *   GET  /health                             {status:'ok'}
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BodyError, parseForm, readBody, type Params } from './form';
import type { FaultConfig } from './faults';
import type { IdempotencyStore } from './idempotency-store';
import type { IntentBook } from './intents';
import type { RefundBook } from './refunds';
import type { Runtime } from './runtime';
import { apiError, noSuch, randomId, stripeError, type LedgerEntry, type Reply } from './stripe-objects';

export interface Endpoints {
  readonly rt: Runtime;
  readonly intents: IntentBook;
  readonly refunds: RefundBook;
  readonly keys: IdempotencyStore;
  readonly ledger: () => LedgerEntry[];
  readonly reset: () => void;
  /** Tracks timers of held answers, so stop() can clear them. */
  readonly hold: (ms: number, fn: () => void) => void;
}

export function createSimulatorServer(e: Endpoints): Server {
  const { rt } = e;

  function authorized(req: IncomingMessage): Reply | undefined {
    if (rt.faults.now.authFailure) {
      return stripeError(401, { type: 'invalid_request_error', code: 'api_key_expired', message: 'Expired API Key provided (injected authFailure).' });
    }
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!m) return stripeError(401, { type: 'invalid_request_error', message: 'You did not provide an API key.' });
    if (!m[1]!.startsWith('sk_test_')) return stripeError(401, { type: 'invalid_request_error', message: 'Invalid API Key provided.' });
    return undefined;
  }

  const lookupFault = (): Reply | undefined =>
    rt.faults.hit(rt.faults.now.lookupErrorRate) ? apiError('An unknown error occurred (injected lookup fault).', { save: false }) : undefined;

  /** Replays of a confirm's key draw resetAfterCommit too, so the SDK's one reconnect retry can be reset. */
  const onConfirmReplay = (reply: Reply): Reply => (rt.faults.hit(rt.faults.now.resetAfterCommitRate) ? { ...reply, reset: true } : reply);

  async function stripeRoute(req: IncomingMessage, method: string, p: string, url: URL): Promise<Reply> {
    const denied = authorized(req);
    if (denied) return denied;
    const query = parseForm(url.search.slice(1));

    if (method === 'GET') {
      if (p === '/v1/payment_intents/search') return lookupFault() ?? e.intents.search(query);
      if (p === '/v1/payment_intents') return lookupFault() ?? e.intents.list(query);
      if (p === '/v1/refunds') return lookupFault() ?? e.refunds.list(query);
      const intent = /^\/v1\/payment_intents\/([^/]+)$/.exec(p);
      if (intent) return lookupFault() ?? e.intents.retrieve(decodeURIComponent(intent[1]!), query);
      const refund = /^\/v1\/refunds\/([^/]+)$/.exec(p);
      if (refund) return lookupFault() ?? e.refunds.retrieve(decodeURIComponent(refund[1]!), query);
    }
    if (method === 'POST') {
      const body = parseForm(await readBody(req));
      const header = req.headers['idempotency-key'];
      const key = typeof header === 'string' && header !== '' ? header : undefined;
      const withLatency = async <T>(fn: () => T | Promise<T>): Promise<T> => {
        await rt.sleep(rt.faults.now.latencyMs);
        return fn();
      };
      const idempotent = (params: Params, run: (key: string | undefined) => Promise<Reply>, confirm = false) =>
        e.keys.run(key, p, params, run, { confirm, stopped: rt.stopped, ...(confirm ? { onReplay: onConfirmReplay } : {}) });
      if (p === '/v1/payment_intents') return idempotent(body, () => withLatency(() => e.intents.create(body)));
      if (p === '/v1/refunds') return idempotent(body, (k) => withLatency(() => e.refunds.create(body, k)));
      const m = /^\/v1\/payment_intents\/([^/]+)\/(confirm|cancel)$/.exec(p);
      if (m) {
        const id = decodeURIComponent(m[1]!);
        const rec = e.intents.records.get(id);
        if (!rec) return noSuch('payment_intent', id, 'intent');
        const confirm = m[2] === 'confirm';
        return idempotent(
          body,
          (k) => e.intents.locked(id, () => withLatency(() => (confirm ? e.intents.confirm(rec, body, k) : e.intents.cancel(rec, body)))),
          confirm,
        );
      }
    }
    return stripeError(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${p}).` });
  }

  async function route(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    const p = url.pathname.replace(/\/+$/, '') || '/';

    if (p === '/health' && method === 'GET') return { status: 200, body: { status: 'ok' } };
    if (p === '/v1/ledger' && method === 'GET') {
      const paymentId = url.searchParams.get('paymentId');
      const entries = e.ledger();
      return { status: 200, body: { entries: paymentId === null ? entries : entries.filter((x) => x.paymentId === paymentId) } };
    }
    if (p === '/v1/faults' && method === 'GET') return { status: 200, body: { faults: rt.faults.now } };
    if (p === '/v1/faults' && method === 'POST') {
      try {
        const text = await readBody(req);
        rt.faults.set((text.trim() === '' ? {} : JSON.parse(text)) as FaultConfig);
      } catch (err) {
        return stripeError(400, { type: 'invalid_request_error', code: 'parameter_invalid', message: err instanceof Error ? err.message : String(err) });
      }
      return { status: 200, body: { faults: rt.faults.now } };
    }
    if (p === '/v1/reset' && method === 'POST') {
      e.reset();
      return { status: 200, body: { ok: true } };
    }
    return stripeRoute(req, method, p, url);
  }

  const send = (res: ServerResponse, reply: Reply): void => {
    const write = (): void => {
      if (res.destroyed || res.writableEnded) return;
      if (reply.reset) {
        res.socket?.destroy();
        return;
      }
      const payload = JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        'request-id': `req_${randomId(14)}`,
        ...reply.headers,
      });
      res.end(payload);
    };
    if (!reply.hangMs) return write();
    e.hold(reply.hangMs, write);
  };

  return createServer((req, res) => {
    route(req).then(
      (reply) => send(res, reply),
      (err: unknown) => {
        const status = err instanceof BodyError ? err.status : 500;
        send(res, stripeError(status, { type: status === 500 ? 'api_error' : 'invalid_request_error', message: err instanceof Error ? err.message : String(err) }));
      },
    );
  });
}
