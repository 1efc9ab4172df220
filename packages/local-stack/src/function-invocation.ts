/** What an invocation of a local function yields, as the Lambda service reports it. */

export interface LambdaError {
  readonly errorType: string;
  readonly errorMessage: string;
  readonly trace?: string[];
}

export type InvocationOutcome =
  | { readonly ok: true; readonly requestId: string; readonly durationMs: number; /** JSON text */ readonly payload: string }
  | { readonly ok: false; readonly requestId: string; readonly durationMs: number; readonly error: LambdaError };

export type InvocationSource = 'api' | 'sqs' | 'stream' | 'schedule' | 'lambda' | 'direct';

export interface InvocationRecord {
  readonly functionId: string;
  readonly source: InvocationSource;
  readonly event: unknown;
  readonly outcome: InvocationOutcome;
}

export interface InvokeOptions {
  readonly requestId?: string;
  readonly clientContext?: unknown;
}

/** Thrown by LocalStack.invoke() when the function fails. */
export class LambdaInvocationError extends Error {
  constructor(
    readonly functionId: string,
    readonly lambdaError: LambdaError,
  ) {
    super(`${functionId} failed: ${lambdaError.errorType}: ${lambdaError.errorMessage}`);
    this.name = 'LambdaInvocationError';
  }
}
