// How a subscription settles one batch, the same on both adapters: each message is checked
// against the subscription's contract, the valid ones go to the handler, and its answer (or its
// throw) becomes a result per message. Retries spend the budget of the message they stop at;
// dead letters (broken contract, `dlq`, budget spent) are published to `<topic>.dlq` before
// anything is committed. The adapter is told how many leading messages are settled (to commit)
// and, when a retry cut the batch, how long to wait before delivering the rest again.
import { dlqTopic, type DeadLetter } from '@herald/contracts';
import type { ZodError } from 'zod';
import {
  type BatchInfo,
  type Bus,
  type ConsumerIncident,
  DEFAULT_RETRY_BUDGET,
  type DeliveredMessage,
  type IncidentListener,
  type MessageResult,
  type OutgoingMessage,
  ok,
  retry,
  type SubscribeOptions,
} from './bus.js';

/** The first retry's backoff when the adapter sets none, and the most any retry waits. */
export const DEFAULT_RETRY_BACKOFF_MS = 500;
export const DEFAULT_MAX_RETRY_BACKOFF_MS = 30_000;

/** How both adapters consume: retries and what they report. */
export interface ConsumerRetryOptions {
  /**
   * How long a partition waits before a retried message is delivered again, the first time
   * (default 500 ms); it doubles for each further retry of the same message.
   */
  retryBackoffMs?: number;
  /** The longest wait before a retry (default 30 s). */
  maxRetryBackoffMs?: number;
  /** Told of each retry, dead letter and drop. Default: a JSON line on stderr. */
  onIncident?: IncidentListener;
}

export interface ConsumptionSettings {
  /** Backoff of a first retry; each further retry of the same message doubles it, up to maxRetryBackoffMs. */
  retryBackoffMs: number;
  maxRetryBackoffMs: number;
  /** Publishes on the same bus (dead letters). */
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  onIncident: IncidentListener;
}

/**
 * What became of a batch: its first `settled` messages are done with (commit through them); the
 * rest, when there is a rest, comes again after `retryInMs`.
 */
export interface Settlement {
  settled: number;
  retryInMs?: number;
}

/** A verdict on one message, with the deliveries it took. */
interface Decided {
  result: MessageResult;
  attempts: number;
}

const RESULT_TYPES = new Set(['ok', 'retry', 'dlq', 'drop']);

export class Consumption<T> {
  /**
   * The consumption of a subscription on `bus`, with the bus's retry options and their defaults.
   * Typed for the adapter, which handles values it knows nothing of: the contract is checked here.
   */
  static of<T>(options: SubscribeOptions<T>, bus: Pick<Bus, 'publish'>, retry: ConsumerRetryOptions): Consumption<unknown> {
    return new Consumption(options as SubscribeOptions<unknown>, {
      retryBackoffMs: retry.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS,
      maxRetryBackoffMs: retry.maxRetryBackoffMs ?? DEFAULT_MAX_RETRY_BACKOFF_MS,
      publish: (topic, messages) => bus.publish(topic, messages),
      onIncident: retry.onIncident ?? logIncident,
    });
  }

  private readonly budget: number;
  /** Per partition: the message a retry stopped at, and its failed deliveries so far. */
  private readonly failing = new Map<number, { offset: number; attempts: number }>();

  constructor(
    readonly options: SubscribeOptions<T>,
    private readonly settings: ConsumptionSettings,
  ) {
    this.budget = options.retryBudget ?? DEFAULT_RETRY_BUDGET;
    if (!Number.isInteger(this.budget) || this.budget < 0) {
      throw new RangeError(`retryBudget of ${options.topic}/${options.group} must be a whole number >= 0, not ${options.retryBudget}`);
    }
  }

  /** Settles a batch of one partition (offsets ascending). Never throws: a failure is a retry. */
  async consume(batch: DeliveredMessage[], info: BatchInfo): Promise<Settlement> {
    if (batch.length === 0) return { settled: 0 };
    const { decided, batchWide, error } = await this.decide(batch, info);
    const partition = batch[0]!.partition;

    // Walk the results in order: the first retry within its budget cuts the batch.
    let settled = batch.length;
    let retryAt: { attempts: number; reason: string } | undefined;
    for (let i = 0; i < batch.length; i++) {
      const { result, attempts } = decided[i]!;
      if (result.type !== 'retry') continue;
      if (attempts <= this.budget) {
        settled = i;
        retryAt = { attempts, reason: result.reason };
        break;
      }
      // Past the budget: to the DLQ with its last reason; a batch-wide retry gives up on all of it.
      const given = (j: number) => {
        const last = decided[j]!.result as { reason: string };
        decided[j] = { result: { type: 'dlq', reason: `${last.reason} (gave up after ${attempts} ${attempts === 1 ? 'delivery' : 'deliveries'})` }, attempts };
      };
      if (batchWide) {
        for (let j = i; j < batch.length; j++) if (decided[j]!.result.type === 'retry') given(j);
      } else {
        given(i);
      }
    }

    const dead = decided.slice(0, settled).flatMap((d, i) => (d.result.type === 'dlq' ? [i] : []));
    if (dead.length > 0) {
      const failedAt = new Date().toISOString();
      try {
        await this.settings.publish(
          dlqTopic(this.options.topic),
          dead.map((i) => {
            const message = batch[i]!;
            const letter: DeadLetter = {
              reason: (decided[i]!.result as { reason: string }).reason,
              key: message.key,
              value: message.value,
              topic: this.options.topic,
              partition: message.partition,
              offset: message.offset,
              group: this.options.group,
              attempts: decided[i]!.attempts,
              failedAt,
            };
            // With the original key: `dlq replay` puts a repaired message back on its partition.
            return { key: message.key, value: letter };
          }),
        );
      } catch (publishError) {
        // Nothing is committed without its dead letters: the whole batch comes again.
        const retryInMs = this.settings.retryBackoffMs;
        this.report({ outcome: 'retry', reason: `dead letters not published: ${reasonOf(publishError)}`, messages: batch.length, attempts: 0, retryInMs, error: publishError });
        return { settled: 0, retryInMs };
      }
    }

    this.reportSettled(decided.slice(0, settled));
    if (retryAt === undefined) {
      this.failing.delete(partition);
      return { settled };
    }
    this.failing.set(partition, { offset: batch[settled]!.offset, attempts: retryAt.attempts });
    const retryInMs = Math.min(this.settings.retryBackoffMs * 2 ** (retryAt.attempts - 1), this.settings.maxRetryBackoffMs);
    this.report({ outcome: 'retry', reason: retryAt.reason, messages: batch.length - settled, attempts: retryAt.attempts, retryInMs, error });
    return { settled, retryInMs };
  }

  /** A result per message: the contract's verdict, else the handler's answer. */
  private async decide(batch: DeliveredMessage[], info: BatchInfo): Promise<{ decided: Decided[]; batchWide: boolean; error?: unknown }> {
    const decided: Decided[] = new Array(batch.length);
    const valid: DeliveredMessage<T>[] = [];
    const validIndex: number[] = [];
    batch.forEach((message, i) => {
      const parsed = this.options.schema.safeParse(message.value);
      if (parsed.success) {
        valid.push({ ...message, value: parsed.data });
        validIndex.push(i);
      } else {
        decided[i] = { result: { type: 'dlq', reason: `does not match the contract of ${this.options.topic}: ${describeIssues(parsed.error)}` }, attempts: 0 };
      }
    });
    if (valid.length === 0) return { decided, batchWide: false };

    let answer: unknown;
    let error: unknown;
    try {
      answer = (await this.options.handler(valid, info)) ?? ok();
    } catch (thrown) {
      error = thrown;
      answer = retry(reasonOf(thrown));
    }
    let batchWide = !Array.isArray(answer);
    if (Array.isArray(answer) && (answer.length !== valid.length || !answer.every(isResult))) {
      answer = retry(`the handler answered ${answer.length} results for ${valid.length} messages, or one that is not a result`);
      batchWide = true;
    } else if (!Array.isArray(answer) && !isResult(answer)) {
      answer = retry('the handler answered something that is not a result');
    }
    // This delivery counts: one more than the failed ones of the message a retry last stopped at.
    const failing = this.failing.get(batch[0]!.partition);
    validIndex.forEach((index, j) => {
      const result = batchWide ? (answer as MessageResult) : (answer as MessageResult[])[j]!;
      decided[index] = { result, attempts: failing?.offset === batch[index]!.offset ? failing.attempts + 1 : 1 };
    });
    return { decided, batchWide, error };
  }

  /** Reports the dead letters and drops of the settled messages, one incident per outcome and reason. */
  private reportSettled(settled: Decided[]): void {
    const groups = new Map<string, { outcome: 'dlq' | 'drop'; reason: string; messages: number; attempts: number }>();
    for (const { result, attempts } of settled) {
      if (result.type !== 'dlq' && result.type !== 'drop') continue;
      const key = `${result.type}\u0000${result.reason}`;
      const group = groups.get(key) ?? { outcome: result.type, reason: result.reason, messages: 0, attempts: 0 };
      group.messages++;
      group.attempts = Math.max(group.attempts, attempts);
      groups.set(key, group);
    }
    for (const group of groups.values()) this.report(group);
  }

  private report(incident: Omit<ConsumerIncident, 'topic' | 'group'>): void {
    try {
      this.settings.onIncident({ topic: this.options.topic, group: this.options.group, ...incident });
    } catch {
      // A listener's failure is not the message's: it changes nothing of what was settled.
    }
  }
}

function isResult(value: unknown): value is MessageResult {
  return typeof value === 'object' && value !== null && RESULT_TYPES.has((value as { type?: unknown }).type as string);
}

/** `path: message; …` for each issue (a root-level one without a path). */
export function describeIssues(error: ZodError): string {
  return error.issues.map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message)).join('; ');
}

export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The default listener: one JSON line on stderr per incident. */
export function logIncident(incident: ConsumerIncident): void {
  const { error, ...rest } = incident;
  const level = incident.outcome === 'drop' ? 'info' : 'warn';
  const what = incident.outcome === 'retry' ? 'will be delivered again' : incident.outcome === 'dlq' ? 'sent to the DLQ' : 'dropped';
  process.stderr.write(`${JSON.stringify({ level, logger: 'bus', ...rest, ...(error instanceof Error ? { stack: error.stack } : {}), msg: `${incident.messages} message(s) ${what}: ${incident.reason}` })}\n`);
}
