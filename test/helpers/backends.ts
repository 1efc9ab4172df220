/**
 * Emulator-backed test fixture: DynamoDB Local + fauxqs started on free loopback ports, tables and
 * queues created from the synthesized template. With AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SQS
 * set (e.g. LocalStack), those endpoints are used instead and nothing is started.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { createLocalResources, functionEnvironment, loadSynthesizedStack, type LocalResources, type RunningEmulator, startDynamoDbLocal, startSqsEmulator } from '@idempotent-payments/local-stack';

export interface Backends {
  readonly dynamodb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
  readonly sqs: SQSClient;
  readonly endpoints: { dynamodb: string; sqs: string };
  readonly resources: LocalResources;
  /** Environment of a function from the template (logical id prefix), resolved to these backends. */
  envOf(functionPrefix: string): Record<string, string>;
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
    return {
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
