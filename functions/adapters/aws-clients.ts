import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';

/**
 * AWS clients, created once per function instance. Endpoints come from the standard
 * AWS_ENDPOINT_URL_* variables, so the same code talks to AWS, LocalStack or the local emulators.
 */
let doc: DynamoDBDocumentClient | undefined;
let sqs: SQSClient | undefined;

export function documentClient(): DynamoDBDocumentClient {
  doc ??= DynamoDBDocumentClient.from(new DynamoDBClient({ maxAttempts: 3 }), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
  return doc;
}

export function sqsClient(): SQSClient {
  // Emulator queue URLs may carry a host that does not resolve; always use the configured endpoint.
  sqs ??= new SQSClient({ maxAttempts: 3, useQueueUrlAsEndpoint: false });
  return sqs;
}
