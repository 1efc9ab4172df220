import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  FUNCTION_CONTRACT_VARIABLE,
  FUNCTION_SETTINGS,
  SETTINGS,
  defaultOf,
  stackSettingsOf,
  type FunctionName,
  type SettingName,
  type SettingOf,
  type StageSettingName,
} from '../../functions/shared/config-contract';
import type { EnvironmentConfig } from '../config';
import { METRICS_NAMESPACE, METRICS_SERVICE } from './monitoring';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface PaymentsFunctionProps {
  /** Entry file relative to the project root, e.g. `functions/api/create-payment.ts`. */
  readonly entry: string;
  /** Which contract of FUNCTION_SETTINGS this function's code reads its environment by. */
  readonly contract: FunctionName;
  readonly config: EnvironmentConfig;
  /** STAGE of the function: the `stage` dimension of its metrics (`<stage>-<qualifier>` for a second copy). Default the stage. */
  readonly metricsStage?: string;
  readonly description: string;
  readonly timeout?: Duration;
  readonly memorySize?: number;
  readonly reservedConcurrentExecutions?: number;
}

const BINDERS = {
  value: 'stage settings',
  table: 'bindTable',
  queue: 'bindQueue',
  secret: 'bindSecret',
  function: 'bindFunction',
} as const;

export type TableAction = 'GetItem' | 'BatchGetItem' | 'Query' | 'PutItem' | 'UpdateItem' | 'DeleteItem' | 'ConditionCheckItem';

/**
 * The project's Lambda defaults in one place: Node.js 22 on ARM64, ESM bundle with source maps built by
 * the locally installed esbuild, explicit log group, X-Ray tracing.
 *
 * The environment is the function's config contract and nothing else: the value settings come from the
 * stage config (or the contract's defaults), and each resource setting is bound with `bindTable`,
 * `bindQueue`, `bindSecret` or `bindFunction`, which set the variable and the grant in one call. Binding
 * a setting outside the contract throws; synthesis fails while a contract setting is left unbound.
 */
export class PaymentsFunction extends NodejsFunction {
  readonly contract: FunctionName;
  private readonly bound = new Set<SettingName>();

  constructor(scope: Construct, id: string, props: PaymentsFunctionProps) {
    const { config } = props;
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
      retention: logs.RetentionDays[retentionName(config.logRetentionDays)],
      removalPolicy: config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    // The role may write to the function's own log group and nothing else of CloudWatch Logs (in place of
    // the managed AWSLambdaBasicExecutionRole, which allows every log group).
    const role = new iam.Role(scope, `${id}ServiceRole`, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }),
    );
    super(scope, id, {
      role,
      entry: path.join(projectRoot, props.entry),
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? config.lambdaMemoryMb,
      timeout: props.timeout ?? Duration.seconds(10),
      ...(props.reservedConcurrentExecutions !== undefined ? { reservedConcurrentExecutions: props.reservedConcurrentExecutions } : {}),
      tracing: lambda.Tracing.ACTIVE,
      logGroup,
      depsLockFilePath: path.join(projectRoot, 'package-lock.json'),
      projectRoot,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        STAGE: props.metricsStage ?? config.stage,
        POWERTOOLS_SERVICE_NAME: METRICS_SERVICE,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_LOG_LEVEL: config.logLevel,
        [FUNCTION_CONTRACT_VARIABLE]: props.contract,
      },
      bundling: {
        format: OutputFormat.ESM,
        // Node 20 runs the same bundle in the local stack, so do not emit Node-22-only syntax.
        target: 'node20',
        sourceMap: true,
        minify: true,
        // esbuild reports problems only (not bundle sizes): synth output stays readable.
        logLevel: LogLevel.WARNING,
        mainFields: ['module', 'main'],
        // The AWS SDK v3 is provided by the runtime; CJS dependencies inside an ESM bundle need require().
        externalModules: ['@aws-sdk/*'],
        banner: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
      },
    });
    this.contract = props.contract;
    for (const name of stackSettingsOf(props.contract)) {
      if (SETTINGS[name].kind !== 'value') continue;
      const value = config.settings[name as StageSettingName] ?? defaultOf(name);
      if (value === undefined) throw new Error(`${name} has no default and no value for stage ${config.stage}`);
      this.setVariable(name, String(value));
    }
    this.node.addValidation({
      validate: () =>
        stackSettingsOf(this.contract)
          .filter((name) => !this.bound.has(name))
          .map((name) => `${id}: ${name} is in the ${this.contract} contract but not bound; bind it with its grant (${BINDERS[SETTINGS[name].kind]})`),
    });
  }

  /**
   * Sets the table's name in `setting` and grants exactly `actions` on the table, and Query on the named
   * `indexes` only. A table encrypted with a customer-managed key also gets the key actions those table
   * actions need (Decrypt to read; Encrypt and GenerateDataKey to write), on that key only.
   */
  bindTable(table: dynamodb.ITable, setting: SettingOf<'table'>, actions: readonly TableAction[], indexes: readonly string[] = []): this {
    this.setVariable(setting, table.tableName);
    if (actions.length) {
      this.addToRolePolicy(new iam.PolicyStatement({ actions: actions.map((a) => `dynamodb:${a}`), resources: [table.tableArn] }));
    }
    if (indexes.length) {
      this.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: indexes.map((index) => `${table.tableArn}/index/${index}`) }),
      );
    }
    if (table.encryptionKey) {
      const writes = actions.some((a) => a === 'PutItem' || a === 'UpdateItem' || a === 'DeleteItem');
      this.addToRolePolicy(
        new iam.PolicyStatement({
          actions: writes ? ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'],
          resources: [table.encryptionKey.keyArn],
        }),
      );
    }
    return this;
  }

  /**
   * Sets the queue's URL in `setting` and lets the function send to it: SendMessage only, plus, for a
   * queue encrypted with a customer-managed key, the two key actions SQS needs for a send.
   */
  bindQueue(queue: sqs.IQueue, setting: SettingOf<'queue'>, access: 'send'): this {
    this.setVariable(setting, queue.queueUrl);
    if (access === 'send') {
      this.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [queue.queueArn] }));
      if (queue.encryptionMasterKey) {
        this.addToRolePolicy(new iam.PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [queue.encryptionMasterKey.keyArn] }));
      }
    }
    return this;
  }

  /** Sets the secret's ARN (never its value) in `setting` and lets the function read the value. */
  bindSecret(secret: secretsmanager.ISecret, setting: SettingOf<'secret'>, access: 'read'): this {
    this.setVariable(setting, secret.secretArn);
    if (access === 'read') secret.grantRead(this);
    return this;
  }

  /** Sets the function's name in `setting` and lets this function invoke it (unqualified: no versions or aliases). */
  bindFunction(fn: lambda.IFunction, setting: SettingOf<'function'>, access: 'invoke'): this {
    this.setVariable(setting, fn.functionName);
    if (access === 'invoke') this.addToRolePolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [fn.functionArn] }));
    return this;
  }

  private setVariable(name: SettingName, value: string): void {
    if (!(FUNCTION_SETTINGS[this.contract] as readonly SettingName[]).includes(name)) {
      throw new Error(`${this.node.id}: ${name} is not in the ${this.contract} contract; add it to FUNCTION_SETTINGS first`);
    }
    if (SETTINGS[name].setBy !== 'stack') throw new Error(`${name} is local-only and never deployed`);
    if (this.bound.has(name)) throw new Error(`${this.node.id}: ${name} is bound twice`);
    this.bound.add(name);
    this.addEnvironment(name, value);
  }
}

export function retentionName(days: number): keyof typeof logs.RetentionDays {
  const byDays: Record<number, keyof typeof logs.RetentionDays> = {
    1: 'ONE_DAY',
    3: 'THREE_DAYS',
    7: 'ONE_WEEK',
    14: 'TWO_WEEKS',
    30: 'ONE_MONTH',
    90: 'THREE_MONTHS',
    180: 'SIX_MONTHS',
    365: 'ONE_YEAR',
  };
  const name = byDays[days];
  if (!name) throw new Error(`Unsupported log retention: ${days} days`);
  return name;
}
