/**
 * Command lines of the scripts, parsed with `node:util` parseArgs and checked: an unknown option, a
 * missing value or a value out of range is refused (exit 2 with the reason and the usage), never run
 * as NaN. Every script also takes `--json` (one JSON report on stdout; progress stays on stderr) and
 * `--help`.
 */
import { parseArgs } from 'node:util';

// The scripts run on Node 20 on purpose (as the tests do); the SDK's notice about Node 22 is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface NumberOption {
  readonly type: 'number';
  readonly default: number;
  readonly min?: number;
  readonly max?: number;
  readonly integer?: boolean;
  readonly doc: string;
}
export interface StringOption {
  readonly type: 'string';
  readonly default?: string;
  readonly doc: string;
}
export interface FlagOption {
  readonly type: 'boolean';
  readonly doc: string;
}
export type CliOption = NumberOption | StringOption | FlagOption;

type ValueOf<O extends CliOption> = O extends NumberOption
  ? number
  : O extends FlagOption
    ? boolean
    : O extends { default: string }
      ? string
      : string | undefined;
export type CliValues<S extends Record<string, CliOption>> = { -readonly [K in keyof S]: ValueOf<S[K]> } & { json: boolean };

/** A command line the script cannot run with. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

export function usageOf(command: string, spec: Record<string, CliOption>): string {
  const lines = Object.entries(spec).map(([name, o]) => {
    const value = o.type === 'boolean' ? '' : ` <${o.type}>`;
    const dflt = o.type !== 'boolean' && o.default !== undefined ? ` (default ${o.default})` : '';
    return `  --${name}${value}  ${o.doc}${dflt}`;
  });
  return [`usage: ${command} [options]`, ...lines, '  --json  print one JSON report on stdout (progress goes to stderr)', '  --help  this text'].join('\n');
}

/** Parses `argv` by `spec`; throws CliError on anything it cannot run with. */
export function parseCli<S extends Record<string, CliOption>>(spec: S, argv: readonly string[]): CliValues<S> & { help: boolean } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        ...Object.fromEntries(Object.entries(spec).map(([name, o]) => [name, { type: o.type === 'boolean' ? 'boolean' : 'string' } as const])),
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const raw = parsed.values as Record<string, string | boolean | undefined>;
  const out: Record<string, unknown> = { json: raw.json === true, help: raw.help === true };
  for (const [name, o] of Object.entries(spec)) {
    const v = raw[name];
    if (o.type === 'boolean') {
      out[name] = v === true;
    } else if (o.type === 'string') {
      if (v === '') throw new CliError(`--${name} needs a value`);
      out[name] = (v as string | undefined) ?? o.default;
    } else if (v === undefined) {
      out[name] = o.default;
    } else {
      const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
      if (!Number.isFinite(n)) throw new CliError(`--${name} must be a number, got "${String(v)}"`);
      if (o.integer && !Number.isInteger(n)) throw new CliError(`--${name} must be a whole number, got ${v}`);
      if (o.min !== undefined && n < o.min) throw new CliError(`--${name} must be at least ${o.min}, got ${v}`);
      if (o.max !== undefined && n > o.max) throw new CliError(`--${name} must be at most ${o.max}, got ${v}`);
      out[name] = n;
    }
  }
  return out as CliValues<S> & { help: boolean };
}

/** For a script's top level: the parsed options, or exit 2 with the reason and the usage (0 for --help). */
export function cliOrExit<S extends Record<string, CliOption>>(command: string, spec: S, argv: readonly string[] = process.argv.slice(2)): CliValues<S> {
  try {
    const values = parseCli(spec, argv);
    if (values.help) {
      process.stdout.write(`${usageOf(command, spec)}\n`);
      process.exit(0);
    }
    return values;
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`error: ${err.message}\n${usageOf(command, spec)}\n`);
    process.exit(2);
  }
}

/**
 * Output of a long script: progress lines on stderr (with the elapsed time), the human summary on
 * stdout, or with --json only the final report on stdout.
 */
export function reporter(json: boolean) {
  const t0 = performance.now();
  return {
    progress(line: string): void {
      process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
    },
    line(text: string): void {
      if (!json) process.stdout.write(`${text}\n`);
    },
    report(result: unknown): void {
      if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
    },
  };
}
