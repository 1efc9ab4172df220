/**
 * X-Ray subsegments around the payment provider: one per provider call (`provider.<operation>`),
 * annotated with the operation and its outcome (the intent status, or the ProviderError kind), so a
 * trace shows which call was slow or unclear and traces can be searched by outcome. Wiring wraps the
 * adapter with it; the core never knows.
 */
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { ProviderError, type PaymentProvider } from '../../core/ports/payment-provider';

type Operation = keyof PaymentProvider;

/** The `outcome` annotation of a provider call. */
export function providerCallOutcome(result: unknown, err: unknown): string {
  if (err !== undefined) return err instanceof ProviderError ? `error_${err.kind}` : 'error';
  if (result && typeof result === 'object' && 'status' in result && typeof result.status === 'string') return result.status;
  return result === undefined ? 'none' : 'ok';
}

export function withTracing(provider: PaymentProvider, tracer: Pick<Tracer, 'isTracingEnabled' | 'getSegment' | 'setSegment'>): PaymentProvider {
  const traced = <K extends Operation>(operation: K): PaymentProvider[K] => {
    const call = (provider[operation] as (...args: unknown[]) => Promise<unknown>).bind(provider);
    const wrapped = async (...args: unknown[]): Promise<unknown> => {
      const parent = tracer.isTracingEnabled() ? tracer.getSegment() : undefined;
      if (!parent) return call(...args);
      const sub = parent.addNewSubsegment(`provider.${operation}`);
      tracer.setSegment(sub);
      sub.addAnnotation('providerOperation', operation);
      try {
        const result = await call(...args);
        sub.addAnnotation('outcome', providerCallOutcome(result, undefined));
        return result;
      } catch (err) {
        sub.addAnnotation('outcome', providerCallOutcome(undefined, err));
        if (!(err instanceof ProviderError)) sub.addError(err as Error);
        throw err;
      } finally {
        sub.close();
        tracer.setSegment(parent);
      }
    };
    return wrapped as PaymentProvider[K];
  };
  return {
    createIntent: traced('createIntent'),
    confirmIntent: traced('confirmIntent'),
    retrieveIntent: traced('retrieveIntent'),
    findIntentsForPayment: traced('findIntentsForPayment'),
    cancelIntent: traced('cancelIntent'),
    refund: traced('refund'),
    retrieveRefund: traced('retrieveRefund'),
    listRefunds: traced('listRefunds'),
    listIntents: traced('listIntents'),
  };
}
