import { describe, expect, it } from 'vitest';
import { classifyAddress, parseWebhookUrl, resolveWebhookTarget, type HostResolver } from '../../functions/core/webhooks/endpoint-url';

const prod = { allowLoopbackHttp: false };
const dev = { allowLoopbackHttp: true };
const dns = (table: Record<string, string[]>): HostResolver => async (h) => {
  await Promise.resolve();
  if (!table[h]) throw new Error('ENOTFOUND');
  return table[h]!;
};
const code = async (p: Promise<unknown> | (() => unknown)) => {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'accepted';
  } catch (e) {
    return (e as { code?: string }).code;
  }
};
const check = (raw: string, policy = prod, resolver = dns({})) =>
  code(async () => resolveWebhookTarget(parseWebhookUrl(raw, policy), policy, resolver));

describe('webhook endpoint URLs', () => {
  it('classifies private, loopback, link-local and reserved addresses, v4 and v6', () => {
    expect(classifyAddress('93.184.216.34')).toBe('public');
    expect(classifyAddress('2606:2800:220:1::248')).toBe('public');
    for (const ip of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1']) expect(classifyAddress(ip)).toBe('loopback');
    for (const ip of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '100.64.0.1', 'fd00::1', '::ffff:10.0.0.1', '::ffff:a00:1'])
      expect(classifyAddress(ip), ip).toBe('private');
    for (const ip of ['169.254.169.254', 'fe80::1', '::ffff:169.254.169.254']) expect(classifyAddress(ip), ip).toBe('link-local');
    for (const ip of ['0.0.0.0', '224.0.0.1', '255.255.255.255', '::', 'ff02::1', '64:ff9b::a00:1', 'not-an-ip'])
      expect(classifyAddress(ip), ip).toBe('reserved');
    expect(classifyAddress('172.32.0.1')).toBe('public');
  });

  it('in staging and prod: https only, and no host that resolves to a private, loopback or link-local address', async () => {
    const resolver = dns({ 'hooks.example.com': ['93.184.216.34'], 'evil.example.com': ['93.184.216.34', '10.0.0.5'], 'meta.example.com': ['169.254.169.254'], 'local.example.com': ['127.0.0.1'] });
    expect(await check('https://hooks.example.com/payments', prod, resolver)).toBe('accepted');
    expect(await check('http://hooks.example.com/payments', prod, resolver)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://evil.example.com/', prod, resolver)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://meta.example.com/', prod, resolver)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://local.example.com/', prod, resolver)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://127.0.0.1:8443/', prod)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://[::1]/', prod)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://169.254.169.254/latest/meta-data', prod)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://192.168.0.10/', prod)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('https://nowhere.example.com/', prod, resolver)).toBe('INVALID_WEBHOOK_URL');
  });

  it('refuses malformed URLs, credentials and other schemes with a clear 400', async () => {
    for (const raw of ['', 'not a url', '/relative', 'ftp://hooks.example.com/', 'https://u:p@hooks.example.com/', 'https://hooks.example.com/#x']) {
      const err = await code(() => parseWebhookUrl(raw, prod));
      expect(err, raw).toBe('INVALID_WEBHOOK_URL');
    }
    try {
      parseWebhookUrl('ftp://x', prod);
    } catch (e) {
      expect((e as { httpStatus: number }).httpStatus).toBe(400);
    }
  });

  it('the dev-only setting admits http to loopback and nothing else private', async () => {
    expect(await check('http://127.0.0.1:4010/hook', dev)).toBe('accepted');
    expect(await check('http://[::1]:4010/hook', dev)).toBe('accepted');
    expect(await check('http://10.0.0.5/hook', dev)).toBe('INVALID_WEBHOOK_URL');
    expect(await check('http://169.254.169.254/', dev)).toBe('INVALID_WEBHOOK_URL');
    // http is for loopback only, even in dev.
    expect(await check('http://hooks.example.com/', dev, dns({ 'hooks.example.com': ['93.184.216.34'] }))).toBe('INVALID_WEBHOOK_URL');
  });

  it('returns the checked address to pin the delivery to', async () => {
    const target = await resolveWebhookTarget(new URL('https://hooks.example.com/'), prod, dns({ 'hooks.example.com': ['93.184.216.34'] }));
    expect(target.address).toBe('93.184.216.34');
  });
});
