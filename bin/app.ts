#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { UnknownStageError } from '../lib/config';
import { DeploymentContextError, deploymentFromContext, type Deployment } from '../lib/deployment';
import { PaymentsStack } from '../lib/payments-stack';

const app = new App();
let deployment: Deployment;
try {
  deployment = deploymentFromContext((key) => app.node.tryGetContext(key));
} catch (err) {
  if (!(err instanceof UnknownStageError) && !(err instanceof DeploymentContextError)) throw err;
  // One line the operator can act on, not a stack trace.
  console.error(`Error: ${err.message}`);
  process.exit(1);
}
const { config, stackName, props } = deployment;
new PaymentsStack(app, stackName, {
  ...props,
  env: { account: config.account ?? process.env.CDK_DEFAULT_ACCOUNT, region: config.region },
  description: `Idempotent payments API (${stackName})`,
});
app.synth();
