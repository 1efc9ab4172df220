import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { tracer } from '../shared/tracer';

/**
 * AWS clients, created once per function instance. Endpoints come from the standard
 * AWS_ENDPOINT_URL_* variables, so the same code talks to AWS, LocalStack or the local emulators.
 * Each client is captured by the tracer: every AWS call is an X-Ray subsegment (a no-op when tracing is off).
 */
let doc: DynamoDBDocumentClient | undefined;
let sqs: SQSClient | undefined;
let lambda: LambdaClient | undefined;

export function documentClient(): DynamoDBDocumentClient {
  doc ??= DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({ maxAttempts: 3 })), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
  return doc;
}

export function sqsClient(): SQSClient {
  // Emulator queue URLs may carry a host that does not resolve; always use the configured endpoint.
  sqs ??= tracer.captureAWSv3Client(new SQSClient({ maxAttempts: 3, useQueueUrlAsEndpoint: false }));
  return sqs;
}

export function lambdaClient(): LambdaClient {
  lambda ??= tracer.captureAWSv3Client(new LambdaClient({}));
  return lambda;
}
