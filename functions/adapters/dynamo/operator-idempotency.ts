/**
 * Idempotent operator actions with Powertools idempotency over DynamoDB: the first request with a
 * given Idempotency-Key runs and its response is stored; a repeat gets the stored response and does
 * nothing; a repeat while the first still runs is told so (409, retryable). The record is keyed by
 * (actor, route, target, key), so one operator's key never answers another's request, and it holds
 * a hash of the request body, so the same key with another body is a mismatch, not a replay.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import type { Context } from 'aws-lambda';
import { AppError } from '../../core/errors';

export interface OperatorRequestKey {
  readonly actor: string;
  readonly route: string;
  /** What the action targets, e.g. the payment id; '' when none. */
  readonly target: string;
  readonly idempotencyKey: string;
  /** The request body as sent, compared on a repeat. */
  readonly body: string;
}

export type IdempotentRunner = <T>(key: OperatorRequestKey, run: () => Promise<T>, context?: Context) => Promise<T>;

/** How long a key answers with its stored response. */
export const OPERATOR_IDEMPOTENCY_SECONDS = 24 * 3600;

export function operatorIdempotency(client: DynamoDBClient, tableName: string): IdempotentRunner {
  const persistenceStore = new DynamoDBPersistenceLayer({ tableName, awsSdkV3Client: client });
  const config = new IdempotencyConfig({
    eventKeyJmesPath: '[actor, route, target, idempotencyKey]',
    payloadValidationJmesPath: 'body',
    expiresAfterSeconds: OPERATOR_IDEMPOTENCY_SECONDS,
    throwOnNoIdempotencyKey: true,
  });
  // The second argument (the action itself) is not hashed: dataIndexArgument picks the first. The
  // result is stored as JSON data: undefined fields are dropped first (the store cannot marshal them).
  const idempotent = makeIdempotent(async (_key: OperatorRequestKey, run: () => Promise<unknown>) => JSON.parse(JSON.stringify(await run())) as unknown, {
    persistenceStore,
    config,
    keyPrefix: 'operator',
    dataIndexArgument: 0,
  });
  return async <T>(key: OperatorRequestKey, run: () => Promise<T>, context?: Context): Promise<T> => {
    // With the Lambda context, an in-progress record expires with the invocation (a crash frees the key).
    if (context && typeof context.getRemainingTimeInMillis === 'function') config.registerLambdaContext(context);
    try {
      return (await idempotent(key, run)) as T;
    } catch (err) {
      throw toAppError(err);
    }
  };
}

function toAppError(err: unknown): unknown {
  if (err instanceof AppError || !(err instanceof Error)) return err;
  switch (err.name) {
    case 'IdempotencyAlreadyInProgressError':
      return new AppError('IDEMPOTENCY_IN_PROGRESS', 'A request with this Idempotency-Key is still running; retry later for its result', 409, true);
    case 'IdempotencyValidationError':
      return new AppError('IDEMPOTENCY_KEY_MISMATCH', 'This Idempotency-Key was already used with a different request', 422);
    default:
      return err.name.startsWith('Idempotency') ? new AppError('SERVICE_UNAVAILABLE', 'The request could not be recorded; retry with the same Idempotency-Key', 503, true) : err;
  }
}
