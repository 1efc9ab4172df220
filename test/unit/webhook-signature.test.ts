import { describe, expect, it } from 'vitest';
import { verifyWebhook } from '../../packages/client/src/verify-webhook';
import { ROTATION_GRACE_MS, signatureHeader } from '../../functions/core/webhooks/signature';
import { HOUR_MS, TEST_EPOCH } from '../helpers/clock';

// The service signs (core) and the published client verifies: the two halves are tested against each other.
const body = JSON.stringify({ id: 'evt_1', type: 'payment.succeeded', data: { object: { id: 'pay_1', version: 3 } } });
const at = (ms: number) => new Date(TEST_EPOCH + ms);
const sec = (ms: number) => Math.floor((TEST_EPOCH + ms) / 1000);

describe('webhook signature', () => {
  it('a delivery signed with the secret verifies', () => {
    const header = signatureHeader({ secret: 'whsec_a' }, body, at(0));
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(body, header, 'whsec_a', 300, sec(0))).toEqual({ ok: true, timestamp: sec(0) });
  });

  it('a wrong secret, a changed body or a forged header is refused', () => {
    const header = signatureHeader({ secret: 'whsec_a' }, body, at(0));
    expect(verifyWebhook(body, header, 'whsec_b', 300, sec(0))).toMatchObject({ ok: false, reason: 'no_matching_signature' });
    expect(verifyWebhook(body.replace('3', '4'), header, 'whsec_a', 300, sec(0))).toMatchObject({ ok: false, reason: 'no_matching_signature' });
    // The timestamp is signed: moving it forward breaks the signature.
    const moved = header.replace(/t=(\d+)/, (_, t) => `t=${Number(t) + 60}`);
    expect(verifyWebhook(body, moved, 'whsec_a', 300, sec(60_000))).toMatchObject({ ok: false, reason: 'no_matching_signature' });
    expect(verifyWebhook(body, 'v1=abc', 'whsec_a', 300, sec(0))).toMatchObject({ ok: false, reason: 'malformed_header' });
    expect(verifyWebhook(body, undefined, 'whsec_a', 300, sec(0))).toMatchObject({ ok: false, reason: 'malformed_header' });
  });

  it('a stale delivery is refused outside the tolerance and accepted inside it', () => {
    const header = signatureHeader({ secret: 'whsec_a' }, body, at(0));
    expect(verifyWebhook(body, header, 'whsec_a', 300, sec(300_000)).ok).toBe(true);
    expect(verifyWebhook(body, header, 'whsec_a', 300, sec(301_000))).toMatchObject({ ok: false, reason: 'timestamp_outside_tolerance' });
  });

  it('during rotation both secrets verify; after 24 h only the new one', () => {
    const rotatedAt = TEST_EPOCH;
    const endpoint = { secret: 'whsec_new', previousSecret: 'whsec_old', previousSecretExpiresAt: rotatedAt + ROTATION_GRACE_MS };
    const during = signatureHeader(endpoint, body, at(23 * HOUR_MS));
    expect(during.match(/v1=/g)).toHaveLength(2);
    expect(verifyWebhook(body, during, 'whsec_old', 300, sec(23 * HOUR_MS)).ok).toBe(true);
    expect(verifyWebhook(body, during, 'whsec_new', 300, sec(23 * HOUR_MS)).ok).toBe(true);
    const after = signatureHeader(endpoint, body, at(ROTATION_GRACE_MS));
    expect(after.match(/v1=/g)).toHaveLength(1);
    expect(verifyWebhook(body, after, 'whsec_old', 300, sec(ROTATION_GRACE_MS))).toMatchObject({ ok: false, reason: 'no_matching_signature' });
    expect(verifyWebhook(body, after, 'whsec_new', 300, sec(ROTATION_GRACE_MS)).ok).toBe(true);
  });
});
