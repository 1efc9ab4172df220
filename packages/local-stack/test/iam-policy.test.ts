/**
 * The local IAM evaluator and the request → (action, resource) mapping, without any server. The last
 * block reads the repository's synthesized template (run `npm run synth` first).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluate, functionRoles, type PolicyStatement } from '../src/iam-policy';
import { accessDenied, accessKeyIdOf, requiredAuthorizations, type ArnResolver } from '../src/iam-proxy';
import { loadSynthesizedStack, localTableArn, resolveValue, type CfnTemplate } from '../src/template';

const T = 'arn:aws:dynamodb:local:000000000000:table';
const allow = (actions: string[], resources: string[]): PolicyStatement => ({ effect: 'Allow', actions, resources });

describe('evaluate', () => {
  const statements = [
    allow(['dynamodb:Get*', 'dynamodb:Query'], [`${T}/Payments`, `${T}/Payments/index/*`]),
    allow(['sqs:SendMessage'], ['arn:aws:sqs:us-east-1:000000000000:q?']),
  ];

  it('allows an action matched by a wildcard on a listed resource, case-insensitively for actions', () => {
    expect(evaluate(statements, 'dynamodb:GetItem', `${T}/Payments`)).toEqual({ allowed: true });
    expect(evaluate(statements, 'DynamoDB:getitem', `${T}/Payments`)).toEqual({ allowed: true });
    expect(evaluate(statements, 'sqs:SendMessage', 'arn:aws:sqs:us-east-1:000000000000:q1')).toEqual({ allowed: true });
  });

  it('allows an index only through an index ARN pattern', () => {
    expect(evaluate(statements, 'dynamodb:Query', `${T}/Payments/index/open`)).toEqual({ allowed: true });
    expect(evaluate([allow(['dynamodb:Query'], [`${T}/Payments`])], 'dynamodb:Query', `${T}/Payments/index/open`).allowed).toBe(false);
  });

  it('denies what no statement allows: another action, another table, resources case-sensitively', () => {
    expect(evaluate(statements, 'dynamodb:DeleteItem', `${T}/Payments`)).toEqual({ allowed: false, reason: 'no-allow' });
    expect(evaluate(statements, 'dynamodb:GetItem', `${T}/AuditLog`).allowed).toBe(false);
    expect(evaluate(statements, 'dynamodb:GetItem', `${T}/payments`).allowed).toBe(false);
    expect(evaluate(statements, 'sqs:SendMessage', 'arn:aws:sqs:us-east-1:000000000000:q12').allowed).toBe(false);
  });

  it('an explicit Deny wins over any Allow', () => {
    const withDeny = [...statements, { effect: 'Deny' as const, actions: ['dynamodb:*'], resources: [`${T}/Payments`] }];
    expect(evaluate(withDeny, 'dynamodb:GetItem', `${T}/Payments`)).toEqual({ allowed: false, reason: 'explicit-deny' });
  });
});

describe('functionRoles', () => {
  const template: CfnTemplate = {
    Resources: {
      Fn: { Type: 'AWS::Lambda::Function', Properties: { Role: { 'Fn::GetAtt': ['FnRole', 'Arn'] } } },
      FnRole: {
        Type: 'AWS::IAM::Role',
        Properties: { Policies: [{ PolicyDocument: { Statement: [{ Effect: 'Allow', Action: 'sqs:*', Resource: '*' }] } }] },
      },
      FnPolicy: {
        Type: 'AWS::IAM::Policy',
        Properties: {
          Roles: [{ Ref: 'FnRole' }],
          PolicyDocument: {
            Statement: [
              { Effect: 'Allow', Action: ['dynamodb:GetItem'], Resource: [{ 'Fn::GetAtt': ['Tbl', 'Arn'] }, { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['Tbl', 'Arn'] }, '/index/*']] }] },
              { Effect: 'Allow', Action: 'dynamodb:PutItem', Resource: '*', Condition: { Bool: { 'aws:SecureTransport': 'true' } } },
              { Effect: 'Allow', Action: 'kms:Decrypt', Resource: { 'Fn::GetAtt': ['Key', 'Arn'] } },
            ],
          },
        },
      },
      Tbl: { Type: 'AWS::DynamoDB::Table' },
      Key: { Type: 'AWS::KMS::Key' },
    },
  };
  const roles = functionRoles(template, (v) => resolveValue(v, template, { tables: { Tbl: { name: 'Tbl' } }, queues: {} }));

  it('collects the role inline policies and the attached AWS::IAM::Policy, with intrinsics resolved', () => {
    const role = roles.get('Fn')!;
    expect(role.roleId).toBe('FnRole');
    expect(evaluate(role.statements, 'sqs:SendMessage', 'arn:aws:sqs:us-east-1:000000000000:any').allowed).toBe(true);
    expect(evaluate(role.statements, 'dynamodb:GetItem', localTableArn('Tbl')).allowed).toBe(true);
    expect(evaluate(role.statements, 'dynamodb:GetItem', `${localTableArn('Tbl')}/index/byX`).allowed).toBe(true);
  });

  it('skips, and reports, statements with a condition and resources with no local counterpart', () => {
    const role = roles.get('Fn')!;
    expect(evaluate(role.statements, 'dynamodb:PutItem', localTableArn('Tbl')).allowed).toBe(false);
    expect(role.skipped).toHaveLength(2);
  });
});

describe('requiredAuthorizations', () => {
  const arns: ArnResolver = {
    table: localTableArn,
    queue: (u) => `arn:aws:sqs:us-east-1:000000000000:${u.split('/').pop()}`,
    function: (n) => `arn:aws:lambda:local:000000000000:function:${n}`,
  };
  const ddb = (op: string, body: unknown) => requiredAuthorizations('dynamodb', { target: `DynamoDB_20120810.${op}`, path: '/', body }, arns);

  it('maps DynamoDB operations to their table, and a Query of an index to the index ARN', () => {
    expect(ddb('GetItem', { TableName: 'P' })).toEqual([{ action: 'dynamodb:GetItem', resource: `${T}/P` }]);
    expect(ddb('Query', { TableName: 'P', IndexName: 'open' })).toEqual([{ action: 'dynamodb:Query', resource: `${T}/P/index/open` }]);
  });

  it('a transaction needs the item action on every table it touches; a batch the batch action on each table', () => {
    expect(ddb('TransactWriteItems', { TransactItems: [{ Put: { TableName: 'K' } }, { Update: { TableName: 'P' } }, { ConditionCheck: { TableName: 'A' } }] })).toEqual([
      { action: 'dynamodb:PutItem', resource: `${T}/K` },
      { action: 'dynamodb:UpdateItem', resource: `${T}/P` },
      { action: 'dynamodb:ConditionCheckItem', resource: `${T}/A` },
    ]);
    expect(ddb('TransactGetItems', { TransactItems: [{ Get: { TableName: 'K' } }] })).toEqual([{ action: 'dynamodb:GetItem', resource: `${T}/K` }]);
    expect(ddb('BatchGetItem', { RequestItems: { P: {}, K: {} } })).toEqual([
      { action: 'dynamodb:BatchGetItem', resource: `${T}/P` },
      { action: 'dynamodb:BatchGetItem', resource: `${T}/K` },
    ]);
  });

  it('maps SQS JSON-protocol calls by X-Amz-Target and QueueUrl, and Lambda invocations by path', () => {
    expect(requiredAuthorizations('sqs', { target: 'AmazonSQS.SendMessage', path: '/', body: { QueueUrl: 'http://x/000000000000/q1' } }, arns)).toEqual([
      { action: 'sqs:SendMessage', resource: 'arn:aws:sqs:us-east-1:000000000000:q1' },
    ]);
    expect(requiredAuthorizations('lambda', { path: '/2015-03-31/functions/Rec/invocations', body: {} }, arns)).toEqual([
      { action: 'lambda:InvokeFunction', resource: 'arn:aws:lambda:local:000000000000:function:Rec' },
    ]);
  });

  it('reads the access key id from a SigV4 Authorization header', () => {
    expect(accessKeyIdOf('AWS4-HMAC-SHA256 Credential=LOCALFNAbc/20261126/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00')).toBe('LOCALFNAbc');
    expect(accessKeyIdOf(undefined)).toBeUndefined();
  });

  it('answers a DynamoDB denial with AWS shape and wording', () => {
    const d = accessDenied('dynamodb', 'arn:aws:sts::000000000000:assumed-role/R/F', { action: 'dynamodb:DeleteItem', resource: `${T}/P` }, false);
    expect(d.status).toBe(400);
    expect(JSON.parse(d.body)).toEqual({
      __type: 'com.amazon.coral.service#AccessDeniedException',
      Message: `User: arn:aws:sts::000000000000:assumed-role/R/F is not authorized to perform: dynamodb:DeleteItem on resource: ${T}/P because no identity-based policy allows the dynamodb:DeleteItem action`,
    });
  });
});

describe("the project's synthesized roles", () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const { template } = loadSynthesizedStack(path.join(root, 'cdk.out'));
  const local = {
    tables: Object.fromEntries(Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::DynamoDB::Table').map(([id]) => [id, { name: id, streamArn: `${localTableArn(id)}/stream/x` }])),
    queues: Object.fromEntries(Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::SQS::Queue').map(([id]) => [id, { name: id, url: `http://q/${id}`, arn: `arn:aws:sqs:us-east-1:000000000000:${id}` }])),
  };
  const roles = functionRoles(template, (v) => resolveValue(v, template, local));
  const fnId = (prefix: string) => [...roles.keys()].find((k) => k.startsWith(prefix))!;
  const tableId = (prefix: string) => Object.keys(local.tables).find((k) => k.startsWith(prefix))!;

  it('the reconciler may delete its run lock; the audit writer may not send to the payments queue', () => {
    const reconciler = roles.get(fnId('ReconcilerFunction'))!;
    expect(evaluate(reconciler.statements, 'dynamodb:DeleteItem', localTableArn(tableId('RecoveryRunsTable'))).allowed).toBe(true);
    expect(evaluate(reconciler.statements, 'dynamodb:DeleteItem', localTableArn(tableId('PaymentsTable'))).allowed).toBe(false);
    const audit = roles.get(fnId('AuditStreamFunction'))!;
    const paymentsQueue = local.queues[Object.keys(local.queues).find((k) => k.startsWith('PaymentsQueue'))!]!.arn;
    expect(evaluate(audit.statements, 'sqs:SendMessage', paymentsQueue).allowed).toBe(false);
  });
});
