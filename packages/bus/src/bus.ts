// The bus port: what every role needs from a message bus. The in-process adapter implements it
// for the embedded default; the Kafka adapter (production) implements the same contract, and one
// conformance suite checks both.
//
// A subscription names the contract (a zod schema) of its topic's messages: its handler gets
// validated, typed values, and a message that breaks the contract goes to `<topic>.dlq` with the
// reason instead. The handler answers with a result per batch or per message (ok, retry, dlq,
// drop); a retry is redelivered after a growing backoff, up to the subscription's retry budget,
// after which the message goes to the DLQ with its last reason. A handler that throws asks for a
// retry of its whole batch. Delivery is at-least-once (a batch may come again after a crash or a
// rebalance), so consumers dedupe.
import type { ZodType } from 'zod';

export interface OutgoingMessage {
  /** Partition key: messages with the same key keep their order. */
  key: string;
  value: unknown;
}

export interface DeliveredMessage<T = unknown> {
  topic: string;
  partition: number;
  offset: number;
  key: string;
  value: T;
}

/** What the bus knows about a batch beside its messages. */
export interface BatchInfo {
  /** Messages already waiting in the same partition after this batch (0: it is caught up). */
  behind: number;
}

/**
 * What became of a message, as its handler says (the results of PostHog's ingestion pipeline,
 * plus retry): `ok` handled (its offset is committed); `retry` not now (delivered again after a
 * backoff, with the messages after it in its partition); `dlq` never (published to
 * `<topic>.dlq` with the reason, then committed); `drop` not wanted (committed, the reason only
 * reported).
 */
export type MessageResult =
  | { readonly type: 'ok' }
  | { readonly type: 'retry'; readonly reason: string }
  | { readonly type: 'dlq'; readonly reason: string }
  | { readonly type: 'drop'; readonly reason: string };

const OK: MessageResult = Object.freeze({ type: 'ok' });
export const ok = (): MessageResult => OK;
export const retry = (reason: string): MessageResult => ({ type: 'retry', reason });
export const dlq = (reason: string): MessageResult => ({ type: 'dlq', reason });
export const drop = (reason: string): MessageResult => ({ type: 'drop', reason });

/**
 * A handler's answer: one result for the whole batch, or one per message of the batch, in its
 * order (nothing at all: ok). Per message, the first `retry` cuts the batch: the messages before
 * it are settled, it and every later one are delivered again (order per key), each retried
 * message with its own budget. A batch-wide `retry` (or a throw) spends one budget for the batch,
 * and past it every message of the batch goes to the DLQ.
 */
export type HandlerResult = MessageResult | readonly MessageResult[];

export type BatchHandler<T> = (messages: DeliveredMessage<T>[], info: BatchInfo) => Promise<HandlerResult | undefined>;

/** Redeliveries of a message its handler keeps asking to retry, by default, before it goes to the DLQ. */
export const DEFAULT_RETRY_BUDGET = 10;

export interface SubscribeOptions<T> {
  topic: string;
  /** Consumers of one group share the topic's partitions; each group sees every message. */
  group: string;
  /**
   * The contract of the topic's messages (e.g. `deliveryCommandSchema` of @herald/contracts).
   * The handler gets what it parsed; a value it rejects goes to `<topic>.dlq` with the reason and
   * never reaches the handler.
   */
  schema: ZodType<T>;
  handler: BatchHandler<T>;
  /** Messages per handler call at most (default 500). */
  maxBatchSize?: number;
  /**
   * Bytes one fetch may bring from a partition (the Kafka adapter's fetch size, default 1 MiB):
   * a consumer that wants batches of maxBatchSize large messages asks for room for them. The
   * in-process bus holds decoded messages and counts maxBatchSize only.
   */
  maxFetchBytes?: number;
  /**
   * Redeliveries of a message (or batch) whose handler asks for a retry before it goes to the
   * DLQ with the last reason (default DEFAULT_RETRY_BUDGET; 0: dead-lettered at the first retry).
   * With the backoff doubling from the bus's retryBackoffMs up to maxRetryBackoffMs, the default
   * rides out about two and a half minutes of failures. Counted by the consumer that holds the
   * partition: one that takes the partition over counts afresh.
   */
  retryBudget?: number;
}

export interface Subscription {
  close(): Promise<void>;
}

/** The partitions one subscription of this process owns now. */
export interface Assignment {
  topic: string;
  group: string;
  partitions: number[];
}

/** A message or batch that did not end `ok`: for logs and metrics (the bus has done what it says). */
export interface ConsumerIncident {
  topic: string;
  group: string;
  /** retry: delivered again after `retryInMs`; dlq: published to `<topic>.dlq`; drop: committed. */
  outcome: 'retry' | 'dlq' | 'drop';
  reason: string;
  /** Messages concerned. */
  messages: number;
  /** Deliveries to the handler so far (0: the message broke the contract). */
  attempts: number;
  retryInMs?: number;
  /** What the handler threw, when it threw. */
  error?: unknown;
}

export type IncidentListener = (incident: ConsumerIncident) => void;

export interface Bus {
  /**
   * Whether other processes see what this bus carries (a broker), or only this process (the
   * in-process bus): a process whose bus reaches no one else leaves relaying and consuming to
   * the processes that hold the consumers.
   */
  readonly sharedAcrossProcesses: boolean;
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription>;
  /** Closes every subscription gracefully (the batches in hand finish and are committed), then the bus. */
  close(): Promise<void>;
  /**
   * Resolves once the bus answered (a broker's cluster metadata), rejects with why it did not.
   * The in-process bus has nothing to reach: it resolves. For readiness probes.
   */
  ping(): Promise<void>;
  /** Messages of `topic` not yet committed by `group`, over all partitions (its lag). */
  lag(topic: string, group: string): Promise<number>;
  /**
   * The partitions of `topic` that the subscriptions of this process own now, one entry per
   * subscription (the in-process bus shares every partition among its subscriptions of a group;
   * a broker hands them out, and none during a rebalance).
   */
  assignments(topic: string): Assignment[];
  /**
   * Dead letters of `topic` (messages on `<topic>.dlq`) the bus holds: those the broker retains,
   * or, on the in-process bus, those written since the process started.
   */
  dlqCount(topic: string): Promise<number>;
  /**
   * Publishes the dead letters `<topic>.dlq` holds when called back to `topic`, under their
   * original key, at most `limit`; resolves with how many. Dead letters that arrive meanwhile (a
   * message still poison comes right back) are left for the next replay. The in-process bus
   * rejects: nothing it holds outlives its process, so there is nothing to replay from another.
   */
  replayDlq(topic: string, options?: { limit?: number }): Promise<number>;
}
