/**
 * Stream records: read from the DynamoDB Streams API as sent on the wire, and turned into the records
 * of Lambda's DynamoDB stream event.
 */
import { GetRecordsCommand, type DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { LOCAL_REGION } from './local-account';

/**
 * A stream record as the DynamoDB Streams API sends it (JSON wire format). Lambda's event records are
 * the same JSON, so the records are taken from the response body rather than from the SDK's
 * deserialized output, which loses empty maps ({"M":{}} comes back as {}) and turns binary values
 * and dates into objects.
 */
export interface WireStreamRecord {
  eventID?: string;
  eventName?: string;
  eventVersion?: string;
  userIdentity?: unknown;
  dynamodb?: {
    ApproximateCreationDateTime?: number;
    Keys?: Record<string, unknown>;
    NewImage?: Record<string, unknown>;
    OldImage?: Record<string, unknown>;
    SequenceNumber?: string;
    SizeBytes?: number;
    StreamViewType?: string;
  };
}

/**
 * DynamoDB Local writes an empty map attribute into stream images as `{}` instead of `{"M":{}}`. An
 * attribute value with no type can only be that (an empty list is `{"L":[]}`, sets cannot be empty),
 * so it is repaired here, at any depth, as DynamoDB Streams would have sent it.
 */
function repairAttribute(v: unknown): unknown {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return v;
  const a = v as Record<string, unknown>;
  const keys = Object.keys(a);
  if (keys.length === 0) return { M: {} };
  if (a.M && typeof a.M === 'object') return { ...a, M: repairImage(a.M as Record<string, unknown>) };
  if (Array.isArray(a.L)) return { ...a, L: a.L.map(repairAttribute) };
  return v;
}

function repairImage(image: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!image) return image;
  return Object.fromEntries(Object.entries(image).map(([k, v]) => [k, repairAttribute(v)]));
}

/** Lambda's DynamoDB stream record for a record read from the stream. */
export function streamRecord(r: WireStreamRecord, streamArn: string): DynamoDBRecord {
  const d = r.dynamodb ?? {};
  return {
    eventID: r.eventID,
    eventName: r.eventName as DynamoDBRecord['eventName'],
    eventVersion: r.eventVersion ?? '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: LOCAL_REGION,
    dynamodb: {
      ...(d.ApproximateCreationDateTime !== undefined ? { ApproximateCreationDateTime: Math.floor(Number(d.ApproximateCreationDateTime)) } : {}),
      Keys: d.Keys as any,
      ...(d.NewImage ? { NewImage: repairImage(d.NewImage) as any } : {}),
      ...(d.OldImage ? { OldImage: repairImage(d.OldImage) as any } : {}),
      SequenceNumber: d.SequenceNumber,
      SizeBytes: d.SizeBytes,
      StreamViewType: d.StreamViewType as any,
    },
    eventSourceARN: streamArn,
    ...(r.userIdentity ? { userIdentity: r.userIdentity } : {}),
  };
}

export function streamEvent(records: readonly WireStreamRecord[], streamArn: string): DynamoDBStreamEvent {
  return { Records: records.map((r) => streamRecord(r, streamArn)) };
}

async function collectBody(body: unknown): Promise<Uint8Array> {
  if (body instanceof Uint8Array) return body;
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Uint8Array | string>) chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c));
  return Buffer.concat(chunks);
}

/** GetRecords through the SDK (signing, errors, retries), with the records taken from the raw body. */
export async function getRecordsRaw(
  client: DynamoDBStreamsClient,
  shardIterator: string,
  limit: number,
  abortSignal?: AbortSignal,
): Promise<{ records: WireStreamRecord[]; nextShardIterator?: string }> {
  let raw: { Records?: WireStreamRecord[] } | undefined;
  const command = new GetRecordsCommand({ ShardIterator: shardIterator, Limit: limit });
  command.middlewareStack.addRelativeTo(
    (next: any) => async (args: any) => {
      const result = await next(args);
      const response = result.response as { statusCode?: number; body?: unknown };
      if (response?.statusCode && response.statusCode < 300 && response.body) {
        const bytes = await collectBody(response.body);
        response.body = bytes; // the SDK's deserializer reads it next
        raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
      }
      return result;
    },
    { relation: 'after', toMiddleware: 'deserializerMiddleware', name: 'localRawStreamRecords' },
  );
  const out = await client.send(command, { abortSignal });
  return { records: raw?.Records ?? [], nextShardIterator: out.NextShardIterator };
}
