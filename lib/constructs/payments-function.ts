import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../config';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface PaymentsFunctionProps {
  /** Entry file relative to the project root, e.g. `functions/api/create-payment.ts`. */
  readonly entry: string;
  readonly config: EnvironmentConfig;
  readonly description: string;
  readonly environment?: Record<string, string>;
  readonly timeout?: Duration;
  readonly memorySize?: number;
}

/**
 * The project's Lambda defaults in one place: Node.js 22 on ARM64, ESM bundle with source maps built by
 * the locally installed esbuild, explicit log group, X-Ray tracing. The caller's environment is merged
 * over the defaults, never replacing them.
 */
export class PaymentsFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: PaymentsFunctionProps) {
    const { config } = props;
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
      retention: logs.RetentionDays[retentionName(config.logRetentionDays)],
      removalPolicy: config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    super(scope, id, {
      entry: path.join(projectRoot, props.entry),
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? config.lambdaMemoryMb,
      timeout: props.timeout ?? Duration.seconds(10),
      tracing: lambda.Tracing.ACTIVE,
      logGroup,
      depsLockFilePath: path.join(projectRoot, 'package-lock.json'),
      projectRoot,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        STAGE: config.stage,
        POWERTOOLS_SERVICE_NAME: 'payments',
        POWERTOOLS_METRICS_NAMESPACE: 'IdempotentPayments',
        POWERTOOLS_LOG_LEVEL: config.logLevel,
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        // Node 20 runs the same bundle in the local stack, so do not emit Node-22-only syntax.
        target: 'node20',
        sourceMap: true,
        minify: true,
        mainFields: ['module', 'main'],
        // The AWS SDK v3 is provided by the runtime; CJS dependencies inside an ESM bundle need require().
        externalModules: ['@aws-sdk/*'],
        banner: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
      },
    });
  }
}

function retentionName(days: number): keyof typeof logs.RetentionDays {
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
