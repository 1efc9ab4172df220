/**
 * Quiet test output: the local stack's lines (function logs, emulator notices) are kept in memory and
 * printed only for a test that failed. `TEST_LOGS=1 npm test` streams them as they come instead.
 */
import { afterEach } from 'vitest';

const KEEP = 2_000;

export interface TestLog {
  /** The line sink to hand to startLocalStack({ log }). */
  readonly log: (line: string) => void;
  /** Every line seen since the last test ended (the capture is cleared after each test). */
  lines(): readonly string[];
}

export function testLog(): TestLog {
  const lines: string[] = [];
  const stream = process.env.TEST_LOGS === '1';
  afterEach((ctx) => {
    if (!stream && ctx.task.result?.state === 'fail' && lines.length) {
      process.stdout.write(`--- local stack output for "${ctx.task.name}" (last ${lines.length} lines) ---\n${lines.join('\n')}\n`);
    }
    lines.length = 0;
  });
  return {
    log: (line) => {
      if (stream) process.stdout.write(`${line}\n`);
      lines.push(line);
      if (lines.length > KEEP) lines.shift();
    },
    lines: () => lines,
  };
}
