/**
 * `npm run soak`: the money promise under every provider fault at once (see soak-harness.ts), other
 * integrations capturing on the same provider account, a provider key retention (60 s) the run crosses, tenant
 * cancels (5% of payments) and tenant refunds (20% of successes: full and replayed, in parts, concurrent).
 *
 *   npm run soak -- [--payments 10000] [--concurrency 16] [--drain-seconds 900] [--seed 42] [--json]
 *
 * Prints progress lines while it runs, then the report; `--json` prints the report as one JSON object.
 * Exits 1 when any money invariant is broken or a payment is still open after the drain window.
 */
import { cliOrExit } from './cli-args';
import { runSoak, SOAK_FAULTS, violations, type SoakOptions } from './soak-harness';

const args = cliOrExit('soak', {
  payments: { type: 'number', default: 10000, min: 1, integer: true, doc: 'payments to send' },
  concurrency: { type: 'number', default: 16, min: 1, max: 500, integer: true, doc: 'requests in flight' },
  'drain-seconds': { type: 'number', default: 900, min: 1, integer: true, doc: 'how long open payments may take to settle after the last request' },
  seed: { type: 'number', default: 42, min: 1, integer: true, doc: 'seed of the fault and chaos schedule' },
});

// Ctrl-C ends the run early but still stops the local stack and the simulator it started.
const abort = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => abort.abort());

const options: SoakOptions = {
  signal: abort.signal,
  payments: args.payments,
  concurrency: args.concurrency,
  drainTimeoutMs: args['drain-seconds'] * 1000,
  seed: args.seed,
  faults: SOAK_FAULTS,
  replayShare: 0.2,
  duplicateShare: 0.1,
  crashShare: 0.02,
  operatorRetryEveryMs: 500,
  recoveryEveryMs: 5000,
  foreignEveryMs: 300,
  cancelShare: 0.05,
  refundShare: 0.2,
  progress: (line) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}`),
};

const report = await runSoak(options);
const v = violations(report);
if (args.json) {
  console.log(JSON.stringify({ ...report, violations: v }));
} else {
  console.log(`payments ${report.accepted} accepted of ${report.payments} (${report.rejected} rejected); final: ${JSON.stringify(report.byStatus)}`);
  console.log(`chaos: ${report.replays} replays (${report.replayMismatches} mismatched), ${report.duplicatesInjected} duplicate deliveries, ${report.operatorRetries} operator retries, ${report.recoveryRuns} recovery runs`);
  console.log(`provider: ${report.captures} captures, ${report.refunds} refunds, ${report.attempts} attempts`);
  console.log(
    `other integrations: ${report.foreignCaptures} foreign captures, ${report.foreignRefunded} refunded; ${report.orphans} orphan captures of ours: ` +
      `${report.orphansRefunded} refunded, ${report.orphansReportedFailed} refund failed at the provider (reported), ${report.orphansUnsettled} neither; ${report.refundsPending} refunds still pending`,
  );
  const c = report.cancels;
  const t = report.tenantRefunds;
  console.log(`cancels: ${c.asked} asked, ${c.canceled} canceled, ${c.refused} refused (409), ${c.replays} replayed (${c.replayMismatches} mismatched)`);
  console.log(
    `tenant refunds on ${t.payments} payments: ${t.asked} asked, ${t.accepted} accepted, ${t.exceeding} refused as exceeding the capture, ${t.otherAnswers} other answers, ` +
      `${t.replays} replayed (${t.replayMismatches} mismatched); ended ${t.succeeded} succeeded, ${t.failed} failed, ${t.pending} pending`,
  );
  console.log(
    `refund money: over-refunded ${v.overRefunded}, ledger net not capture minus succeeded refunds ${v.refundLedgerMismatch}, amountRefunded not the succeeded sum ${v.refundedFieldMismatch}`,
  );
  console.log(
    `money: more than one charge ${v.moreThanOneCharge}, success without capture ${v.successWithoutCapture}, failed/expired with capture ${v.notPaidWithCapture}, ` +
      `foreign refunded ${v.foreignRefunded}, orphans unsettled ${v.orphansUnsettled}, not final ${v.notFinal}, lost ${v.lost}`,
  );
  console.log(`liveness: sent in ${report.sendSeconds.toFixed(1)} s, drained in ${report.drainSeconds.toFixed(1)} s, longest open ${report.longestOpenSeconds.toFixed(1)} s, longest stall ${report.longestStallSeconds.toFixed(1)} s`);
}
if (Object.values(v).some((n) => n !== 0)) process.exitCode = 1;
