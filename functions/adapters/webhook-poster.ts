/**
 * The WebhookPoster over node:http(s): connects to the address the policy checked (the `lookup` hook
 * answers with it, so no second DNS query can pick another), while Host and the TLS server name stay
 * the URL's host. The whole attempt, connect to last byte, is bounded by timeoutMs. Redirects are not
 * followed (a 3xx is a failed attempt): following one would skip the address check.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { WebhookPoster } from '../core/webhooks/delivery';

export const nodeWebhookPoster: WebhookPoster = ({ url, address, body, headers, timeoutMs }) =>
  new Promise((resolve, reject) => {
    const family = isIP(address) === 6 ? 6 : 4;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': Buffer.byteLength(body).toString(), 'user-agent': 'idempotent-payments-webhooks/1' },
        lookup: (_host, opts, cb) => {
          if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
          else cb(null, address, family);
        },
        signal: AbortSignal.timeout(timeoutMs),
      },
      (res) => {
        res.resume(); // the receiver's body is not read: only the status matters
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
