import { BatchGetCommand, type BatchGetCommandOutput, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/** BatchGetItem takes at most this many keys per request. */
export const BATCH_GET_MAX_KEYS = 100;
/** Requests per chunk before keys DynamoDB keeps leaving unprocessed are an error (about 5 s of pauses). */
export const BATCH_GET_MAX_ROUNDS = 8;

/**
 * Items of one table by key, in requests of up to 100 keys; keys DynamoDB leaves unprocessed (throttling,
 * the 16 MB response limit) are asked again, with a growing pause, for up to BATCH_GET_MAX_ROUNDS requests;
 * keys still left then make it throw rather than answer without them. Missing keys are absent from the
 * result. `projection` names the attributes to return (the read still costs by item size).
 */
export async function batchGetByKeys(
  doc: Pick<DynamoDBDocumentClient, 'send'>,
  table: string,
  keys: ReadonlyArray<Record<string, unknown>>,
  opts: { readonly consistent: boolean; readonly projection?: readonly string[] },
): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  const projection = opts.projection
    ? { ProjectionExpression: opts.projection.map((_, i) => `#p${i}`).join(', '), ExpressionAttributeNames: Object.fromEntries(opts.projection.map((a, i) => [`#p${i}`, a])) }
    : {};
  for (let i = 0; i < keys.length; i += BATCH_GET_MAX_KEYS) {
    let pending: Array<Record<string, unknown>> | undefined = keys.slice(i, i + BATCH_GET_MAX_KEYS);
    for (let round = 0; pending && pending.length > 0; round++) {
      if (round >= BATCH_GET_MAX_ROUNDS) throw new Error(`BatchGetItem on ${table} left ${pending.length} keys unprocessed after ${BATCH_GET_MAX_ROUNDS} requests`);
      const res: BatchGetCommandOutput = await doc.send(new BatchGetCommand({ RequestItems: { [table]: { Keys: pending, ConsistentRead: opts.consistent, ...projection } } }));
      out.push(...(res.Responses?.[table] ?? []));
      pending = res.UnprocessedKeys?.[table]?.Keys;
      if (pending?.length) await new Promise((r) => setTimeout(r, Math.min(1000, 20 * 2 ** round)));
    }
  }
  return out;
}

/** Items of a table keyed by `id` alone (batchGetByKeys). */
export const batchGetByIds = (
  doc: Pick<DynamoDBDocumentClient, 'send'>,
  table: string,
  ids: readonly string[],
  opts: { readonly consistent: boolean; readonly projection?: readonly string[] },
): Promise<Array<Record<string, unknown>>> =>
  batchGetByKeys(
    doc,
    table,
    ids.map((id) => ({ id })),
    opts,
  );
