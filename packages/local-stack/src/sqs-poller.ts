/**
 * An SQS event source mapping: long-polls the queue with as many pollers as the mapping's maximum
 * concurrency, gathers batches (BatchSize, MaximumBatchingWindowInSeconds), invokes the function with
 * an SQS event and deletes what succeeded. Failed messages are left alone: they reappear after the
 * queue's visibility timeout and the queue's redrive policy moves them to the DLQ after
 * maxReceiveCount receives (the SQS emulator applies the redrive policy, as SQS does).
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import type { EventSourceMappingDef } from './event-sources';
import { batchItemFailures } from './event-sources';
import type { FunctionRegistry } from './function-registry';
import { LOCAL_REGION } from './local-account';
import { errorMessage, shortId, sleep, type LogFn } from './util';

/** Pollers per mapping when the template sets no ScalingConfig.MaximumConcurrency. */
export const DEFAULT_SQS_POLLERS = 3;
const MAX_LOCAL_POLLERS = 20;
const LONG_POLL_SECONDS = 20;

/** Lambda's SQS record for a received message. */
export function sqsRecord(m: Message, queueArn: string): SQSRecord {
  const attrs = (m.Attributes ?? {}) as Record<string, string>;
  const messageAttributes: SQSMessageAttributes = {};
  for (const [name, a] of Object.entries(m.MessageAttributes ?? {})) {
    messageAttributes[name] = {
      ...(a.StringValue !== undefined ? { stringValue: a.StringValue } : {}),
      ...(a.BinaryValue !== undefined ? { binaryValue: Buffer.from(a.BinaryValue).toString('base64') } : {}),
      stringListValues: a.StringListValues ?? [],
      binaryListValues: (a.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: a.DataType ?? 'String',
    };
  }
  return {
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body ?? '',
    attributes: {
      ApproximateReceiveCount: attrs.ApproximateReceiveCount ?? '1',
      SentTimestamp: attrs.SentTimestamp ?? String(Date.now()),
      SenderId: attrs.SenderId ?? '000000000000',
      ApproximateFirstReceiveTimestamp: attrs.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(attrs.SequenceNumber ? { SequenceNumber: attrs.SequenceNumber } : {}),
      ...(attrs.MessageGroupId ? { MessageGroupId: attrs.MessageGroupId } : {}),
      ...(attrs.MessageDeduplicationId ? { MessageDeduplicationId: attrs.MessageDeduplicationId } : {}),
      ...(attrs.AWSTraceHeader ? { AWSTraceHeader: attrs.AWSTraceHeader } : {}),
    },
    messageAttributes,
    md5OfBody: m.MD5OfBody ?? '',
    ...(m.MD5OfMessageAttributes ? { md5OfMessageAttributes: m.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: LOCAL_REGION,
  } as SQSRecord;
}

export function sqsEvent(messages: readonly Message[], queueArn: string): SQSEvent {
  return { Records: messages.map((m) => sqsRecord(m, queueArn)) };
}

export interface SqsPollerOptions {
  readonly mapping: EventSourceMappingDef;
  readonly queue: { readonly url: string; readonly arn: string };
  readonly sqs: SQSClient;
  readonly registry: FunctionRegistry;
  readonly log: LogFn;
}

export class SqsPoller {
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  readonly pollers: number;
  private readonly label: string;

  constructor(private readonly opts: SqsPollerOptions) {
    const max = Number(opts.mapping.props.ScalingConfig?.MaximumConcurrency ?? DEFAULT_SQS_POLLERS);
    this.pollers = Math.max(1, Math.min(MAX_LOCAL_POLLERS, max));
    this.label = `[${shortId(opts.mapping.functionId)} ← sqs]`;
  }

  start(): void {
    for (let i = 0; i < this.pollers; i++) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }

  private async receive(max: number, waitSeconds: number): Promise<Message[]> {
    const { Messages } = await this.opts.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.opts.queue.url,
        MaxNumberOfMessages: Math.max(1, Math.min(10, max)),
        WaitTimeSeconds: waitSeconds,
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
      { abortSignal: this.abort.signal },
    );
    return Messages ?? [];
  }

  private async loop(): Promise<void> {
    const { mapping } = this.opts;
    const signal = this.abort.signal;
    const windowMs = mapping.maxBatchingWindowSeconds * 1000;
    while (!signal.aborted) {
      const batch: Message[] = [];
      try {
        batch.push(...(await this.receive(mapping.batchSize, LONG_POLL_SECONDS)));
        if (batch.length === 0) continue;
        const deadline = Date.now() + windowMs;
        while (batch.length < mapping.batchSize && Date.now() < deadline && !signal.aborted) {
          const more = await this.receive(mapping.batchSize - batch.length, 0);
          if (more.length) batch.push(...more);
          else await sleep(Math.min(100, deadline - Date.now()), signal);
        }
      } catch (err) {
        if (signal.aborted) break;
        this.opts.log(`${this.label} receive failed: ${errorMessage(err)}`);
        await sleep(1000, signal);
        continue;
      }
      if (signal.aborted) break;
      try {
        await this.process(batch);
      } catch (err) {
        if (!signal.aborted) this.opts.log(`${this.label} batch handling failed: ${errorMessage(err)}`);
      }
    }
  }

  private async process(batch: Message[]): Promise<void> {
    const { mapping, queue, registry } = this.opts;
    const outcome = await registry.invoke(mapping.functionId, sqsEvent(batch, queue.arn), 'sqs');
    if (!outcome.ok) return; // every message comes back after the visibility timeout
    let done = batch;
    if (mapping.reportBatchItemFailures) {
      const failed = batchItemFailures(outcome.payload, batch.map((m) => m.MessageId!));
      if (failed === 'all') {
        this.opts.log(`${this.label} invalid batchItemFailures response: the whole batch is retried`);
        return;
      }
      done = batch.filter((m) => !failed.has(m.MessageId!));
    }
    for (let i = 0; i < done.length; i += 10) {
      const chunk = done.slice(i, i + 10);
      const res = await this.opts.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queue.url,
          Entries: chunk.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle! })),
        }),
      );
      for (const f of res.Failed ?? []) this.opts.log(`${this.label} delete failed: ${f.Code} ${f.Message ?? ''}`);
    }
  }
}
