import { describe, expect, it } from 'vitest';
import { FUNCTION_SETTINGS, SETTINGS, isRequired, type SettingName } from '../../functions/shared/config-contract';
import { loadConfig } from '../../functions/shared/env';

/** Every required setting of a function's contract, with a plausible value. */
function envFor(fn: keyof typeof FUNCTION_SETTINGS): Record<string, string> {
  const env: Record<string, string> = { PAYMENTS_FUNCTION: fn };
  for (const name of FUNCTION_SETTINGS[fn] as readonly SettingName[]) if (isRequired(name)) env[name] = `value-of-${name}`;
  return env;
}

describe('loadConfig', () => {
  it('gives every setting its contract default when the environment is empty', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ idempotencyTtlSeconds: 172_800, openDeadlineSeconds: 86_400, providerKeyRetentionSeconds: 86_400, maxRetries: 3, leaseSeconds: 60, openPaymentsIndex: 'open-payments' });
    expect(config.providerUrl).toBe('https://api.stripe.com');
    expect(config.providerSecretId).toBeUndefined();
  });

  it('parses numbers and fails fast, naming the variable, on a value that is not one', () => {
    expect(loadConfig({ MAX_RETRIES: '5', BREAKER_FAILURE_RATE: '0.25' })).toMatchObject({ maxRetries: 5, breakerFailureRate: 0.25 });
    expect(() => loadConfig({ MAX_RETRIES: 'five' })).toThrow(/MAX_RETRIES is not a number: five/);
    expect(() => loadConfig({ LEASE_SECONDS: ' ' })).toThrow(/LEASE_SECONDS is not a number/);
  });

  it("requires the required settings of the function's contract, and only those", () => {
    for (const fn of Object.keys(FUNCTION_SETTINGS) as (keyof typeof FUNCTION_SETTINGS)[]) {
      const env = envFor(fn);
      expect(loadConfig(env).function).toBe(fn);
      const required = Object.keys(env).filter((k) => k !== 'PAYMENTS_FUNCTION');
      expect(required.length).toBeGreaterThan(0);
      for (const name of required) {
        const { [name]: _dropped, ...rest } = env;
        expect(() => loadConfig(rest)).toThrow(new RegExp(`Missing environment variable ${name} .*required by the ${fn} function`));
      }
    }
    expect(() => loadConfig({ PAYMENTS_FUNCTION: 'nope' })).toThrow(/names no function/);
  });

  it('parses booleans as the stack writes them, and refuses anything else', () => {
    expect(loadConfig({}).createByTransaction).toBe(false);
    expect(loadConfig({ CREATE_BY_TRANSACTION: 'true' }).createByTransaction).toBe(true);
    expect(() => loadConfig({ CREATE_BY_TRANSACTION: 'yes' })).toThrow(/CREATE_BY_TRANSACTION is not true or false/);
  });

  it('builds the provider URL from protocol, host and port; PROVIDER_URL (local) overrides it', () => {
    expect(loadConfig({ PROVIDER_API_PROTOCOL: 'http', PROVIDER_API_HOST: '127.0.0.1', PROVIDER_API_PORT: '4010' }).providerUrl).toBe('http://127.0.0.1:4010');
    expect(loadConfig({ PROVIDER_API_HOST: 'api.example.com', PROVIDER_URL: 'http://127.0.0.1:9/p' }).providerUrl).toBe('http://127.0.0.1:9/p');
    expect(() => loadConfig({ PROVIDER_API_PROTOCOL: 'ftp' })).toThrow(/PROVIDER_API_PROTOCOL must be https or http/);
  });

  it('accepts the local PROVIDER_API_KEY only while PROVIDER_SECRET_ID is unset', () => {
    expect(loadConfig({ PROVIDER_API_KEY: 'sk_local' }).providerApiKey).toBe('sk_local');
    expect(loadConfig({ PROVIDER_API_KEY: 'sk_local', PROVIDER_SECRET_ID: '' }).providerApiKey).toBe('sk_local');
    expect(loadConfig({ PROVIDER_SECRET_ID: 'idempotent-payments/dev/provider-api-key' }).providerSecretId).toBe('idempotent-payments/dev/provider-api-key');
    expect(() => loadConfig({ PROVIDER_API_KEY: 'sk_local', PROVIDER_SECRET_ID: 'idempotent-payments/dev/provider-api-key' })).toThrow(/PROVIDER_API_KEY is a local-only override/);
  });

  it('accepts the local PROVIDER_WEBHOOK_SECRET only while PROVIDER_WEBHOOK_SECRET_ID is unset', () => {
    expect(loadConfig({ PROVIDER_WEBHOOK_SECRET: 'whsec_local', PROVIDER_WEBHOOK_SECRET_ID: '' }).providerWebhookSecret).toBe('whsec_local');
    expect(() => loadConfig({ PROVIDER_WEBHOOK_SECRET: 'whsec_local', PROVIDER_WEBHOOK_SECRET_ID: 'arn:webhook' })).toThrow(/PROVIDER_WEBHOOK_SECRET is a local-only override/);
  });

  it('the contract: every setting is documented, and every function lists only known settings, once', () => {
    for (const [name, spec] of Object.entries(SETTINGS)) expect(spec.doc.length, name).toBeGreaterThan(10);
    const fields = Object.values(SETTINGS).map((s) => s.field);
    expect(new Set(fields).size).toBe(fields.length);
    for (const [fn, names] of Object.entries(FUNCTION_SETTINGS)) {
      expect(new Set(names).size, fn).toBe(names.length);
      for (const n of names) expect(Object.keys(SETTINGS), fn).toContain(n);
    }
  });
});
