/**
 * `npm start` without a usable Java says what to install, instead of `spawn java ENOENT`.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkJava, JavaRequirementError } from '../src/emulators';

const dir = mkdtempSync(path.join(tmpdir(), 'java-preflight-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in `java` that prints what `java -version` prints for `version`. */
function fakeJava(version: string): string {
  const file = path.join(dir, `java-${version}`);
  writeFileSync(file, `#!/bin/sh\necho 'openjdk version "${version}" 2024-01-01' >&2\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('Java preflight', () => {
  it('names the missing Java and what to install', () => {
    expect(() => checkJava(path.join(dir, 'no-such-java'))).toThrow(JavaRequirementError);
    expect(() => checkJava(path.join(dir, 'no-such-java'))).toThrow(/Java not found\. DynamoDB Local needs Java 17 or newer/);
  });

  it('rejects Java 8 and 11, accepts 17 and 21', () => {
    expect(() => checkJava(fakeJava('1.8.0_392'))).toThrow(/Found Java 8\./);
    expect(() => checkJava(fakeJava('11.0.21'))).toThrow(/Found Java 11\./);
    expect(checkJava(fakeJava('17.0.15'))).toBe(17);
    expect(checkJava(fakeJava('21.0.2'))).toBe(21);
  });

  it('npm start exits 1 with one error line when java is not on PATH', () => {
    const root = path.resolve(__dirname, '..', '..', '..');
    // A PATH with no java on it (node is started by its absolute path).
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: dir };
    delete env.AWS_ENDPOINT_URL_DYNAMODB;
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bin/local-stack.ts', '--no-synth', '--in-memory'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^Error: Java not found\. DynamoDB Local needs Java 17/);
  });
});
