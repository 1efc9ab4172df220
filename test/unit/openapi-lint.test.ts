/**
 * docs/openapi.yaml passes both common OpenAPI linters with nothing to report: Spectral's `spectral:oas`
 * ruleset (.spectral.yaml) and Redocly's recommended rules (redocly.yaml). `npm run lint:openapi` runs
 * the same two commands with their human-readable output.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/project-root';

const run = promisify(execFile);
const bin = (name: string) => path.join(projectRoot, 'node_modules', '.bin', name);
const DOC = 'docs/openapi.yaml';

describe('docs/openapi.yaml lints clean', () => {
  it('Spectral (spectral:oas): no errors, no warnings', async () => {
    // Exit code 0 with --fail-severity warn; JSON lists every finding.
    const { stdout } = await run(bin('spectral'), ['lint', DOC, '--format', 'json', '--fail-severity', 'warn', '--quiet'], { cwd: projectRoot }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
    const findings = JSON.parse(stdout) as Array<{ code: string; message: string; path: string[]; severity: number }>;
    expect(findings.map((f) => `${f.code} at ${f.path.join('.')}: ${f.message}`)).toEqual([]);
  });

  it('Redocly (recommended): no errors, no warnings', async () => {
    const { stdout } = await run(bin('redocly'), ['lint', DOC, '--format', 'json'], { cwd: projectRoot }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
    const report = JSON.parse(stdout) as { totals: { errors: number; warnings: number }; problems: Array<{ ruleId: string; message: string }> };
    expect(report.problems.map((p) => `${p.ruleId}: ${p.message}`)).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});
