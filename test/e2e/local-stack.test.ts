/**
 * `npm start` end to end: the CLI (bin/local-stack.ts, --no-synth on the existing cdk.out) serves the
 * API with API keys, and SIGINT / SIGTERM stop it with exit code 0, leaving no child process behind.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/project-root';

const children: ChildProcess[] = [];

function descendants(pid: number): number[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when there are none
  }
  const direct = out.split('\n').map((s) => Number(s.trim())).filter((n) => n > 0);
  return direct.flatMap((p) => [p, ...descendants(p)]);
}

function processInfo(pid: number): string {
  try {
    return `${pid} ${execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).trim()}`;
  } catch {
    return String(pid);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts the CLI and resolves once it prints the API URL. */
function startCli(): Promise<{ child: ChildProcess; apiUrl: string; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/local-stack.ts', '--no-synth', '--port', '0', '--in-memory'], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOCAL_API_KEYS: 'e2e-key:tenant-e2e' },
  });
  children.push(child);
  let text = '';
  child.stdout!.on('data', (b) => (text += b));
  child.stderr!.on('data', (b) => (text += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`CLI did not start:\n${text}`)), 60_000);
    const check = () => {
      const m = /API:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve({ child, apiUrl: m[1]!, output: () => text });
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`CLI exited with ${code}:\n${text}`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

afterAll(() => {
  for (const c of children) {
    if (c.pid && c.exitCode === null && c.signalCode === null) {
      for (const d of descendants(c.pid)) if (alive(d)) process.kill(d, 'SIGKILL');
      process.kill(c.pid, 'SIGKILL');
    }
  }
});

describe('npm start (bin/local-stack.ts)', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`serves the API and stops cleanly on ${signal}`, async () => {
      const { child, apiUrl, output } = await startCli();
      expect(output()).toContain('e2e-key (tenant-e2e)');

      const anonymous = await fetch(`${apiUrl}/api/payments/process`, { method: 'POST', body: '{}' });
      expect(anonymous.status).toBe(403);
      const keyed = await fetch(`${apiUrl}/api/payments/process`, { method: 'POST', headers: { 'x-api-key': 'e2e-key', 'content-type': 'application/json' }, body: '{}' });
      expect([403, 404, 502, 504]).not.toContain(keyed.status);

      const before = descendants(child.pid!);
      expect(before.length).toBeGreaterThan(0); // DynamoDB Local at least
      process.kill(child.pid!, signal);
      expect(await exited(child)).toBe(0);
      // Helpers such as tsx's esbuild service notice the exit through a closed pipe: give them a moment.
      const deadline = Date.now() + 5000;
      while (before.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(before.filter(alive).map(processInfo)).toEqual([]);
      expect(output()).toContain('stopped');
    });
  }
});
