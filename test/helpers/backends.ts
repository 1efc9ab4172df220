/**
 * Emulator-backed test fixture: DynamoDB Local + fauxqs started on free loopback ports, tables and
 * queues created from the synthesized template. With AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SQS
 * set (e.g. LocalStack), those endpoints are used instead and nothing is started.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import {
  createLocalResources,
  functionEnvironment,
  loadSynthesizedStack,
  startDynamoDbLocal,
  startIamProxies,
  startSqsEmulator,
  type LocalIam,
  type LocalResources,
  type RunningEmulator,
} from '@idempotent-payments/local-stack';

export interface Backends {
  readonly dynamodb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
  readonly sqs: SQSClient;
  readonly endpoints: { dynamodb: string; sqs: string };
  readonly resources: LocalResources;
  /** Environment of a function from the template (logical id prefix), resolved to these backends. */
  envOf(functionPrefix: string): Record<string, string>;
  /**
   * Clients that act as the function (logical id prefix): its own credentials, through the local stack's
   * IAM proxy, so a call its role does not allow fails with AccessDeniedException as in AWS.
   */
  as(functionPrefix: string): { dynamodb: DynamoDBClient; doc: DynamoDBDocumentClient; sqs: SQSClient };
  /** The IAM proxies and the denials so far. */
  readonly iam: LocalIam;
  stop(): Promise<void>;
}

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

export async function startBackends(): Promise<Backends> {
  const started: RunningEmulator[] = [];
  try {
    const ddbEndpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB ?? process.env.AWS_ENDPOINT_URL;
    const sqsEndpoint = process.env.AWS_ENDPOINT_URL_SQS ?? process.env.AWS_ENDPOINT_URL;
    const [ddb, sqsEmu] = await Promise.all([
      ddbEndpoint ? undefined : startDynamoDbLocal(),
      sqsEndpoint ? undefined : startSqsEmulator(),
    ]);
    if (ddb) started.push(ddb);
    if (sqsEmu) started.push(sqsEmu);
    const endpoints = { dynamodb: ddbEndpoint ?? ddb!.endpoint, sqs: sqsEndpoint ?? sqsEmu!.endpoint };
    const region = process.env.AWS_REGION ?? 'us-east-1';
    const dynamodb = new DynamoDBClient({ endpoint: endpoints.dynamodb, region, credentials });
    const sqs = new SQSClient({ endpoint: endpoints.sqs, region, credentials, useQueueUrlAsEndpoint: false });
    const doc = DynamoDBDocumentClient.from(dynamodb, { marshallOptions: { removeUndefinedValues: true } });
    const { template } = loadSynthesizedStack();
    const resources = await createLocalResources(template, { dynamodb, sqs });
    const functionIds = Object.keys(template.Resources).filter((k) => template.Resources[k]!.Type === 'AWS::Lambda::Function');
    const iam = await startIamProxies({
      template,
      resources,
      upstreams: endpoints,
      functionArn: (name) => functionIds.find((id) => name === id || name.endsWith(`:${id}`)),
      log: () => {},
    });
    const made: Array<{ destroy(): void }> = [];
    return {
      iam,
      as(prefix) {
        const creds = iam.credentialsOf(prefix);
        const fnDynamodb = new DynamoDBClient({ endpoint: iam.endpoints.dynamodb, region, credentials: creds });
        const fnSqs = new SQSClient({ endpoint: iam.endpoints.sqs, region, credentials: creds, useQueueUrlAsEndpoint: false });
        made.push(fnDynamodb, fnSqs);
        return { dynamodb: fnDynamodb, doc: DynamoDBDocumentClient.from(fnDynamodb, { marshallOptions: { removeUndefinedValues: true } }), sqs: fnSqs };
      },
      dynamodb,
      doc,
      sqs,
      endpoints,
      resources,
      envOf(prefix) {
        const id = Object.keys(template.Resources).find(
          (k) => k.startsWith(prefix) && template.Resources[k]!.Type === 'AWS::Lambda::Function',
        );
        if (!id) throw new Error(`No function ${prefix} in the template`);
        return functionEnvironment(template, id, resources);
      },
      async stop() {
        for (const c of made) c.destroy();
        await iam.stop();
        dynamodb.destroy();
        sqs.destroy();
        await Promise.all(started.map((e) => e.stop()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((e) => e.stop()));
    throw err;
  }
}
