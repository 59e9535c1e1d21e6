// The bus port: what every role needs from a message bus. The in-process adapter implements it
// for the embedded default; the Kafka adapter (production) implements the same contract.
// Delivery is at-least-once: a handler that throws sees its batch again, so consumers dedupe.

export interface OutgoingMessage {
  /** Partition key: messages with the same key keep their order. */
  key: string;
  value: unknown;
}

export interface DeliveredMessage {
  topic: string;
  partition: number;
  offset: number;
  key: string;
  value: unknown;
}

/** What the bus knows about a batch beside its messages. */
export interface BatchInfo {
  /** Messages already waiting in the same partition after this batch (0: it is caught up). */
  behind: number;
}

export type BatchHandler = (messages: DeliveredMessage[], info: BatchInfo) => Promise<void>;

export interface SubscribeOptions {
  topic: string;
  /** Consumers of one group share the topic's partitions; each group sees every message. */
  group: string;
  handler: BatchHandler;
  /** Messages per handler call at most (default 500). */
  maxBatchSize?: number;
  /**
   * Bytes one fetch may bring from a partition (the Kafka adapter's fetch size, default 1 MiB):
   * a consumer that wants batches of maxBatchSize large messages asks for room for them. The
   * in-process bus holds decoded messages and counts maxBatchSize only.
   */
  maxFetchBytes?: number;
}

export interface Subscription {
  close(): Promise<void>;
}

export interface Bus {
  /**
   * Whether other processes see what this bus carries (a broker), or only this process (the
   * in-process bus): a process whose bus reaches no one else leaves relaying and consuming to
   * the processes that hold the consumers.
   */
  readonly sharedAcrossProcesses: boolean;
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  close(): Promise<void>;
  /**
   * Resolves once the bus answered (a broker's cluster metadata), rejects with why it did not;
   * a bus in this process has nothing to reach and leaves it out. For readiness probes.
   */
  ping?(): Promise<void>;
}
