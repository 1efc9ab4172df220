/**
 * The template's AWS::Lambda::EventSourceMapping resources, classified by what they read: an SQS queue
 * or a DynamoDB table's stream.
 */
import { resourcesOfType, type CfnTemplate } from './template';
import { functionIdOf, referencedAttribute, referencedId } from './util';

export interface EventSourceMappingDef {
  readonly logicalId: string;
  readonly functionId: string;
  readonly kind: 'sqs' | 'dynamodb-stream';
  /** Logical id of the queue or the table. */
  readonly sourceId: string;
  readonly enabled: boolean;
  readonly batchSize: number;
  readonly maxBatchingWindowSeconds: number;
  readonly reportBatchItemFailures: boolean;
  /** The raw properties, for source-specific settings. */
  readonly props: Record<string, any>;
}

/** A mapping that is skipped, or a setting of one that is not emulated. */
export interface MappingWarning {
  readonly logicalId: string;
  readonly reason: string;
}

export function eventSourceMappings(template: CfnTemplate): { mappings: EventSourceMappingDef[]; warnings: MappingWarning[] } {
  const mappings: EventSourceMappingDef[] = [];
  const warnings: MappingWarning[] = [];
  for (const [logicalId, r] of resourcesOfType(template, 'AWS::Lambda::EventSourceMapping')) {
    const p = r.Properties ?? {};
    const functionId = functionIdOf(template, p.FunctionName);
    const sourceId = referencedId(p.EventSourceArn);
    const sourceType = sourceId ? template.Resources[sourceId]?.Type : undefined;
    if (!functionId) {
      warnings.push({ logicalId, reason: `skipped: its FunctionName ${JSON.stringify(p.FunctionName)} is not a function of this stack` });
      continue;
    }
    let kind: EventSourceMappingDef['kind'];
    if (sourceType === 'AWS::SQS::Queue') kind = 'sqs';
    else if (sourceType === 'AWS::DynamoDB::Table' && referencedAttribute(p.EventSourceArn) === 'StreamArn') kind = 'dynamodb-stream';
    else {
      warnings.push({ logicalId, reason: `skipped: its source ${JSON.stringify(p.EventSourceArn)} is not a queue or table stream of this stack` });
      continue;
    }
    if (p.FilterCriteria) warnings.push({ logicalId, reason: 'FilterCriteria is ignored locally: every record is delivered' });
    mappings.push({
      logicalId,
      functionId,
      kind,
      sourceId: sourceId!,
      enabled: p.Enabled !== false && p.Enabled !== 'false',
      batchSize: Number(p.BatchSize ?? (kind === 'sqs' ? 10 : 100)),
      maxBatchingWindowSeconds: Number(p.MaximumBatchingWindowInSeconds ?? 0),
      reportBatchItemFailures: Array.isArray(p.FunctionResponseTypes) && p.FunctionResponseTypes.includes('ReportBatchItemFailures'),
      props: p,
    });
  }
  return { mappings, warnings };
}

/**
 * Reads a partial batch response. Returns the failed item identifiers, or 'all' when the response
 * makes the whole batch fail (an identifier that is missing, empty or not in the batch), as Lambda
 * does. A response without batchItemFailures is a complete success.
 */
export function batchItemFailures(payload: string, identifiers: readonly string[]): Set<string> | 'all' {
  let response: unknown;
  try {
    response = JSON.parse(payload);
  } catch {
    return 'all';
  }
  if (!response || typeof response !== 'object') return new Set();
  const list = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (list === undefined || list === null) return new Set();
  if (!Array.isArray(list)) return 'all';
  const known = new Set(identifiers);
  const failed = new Set<string>();
  for (const item of list) {
    const id = item && typeof item === 'object' ? (item as { itemIdentifier?: unknown }).itemIdentifier : undefined;
    if (typeof id !== 'string' || !id || !known.has(id)) return 'all';
    failed.add(id);
  }
  return failed;
}
