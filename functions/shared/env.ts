/**
 * The one reader of a function's environment: parses every setting of the contract
 * (`config-contract.ts`) once per function load and checks it, so a misconfigured function fails
 * fast with the variable's name instead of somewhere in a handler.
 */
import {
  FUNCTION_CONTRACT_VARIABLE,
  FUNCTION_SETTINGS,
  SERVICE_TAG,
  SETTINGS,
  isFunctionName,
  isRequired,
  settingRelationProblems,
  type FunctionName,
  type SettingName,
  type SettingSpec,
} from './config-contract';

type Settings = typeof SETTINGS;
type ValueOf<S extends SettingSpec> = S['type'] extends 'number' ? number : S['type'] extends 'boolean' ? boolean : string;
type OptionalNames = { [N in SettingName]: Settings[N] extends { optional: true } ? N : never }[SettingName];

/** One field per setting, named and typed by the contract; optional settings may be undefined. */
export type SettingsConfig = { readonly [N in Exclude<SettingName, OptionalNames> as Settings[N]['field']]: ValueOf<Settings[N]> } & {
  readonly [N in OptionalNames as Settings[N]['field']]?: ValueOf<Settings[N]>;
};

export interface PaymentsConfig extends SettingsConfig {
  /** The function contract this environment was built for; undefined in tests and scripts. */
  readonly function?: FunctionName;
  /** Provider base URL: PROVIDER_URL when set (local), else PROTOCOL://HOST:PORT. */
  readonly providerUrl: string;
  /**
   * This deployment's tag on provider intents and refunds: the service and the stage the function runs in
   * (the STAGE runtime variable the stack sets; `local` when unset). Only intents carrying it are ours.
   */
  readonly tag: { readonly service: string; readonly stage: string };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function parse(name: SettingName, raw: string): string | number | boolean {
  const spec: SettingSpec = SETTINGS[name];
  if (spec.type === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`Environment variable ${name} is not a number: ${raw}`);
    return n;
  }
  if (spec.type === 'boolean') {
    if (raw !== 'true' && raw !== 'false') throw new ConfigError(`Environment variable ${name} is not true or false: ${raw}`);
    return raw === 'true';
  }
  return raw;
}

/**
 * Reads the configuration from `env`. The function's contract comes from PAYMENTS_FUNCTION, which the
 * stack sets: every required setting of that contract must be present. Without it (tests, scripts)
 * nothing is required, and a resource name that is absent is an empty string.
 *
 * Present values are always checked (a number must be a number). Settings outside the contract take
 * their defaults; code that needs one must list it in FUNCTION_SETTINGS, or the stack will not set it.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): PaymentsConfig {
  const contractName = env[FUNCTION_CONTRACT_VARIABLE] || undefined;
  if (contractName !== undefined && !isFunctionName(contractName)) {
    throw new ConfigError(`${FUNCTION_CONTRACT_VARIABLE}=${contractName} names no function in FUNCTION_SETTINGS`);
  }
  const required = new Set<SettingName>(contractName ? FUNCTION_SETTINGS[contractName].filter(isRequired) : []);

  const values: Record<string, unknown> = {};
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const spec: SettingSpec = SETTINGS[name];
    const raw = env[name];
    if (raw !== undefined && raw !== '') values[spec.field] = parse(name, raw);
    else if (required.has(name)) throw new ConfigError(`Missing environment variable ${name} (${spec.doc}), required by the ${contractName} function`);
    else if (spec.default !== undefined) values[spec.field] = spec.default;
    else if (!spec.optional) values[spec.field] = '';
  }
  const config = values as unknown as SettingsConfig;

  if (config.providerApiKey !== undefined && config.providerSecretId !== undefined) {
    throw new ConfigError('PROVIDER_API_KEY is a local-only override and is not accepted while PROVIDER_SECRET_ID is set');
  }
  if (config.providerWebhookSecret !== undefined && config.providerWebhookSecretId !== undefined) {
    throw new ConfigError('PROVIDER_WEBHOOK_SECRET is a local-only override and is not accepted while PROVIDER_WEBHOOK_SECRET_ID is set');
  }
  if (config.providerApiProtocol !== 'https' && config.providerApiProtocol !== 'http') {
    throw new ConfigError(`PROVIDER_API_PROTOCOL must be https or http: ${config.providerApiProtocol}`);
  }
  const relations = settingRelationProblems(config);
  if (relations.length) throw new ConfigError(relations.join('; '));
  const providerUrl =
    config.providerUrlOverride ?? new URL(`${config.providerApiProtocol}://${config.providerApiHost}:${config.providerApiPort}`).origin;
  const tag = { service: SERVICE_TAG, stage: env.STAGE || 'local' };
  return { ...config, ...(contractName ? { function: contractName } : {}), providerUrl, tag };
}
