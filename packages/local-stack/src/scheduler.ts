/**
 * EventBridge schedules: every AWS::Events::Rule with a ScheduleExpression, rate(...) or cron(...),
 * invokes its Lambda targets asynchronously with a Scheduled Event (or the target's Input).
 */
import { randomUUID } from 'node:crypto';
import type { ScheduledEvent } from 'aws-lambda';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './local-account';
import { resourcesOfType, type CfnTemplate } from './template';
import { functionIdOf, shortId, type LogFn } from './util';

export interface ScheduleTarget {
  readonly functionId: string;
  readonly targetId: string;
  /** The target's constant Input (JSON text), sent instead of the scheduled event. */
  readonly input?: string;
}

export interface ScheduleRule {
  readonly logicalId: string;
  readonly expression: string;
  readonly enabled: boolean;
  readonly targets: ScheduleTarget[];
}

export function scheduleRules(template: CfnTemplate, log: LogFn = () => {}): ScheduleRule[] {
  const rules: ScheduleRule[] = [];
  for (const [logicalId, r] of resourcesOfType(template, 'AWS::Events::Rule')) {
    const p = r.Properties ?? {};
    if (typeof p.ScheduleExpression !== 'string') continue;
    const targets: ScheduleTarget[] = [];
    for (const t of p.Targets ?? []) {
      const functionId = functionIdOf(template, t.Arn);
      if (!functionId) {
        log(`[${shortId(logicalId)}] target ${t.Id} is not a function of this stack: not emulated`);
        continue;
      }
      if (t.InputPath || t.InputTransformer) log(`[${shortId(logicalId)}] target ${t.Id}: InputPath/InputTransformer are not emulated`);
      targets.push({ functionId, targetId: String(t.Id ?? functionId), input: typeof t.Input === 'string' ? t.Input : undefined });
    }
    rules.push({ logicalId, expression: p.ScheduleExpression, enabled: (p.State ?? 'ENABLED') === 'ENABLED', targets });
  }
  return rules;
}

/** The event a target receives when `rule` fires at `time`. */
export function scheduledEvent(rule: ScheduleRule, target: ScheduleTarget, time = new Date()): unknown {
  if (target.input !== undefined) return JSON.parse(target.input);
  const event: ScheduledEvent = {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: LOCAL_ACCOUNT,
    time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: LOCAL_REGION,
    resources: [`arn:aws:events:${LOCAL_REGION}:${LOCAL_ACCOUNT}:rule/${rule.logicalId}`],
    detail: {},
  };
  return event;
}

// ---- Expressions ----------------------------------------------------------------------------------

const UNIT_MS: Record<string, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** `rate(5 minutes)` → 300000; undefined when not a rate expression. */
export function parseRate(expression: string): number | undefined {
  const m = /^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$/i.exec(expression.trim());
  if (!m) return undefined;
  const unit = m[2]!.toLowerCase().replace(/s$/, '');
  return Number(m[1]) * UNIT_MS[unit]!;
}

interface CronFields {
  minutes: Set<number>;
  hours: Set<number>;
  daysOfMonth?: Set<number>;
  months: Set<number>;
  /** 1 = Sunday … 7 = Saturday, as in EventBridge. */
  daysOfWeek?: Set<number>;
  years?: Set<number>;
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

function parseField(field: string, min: number, max: number, names: string[] = [], nameBase = 1): Set<number> | undefined {
  if (field === '?') return undefined;
  const values = new Set<number>();
  const num = (s: string) => {
    const idx = names.indexOf(s.toUpperCase());
    const n = idx >= 0 ? idx + nameBase : Number(s);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`value "${s}" out of range ${min}-${max}`);
    return n;
  };
  for (const part of field.split(',')) {
    if (/[LW#]/i.test(part.replace(/[A-Z]{3}/gi, (n) => (names.includes(n.toUpperCase()) ? '0' : n)))) {
      throw new Error(`"${part}" (L, W, #) is not supported locally`);
    }
    const [range, stepText] = part.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw new Error(`bad step in "${part}"`);
    let lo: number;
    let hi: number;
    if (range === '*') [lo, hi] = [min, max];
    else if (range!.includes('-')) {
      const [a, b] = range!.split('-');
      [lo, hi] = [num(a!), num(b!)];
    } else {
      lo = num(range!);
      hi = stepText === undefined ? lo : max;
    }
    for (let v = lo; v <= hi; v += step) values.add(v);
  }
  return values;
}

/** Parses `cron(min hour day-of-month month day-of-week year)`; undefined when not a cron expression. */
export function parseCron(expression: string): CronFields | undefined {
  const m = /^cron\((.*)\)$/i.exec(expression.trim());
  if (!m) return undefined;
  const parts = m[1]!.trim().split(/\s+/);
  if (parts.length !== 6) throw new Error(`cron expressions have 6 fields: ${expression}`);
  const [mi, h, dom, mo, dow, y] = parts as [string, string, string, string, string, string];
  return {
    minutes: parseField(mi, 0, 59)!,
    hours: parseField(h, 0, 23)!,
    daysOfMonth: dom === '*' ? undefined : parseField(dom, 1, 31),
    months: parseField(mo, 1, 12, MONTHS)!,
    daysOfWeek: dow === '*' ? undefined : parseField(dow, 1, 7, DAYS),
    years: y === '*' ? undefined : parseField(y, 1970, 2199),
  };
}

/** The first time strictly after `after` (UTC) that matches the cron fields, within five years. */
export function nextCronTime(c: CronFields, after: number): number | undefined {
  const limit = after + 5 * 366 * 86_400_000;
  let t = Math.floor(after / 60_000) * 60_000 + 60_000;
  while (t < limit) {
    const d = new Date(t);
    const y = d.getUTCFullYear();
    const mo = d.getUTCMonth() + 1;
    if (c.years && !c.years.has(y)) {
      t = Date.UTC(y + 1, 0, 1);
      continue;
    }
    if (!c.months.has(mo)) {
      t = Date.UTC(y, mo, 1);
      continue;
    }
    const dayOk = (!c.daysOfMonth || c.daysOfMonth.has(d.getUTCDate())) && (!c.daysOfWeek || c.daysOfWeek.has(d.getUTCDay() + 1));
    if (!dayOk) {
      t = Date.UTC(y, mo - 1, d.getUTCDate() + 1);
      continue;
    }
    if (!c.hours.has(d.getUTCHours())) {
      t = Date.UTC(y, mo - 1, d.getUTCDate(), d.getUTCHours() + 1);
      continue;
    }
    if (!c.minutes.has(d.getUTCMinutes())) {
      t += 60_000;
      continue;
    }
    return t;
  }
  return undefined;
}

// ---- Scheduler ------------------------------------------------------------------------------------

export interface SchedulerOptions {
  readonly rules: ScheduleRule[];
  /** Invokes a target asynchronously. */
  readonly fire: (functionId: string, event: unknown) => void;
  /** Divides rate() periods, e.g. 60 fires rate(1 minute) every second. */
  readonly scale?: number;
  readonly log: LogFn;
}

export class Scheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly opts: SchedulerOptions) {}

  start(): void {
    for (const rule of this.opts.rules) {
      if (!rule.enabled) {
        this.opts.log(`[${shortId(rule.logicalId)}] ${rule.expression} is disabled`);
        continue;
      }
      try {
        const period = parseRate(rule.expression);
        if (period !== undefined) {
          const scaled = Math.max(100, period / (this.opts.scale && this.opts.scale > 0 ? this.opts.scale : 1));
          this.every(rule, scaled);
          this.opts.log(`[${shortId(rule.logicalId)}] ${rule.expression}: every ${scaled / 1000} s → ${rule.targets.map((t) => shortId(t.functionId)).join(', ')}`);
          continue;
        }
        const cron = parseCron(rule.expression);
        if (cron) {
          this.atCron(rule, cron);
          this.opts.log(`[${shortId(rule.logicalId)}] ${rule.expression} (UTC) → ${rule.targets.map((t) => shortId(t.functionId)).join(', ')}`);
          continue;
        }
        this.opts.log(`[${shortId(rule.logicalId)}] unsupported schedule ${rule.expression}`);
      } catch (err) {
        this.opts.log(`[${shortId(rule.logicalId)}] cannot schedule ${rule.expression}: ${(err as Error).message}`);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Invokes every target of `rule` now. */
  fire(rule: ScheduleRule): void {
    const now = new Date();
    for (const target of rule.targets) this.opts.fire(target.functionId, scheduledEvent(rule, target, now));
  }

  private every(rule: ScheduleRule, periodMs: number) {
    const tick = () => {
      if (this.stopped) return;
      this.fire(rule);
      this.timers.set(rule.logicalId, setTimeout(tick, periodMs));
    };
    this.timers.set(rule.logicalId, setTimeout(tick, periodMs));
  }

  private atCron(rule: ScheduleRule, cron: CronFields) {
    const arm = () => {
      if (this.stopped) return;
      const next = nextCronTime(cron, Date.now());
      if (next === undefined) return;
      // setTimeout cannot wait more than ~24.8 days; re-arm in steps.
      const wait = Math.min(next - Date.now(), 2 ** 31 - 1);
      this.timers.set(
        rule.logicalId,
        setTimeout(() => {
          if (Date.now() >= next) this.fire(rule);
          arm();
        }, wait),
      );
    };
    arm();
  }
}
