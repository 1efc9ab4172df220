import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CliError, parseCli } from '../../scripts/cli-args';
import { projectRoot } from '../helpers/project-root';

const spec = {
  n: { type: 'number', default: 1000, min: 1, integer: true, doc: 'payments' },
  rate: { type: 'number', default: 0.1, min: 0, max: 1, doc: 'share' },
  dir: { type: 'string', doc: 'a directory' },
  child: { type: 'boolean', doc: 'internal' },
} as const;

describe('script command lines', () => {
  it('takes defaults, values and --json', () => {
    expect(parseCli(spec, [])).toEqual({ n: 1000, rate: 0.1, dir: undefined, child: false, json: false, help: false });
    expect(parseCli(spec, ['--n', '5', '--rate=0.5', '--dir', 'x', '--child', '--json'])).toEqual({ n: 5, rate: 0.5, dir: 'x', child: true, json: true, help: false });
  });

  it.each([
    [['--n', 'abc'], /--n must be a number, got "abc"/],
    [['--n', ''], /--n must be a number/],
    [['--n', '2.5'], /--n must be a whole number/],
    [['--n', '0'], /--n must be at least 1/],
    [['--rate', '1.5'], /--rate must be at most 1/],
    [['--rate', 'NaN'], /--rate must be a number/],
    [['--n'], /argument missing/],
    [['--bogus', '1'], /Unknown option '--bogus'/],
    [['stray'], /positional argument/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseCli(spec, argv)).toThrow(CliError);
    expect(() => parseCli(spec, argv)).toThrow(message);
  });

  it('npm run load:faults -- --n abc exits 2 with the reason, before starting anything', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/load-faults.ts', '--n', 'abc'], { cwd: projectRoot, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('error: --n must be a number, got "abc"');
    expect(r.stdout).toBe('');
  });
});

describe('every script that takes options answers --help without starting anything', () => {
  it.each(['soak', 'load-faults', 'crash-test', 'bench-idempotency'])('%s --help', (script) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', `scripts/${script}.ts`, '--help'], { cwd: projectRoot, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^usage: /);
  });
});
