/**
 * Verifies audit hash chains in the AuditLog table.
 *
 *   npx tsx scripts/verify-audit.ts --payment <paymentId>
 *   npx tsx scripts/verify-audit.ts --tenant <tenantId> [--from <ISO 8601>] [--to <ISO 8601>]
 *
 * With --tenant, every payment that has an entry in the range is verified over its whole chain.
 * A payment's entries are keyed by the update times the payment keeps, so the payment is read too.
 * Environment: AUDIT_TABLE and PAYMENTS_TABLE (required), AWS_ENDPOINT_URL_DYNAMODB (optional, e.g.
 * DynamoDB Local), AWS_REGION (default us-east-1).
 * Prints a JSON report; exits 0 when every chain verifies, 1 when one is broken, 2 on bad usage.
 */
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { AuditRepository, MAX_PAGE_SIZE, verifyPaymentAudit } from '../functions/adapters/dynamo/audit-repository';
import { parseIsoInstant, type ChainVerification, type PaymentAuditRef } from '../functions/core/audit';

const USAGE = 'usage: verify-audit --payment <id> | --tenant <tenantId> [--from <ISO>] [--to <ISO>]';

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  let values: { payment?: string; tenant?: string; from?: string; to?: string };
  try {
    ({ values } = parseArgs({
      options: { payment: { type: 'string' }, tenant: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if ((values.payment === undefined) === (values.tenant === undefined)) fail('give exactly one of --payment and --tenant');
  if (values.payment !== undefined && (values.from !== undefined || values.to !== undefined)) fail('--from/--to go with --tenant');
  const from = values.from === undefined ? undefined : (parseIsoInstant(values.from) ?? fail(`--from is not ISO 8601: ${values.from}`));
  const to = values.to === undefined ? undefined : (parseIsoInstant(values.to) ?? fail(`--to is not ISO 8601: ${values.to}`));
  if (from !== undefined && to !== undefined && from > to) fail('--from is after --to');

  const table = process.env.AUDIT_TABLE;
  if (!table) fail('AUDIT_TABLE is not set');
  const paymentsTable = process.env.PAYMENTS_TABLE;
  if (!paymentsTable) fail('PAYMENTS_TABLE is not set');
  const endpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB || undefined;
  const client = new DynamoDBClient({ region: process.env.AWS_REGION || 'us-east-1', ...(endpoint ? { endpoint } : {}) });
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  const repo = new AuditRepository(doc, { audit: table });
  /** The payment whose chain is checked; a payment the table does not hold has nothing to verify. */
  const paymentOf = async (id: string): Promise<PaymentAuditRef> => {
    const { Item } = await doc.send(new GetCommand({ TableName: paymentsTable, Key: { id }, ConsistentRead: true }));
    if (!Item) throw new Error(`payment ${id} is not in ${paymentsTable}`);
    return Item as PaymentAuditRef;
  };

  try {
    if (values.payment !== undefined) {
      const result = await verifyPaymentAudit(repo, await paymentOf(values.payment));
      process.stdout.write(`${JSON.stringify({ paymentId: values.payment, ...result }, null, 2)}\n`);
      return result.ok ? 0 : 1;
    }

    const tenantId = values.tenant!;
    const paymentIds = new Set<string>();
    let entriesInRange = 0;
    let cursor: string | undefined;
    do {
      const page = await repo.listForTenant(tenantId, { from, to, limit: MAX_PAGE_SIZE, cursor, order: 'asc' });
      entriesInRange += page.entries.length;
      for (const e of page.entries) paymentIds.add(e.paymentId);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);

    const failures: Array<ChainVerification & { ok: false }> = [];
    let verifiedEntries = 0;
    for (const id of paymentIds) {
      const result = await verifyPaymentAudit(repo, await paymentOf(id));
      if (result.ok) verifiedEntries += result.count;
      else failures.push(result);
    }
    const report = {
      tenantId,
      from: from ?? null,
      to: to ?? null,
      ok: failures.length === 0,
      payments: paymentIds.size,
      entriesInRange,
      verifiedEntries,
      failures,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return report.ok ? 0 : 1;
  } finally {
    client.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`verify-audit failed: ${(err as Error).message ?? String(err)}\n`);
    process.exit(2);
  },
);
