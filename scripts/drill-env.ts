/**
 * Function settings for local runs, recovery drills and end-to-end tests.
 */
import { startLocalStack, type LocalStackOptions } from '@idempotent-payments/local-stack';
import { startProviderSimulator } from '@idempotent-payments/provider-simulator';

/**
 * Points the functions at a local provider (the simulator): its URL, and a test key in place of the
 * Secrets Manager secret the stack names (the loader accepts PROVIDER_API_KEY only while
 * PROVIDER_SECRET_ID is empty).
 */
export function localProviderEnv(providerUrl: string): Record<string, string> {
  // The simulator has no account rate limit: the budget still paces every call through DynamoDB Local,
  // at a rate that does not hold back local runs and their measurements.
  return {
    PROVIDER_URL: providerUrl,
    PROVIDER_SECRET_ID: '',
    PROVIDER_API_KEY: 'sk_test_local',
    PROVIDER_OPS_PER_SECOND: '1000',
    // The webhook signing secret the simulator signs its events with (wireProviderWebhooks).
    PROVIDER_WEBHOOK_SECRET_ID: '',
    PROVIDER_WEBHOOK_SECRET: LOCAL_WEBHOOK_SECRET,
  };
}

/**
 * Local runs may register http webhook endpoints on loopback (a receiver on 127.0.0.1): the setting is
 * local-only and never deployed, so staging and prod take https to public addresses only.
 */
export const LOCAL_WEBHOOK_ENV: Readonly<Record<string, string>> = { WEBHOOK_ALLOW_LOOPBACK_HTTP: 'true' };

/** The signing secret shared by the simulator and the local provider webhook function (local only). */
export const LOCAL_WEBHOOK_SECRET = 'whsec_local_provider_webhooks_0123456789';

/** Points the simulator's webhook events at the local API's provider route, signed with the local secret. */
export function wireProviderWebhooks(provider: { setWebhookEndpoint(e: { url: string; secret: string } | undefined): void }, apiUrl: string): void {
  provider.setWebhookEndpoint({ url: `${apiUrl}/webhooks/provider`, secret: LOCAL_WEBHOOK_SECRET });
}

/** The same code paths as production with seconds instead of minutes (backoff, lease, stuck threshold, run lock). */
export function fastRecoveryEnv(providerUrl: string): Record<string, string> {
  return {
    ...localProviderEnv(providerUrl),
    RETRY_BASE_SECONDS: '0.2',
    RETRY_CAP_SECONDS: '5',
    LEASE_SECONDS: '5',
    PROVIDER_TIMEOUT_MS: '1000',
    STUCK_AFTER_SECONDS: '3',
    // A run killed with the stack would otherwise hold the run lock for the production 6 minutes.
    RECOVERY_RUN_LEASE_SECONDS: '10',
  };
}

/**
 * The local stack with the provider simulator in front of its functions, as tests and drills run it:
 * stop() ends both, the stack first.
 */
export async function startLocalRun(options: { extraEnv?: Record<string, string>; providerWebhooks?: boolean } & Omit<LocalStackOptions, 'extraEnv'> = {}) {
  const provider = await startProviderSimulator({ port: 0 });
  try {
    const { extraEnv, providerWebhooks, ...rest } = options;
    const stack = await startLocalStack({ apiPort: 0, ...rest, extraEnv: { ...localProviderEnv(provider.url), ...LOCAL_WEBHOOK_ENV, ...extraEnv } });
    // The provider's events reach the local API, as Stripe's reach the deployed one (off when asked, to
    // compare a run with and without them).
    if (providerWebhooks !== false) wireProviderWebhooks(provider, stack.apiUrl);
    return {
      stack,
      provider,
      stop: async () => {
        await stack.stop();
        await provider.stop();
      },
    };
  } catch (err) {
    await provider.stop();
    throw err;
  }
}
