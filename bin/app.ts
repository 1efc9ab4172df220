#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { configFor } from '../lib/config';
import { PaymentsStack } from '../lib/payments-stack';

const app = new App();
const config = configFor(app.node.tryGetContext('stage') ?? 'dev');
new PaymentsStack(app, `IdempotentPayments-${config.stage}`, {
  config,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: `Idempotent payments API (${config.stage})`,
});
app.synth();
