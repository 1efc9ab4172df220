/**
 * The delivery pipeline (.github/workflows): valid GitHub Actions workflows by the schema validator
 * (@action-validator/core: the workflow JSON schema, plus jobs named in `needs` exist), and the gates a
 * platform team relies on: every change runs the tests (synth and cdk-nag included) and `cdk diff`; only
 * main deploys; staging before prod; prod behind the "prod" environment's approval; AWS access by OIDC
 * role, never by stored keys.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { validateWorkflow } from '@action-validator/core';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { projectRoot } from '../helpers/project-root';

const dir = path.join(projectRoot, '.github', 'workflows');
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));

interface Job {
  needs?: string | string[];
  if?: string;
  environment?: string | { name: string };
  permissions?: Record<string, string>;
  steps: Array<{ uses?: string; run?: string; with?: Record<string, unknown> }>;
}

describe.each(files)('workflow %s', (file) => {
  const text = readFileSync(path.join(dir, file), 'utf8');

  it('is a valid workflow (schema and job graph)', () => {
    expect(validateWorkflow(text).errors).toEqual([]);
  });

  it('stores no AWS keys: deploy jobs assume a role by OIDC', () => {
    expect(text).not.toMatch(/AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|aws-access-key-id/);
  });
});

describe('the pipeline', () => {
  const wf = parse(readFileSync(path.join(dir, 'pipeline.yml'), 'utf8')) as { on: Record<string, unknown>; jobs: Record<string, Job> };
  const jobs = wf.jobs;
  const runs = (job: Job) => job.steps.map((s) => s.run ?? '').join('\n');
  const needs = (job: Job) => [job.needs ?? []].flat();
  const environment = (job: Job) => (typeof job.environment === 'string' ? job.environment : job.environment?.name);

  it('runs on every change (pull requests and pushes to main)', () => {
    expect(Object.keys(wf.on)).toEqual(expect.arrayContaining(['pull_request', 'push']));
  });

  it('tests every change with the suite, which synthesizes every stage and runs cdk-nag', () => {
    expect(runs(jobs.test!)).toMatch(/^npm ci\b/m);
    expect(runs(jobs.test!)).toMatch(/^npm test$/m);
    expect(jobs.test!.if).toBeUndefined();
  });

  it('diffs staging and prod against what is deployed', () => {
    expect(runs(jobs.diff!)).toMatch(/npx cdk diff -c "stage=\$STAGE"/);
    expect((jobs.diff as unknown as { strategy: { matrix: { stage: string[] } } }).strategy.matrix.stage).toEqual(['staging', 'prod']);
  });

  it('deploys only main, staging first, prod after staging and behind the prod environment approval', () => {
    const staging = jobs['deploy-staging']!;
    const prod = jobs['deploy-prod']!;
    expect(needs(staging).sort()).toEqual(['diff', 'test']);
    expect(staging.if).toContain("github.ref == 'refs/heads/main'");
    expect(staging.if).toContain("github.event_name == 'push'");
    expect(runs(staging)).toMatch(/npx cdk deploy -c stage=staging /);
    expect(needs(prod)).toEqual(['deploy-staging']);
    expect(environment(prod)).toBe('prod');
    expect(environment(staging)).toBe('staging');
    expect(runs(prod)).toMatch(/npx cdk deploy -c stage=prod /);
    // Staging and prod refuse to synthesize without an alarm recipient: the pipeline passes one.
    for (const job of [staging, prod, jobs.diff!]) expect(runs(job)).toContain('-c "$ALARM_CONTEXT"');
    for (const job of [staging, prod, jobs.diff!]) expect(job.permissions?.['id-token']).toBe('write');
  });
});
