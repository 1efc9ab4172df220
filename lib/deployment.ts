/**
 * What one `cdk deploy` needs besides the stage's config, read from CDK context (`-c key=value`):
 *
 *   stage            dev | staging | prod (cdk.json defaults to dev)
 *   qualifier        a second copy of a stage in the same account: stack `IdempotentPayments-<stage>-<qualifier>`;
 *                    every name (alarms, dashboard, usage plans, metrics' `stage` dimension) follows it
 *   alarmEmail       comma-separated addresses subscribed to the stack's alarm topic
 *   alarmTopicArn    an existing SNS topic (on-call tooling) that every alarm notifies instead
 *   providerSecretArn an existing provider-key secret to use (e.g. the one a destroyed copy retained)
 *                    instead of creating one
 *
 * Staging and prod refuse to synthesize without an alarm recipient: a stage whose alarms reach nobody
 * is found out on its first bad day.
 */
import type { PaymentsStackProps } from './payments-stack';
import { configFor, type EnvironmentConfig } from './config';

/** A context value bin/app.ts cannot use; it prints the message alone, without a stack trace. */
export class DeploymentContextError extends Error {
  override readonly name = 'DeploymentContextError';
}

export interface Deployment {
  readonly stackName: string;
  readonly config: EnvironmentConfig;
  readonly props: Omit<PaymentsStackProps, 'env' | 'description'>;
}

const QUALIFIER = /^[a-z0-9]{1,12}$/;
const EMAIL = /^[^\s@,]+@[^\s@,]+\.[^\s@,]+$/;
const TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/;

/** The deployment described by the context; `get` is `app.node.tryGetContext`. */
export function deploymentFromContext(get: (key: string) => unknown): Deployment {
  const config = configFor(get('stage') ?? 'dev');
  const text = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new DeploymentContextError(`-c ${key} must be a string`);
    return v.trim();
  };
  const qualifier = text('qualifier');
  if (qualifier !== undefined && !QUALIFIER.test(qualifier)) {
    throw new DeploymentContextError(`-c qualifier=${qualifier}: use 1 to 12 lower-case letters or digits`);
  }
  const emails = (text('alarmEmail') ?? '').split(',').map((e) => e.trim()).filter(Boolean);
  for (const e of emails) if (!EMAIL.test(e)) throw new DeploymentContextError(`-c alarmEmail: "${e}" is not an email address`);
  const topicArn = text('alarmTopicArn');
  if (topicArn !== undefined && !TOPIC_ARN.test(topicArn)) throw new DeploymentContextError(`-c alarmTopicArn=${topicArn} is not an SNS topic ARN`);
  if (config.requireAlarmRecipient && !emails.length && !topicArn) {
    throw new DeploymentContextError(
      `${config.stage} needs an alarm recipient: -c alarmEmail=oncall@example.com (comma-separated) or -c alarmTopicArn=arn:aws:sns:<region>:<account>:<topic>`,
    );
  }
  const providerSecretArn = text('providerSecretArn');
  if (providerSecretArn !== undefined && !SECRET_ARN.test(providerSecretArn)) {
    throw new DeploymentContextError(`-c providerSecretArn=${providerSecretArn} is not a complete Secrets Manager secret ARN`);
  }
  return {
    stackName: `IdempotentPayments-${config.stage}${qualifier ? `-${qualifier}` : ''}`,
    config,
    props: {
      config,
      ...(qualifier ? { qualifier } : {}),
      alarmRecipients: { emails, ...(topicArn ? { topicArn } : {}) },
      ...(providerSecretArn ? { providerSecretArn } : {}),
    },
  };
}
