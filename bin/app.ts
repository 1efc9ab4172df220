#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { configFor, UnknownStageError, type EnvironmentConfig } from '../lib/config';
import { PaymentsStack } from '../lib/payments-stack';

const app = new App();
let config: EnvironmentConfig;
try {
  config = configFor(app.node.tryGetContext('stage') ?? 'dev');
} catch (err) {
  if (!(err instanceof UnknownStageError)) throw err;
  // One line the operator can act on, not a stack trace.
  console.error(`Error: ${err.message}`);
  process.exit(1);
}
new PaymentsStack(app, `IdempotentPayments-${config.stage}`, {
  config,
  env: { account: config.account ?? process.env.CDK_DEFAULT_ACCOUNT, region: config.region },
  description: `Idempotent payments API (${config.stage})`,
});
app.synth();
