/** The local functions of the stack, and the listeners told of every invocation. */
import type { FunctionDefinition } from './function-definitions';
import type { InvocationOutcome, InvocationRecord, InvocationSource, InvokeOptions } from './function-invocation';
import { LocalFunction } from './function-sandbox';
import { errorMessage, findByPrefix, functionNameFromArn, shortId, type LogFn } from './util';

/** Every function of the template, looked up by logical id, prefix, name or ARN. */
export class FunctionRegistry {
  readonly functions = new Map<string, LocalFunction>();
  private readonly listeners = new Set<(r: InvocationRecord) => void>();

  constructor(
    defs: FunctionDefinition[],
    private readonly log: LogFn,
  ) {
    for (const def of defs) this.functions.set(def.id, new LocalFunction(def, log));
  }

  get ids(): string[] {
    return [...this.functions.keys()];
  }

  /** By logical id, local function name or ARN (with or without qualifier). */
  get(nameOrArn: string): LocalFunction | undefined {
    return this.functions.get(functionNameFromArn(nameOrArn));
  }

  /** Logical id → OS thread id of each function whose sandbox is running (Linux; for CPU figures). */
  threads(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, fn] of this.functions) if (fn.osThreadId !== undefined) out.set(id, fn.osThreadId);
    return out;
  }

  byPrefix(prefix: string): LocalFunction {
    return this.functions.get(findByPrefix(this.ids, prefix, 'function'))!;
  }

  onInvocation(listener: (r: InvocationRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Invokes and reports the invocation to the listeners. */
  async invoke(functionId: string, event: unknown, source: InvocationSource, opts?: InvokeOptions): Promise<InvocationOutcome> {
    const fn = this.get(functionId);
    if (!fn) throw new Error(`Unknown function ${functionId}`);
    const outcome = await fn.invoke(event, opts);
    if (!outcome.ok) {
      this.log(`[${shortId(fn.id)}] ${outcome.requestId} (${source}) failed: ${outcome.error.errorType}: ${outcome.error.errorMessage}`);
    }
    for (const l of this.listeners) {
      try {
        l({ functionId: fn.id, source, event, outcome });
      } catch (err) {
        this.log(`invocation listener failed: ${errorMessage(err)}`);
      }
    }
    return outcome;
  }

  async warmAll(): Promise<void> {
    await Promise.all([...this.functions.values()].map((f) => f.warm()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.functions.values()].map((f) => f.stop()));
  }
}
