// The embedded bus: topics split into partitions by key hash, consumer groups with their own
// offsets, batches handed to handlers through the port's consumption rules (consumption.ts:
// contract check, results, retries with backoff and budget, dead letters on `<topic>.dlq` of
// this bus). It lives in one process: durability across restarts comes from the outbox and the
// ledger, not from the bus.
import { createHash } from 'node:crypto';
import { dlqTopic } from '@herald/contracts';
import type { Assignment, Bus, DeliveredMessage, OutgoingMessage, SubscribeOptions, Subscription } from './bus.js';
import { type ConsumerRetryOptions, Consumption } from './consumption.js';

interface Partition {
  /** Offset of messages[0]: consumed messages are trimmed from the front. */
  base: number;
  /** Values are kept serialized: every delivery parses its own copy, as across a broker. */
  messages: { key: string; json: string }[];
}

interface Consumer {
  options: SubscribeOptions<unknown>;
  consumption: Consumption<unknown>;
  partitions: number[];
  busy: Set<number>;
  /** Partitions waiting out a retry backoff: a publish does not cut the wait short. */
  retryTimers: Map<number, NodeJS.Timeout>;
  closed: boolean;
}

interface Group {
  offsets: Map<string, number[]>;
  consumers: Consumer[];
}

export interface InProcessBusOptions extends ConsumerRetryOptions {
  partitions?: number;
  /**
   * Messages kept per partition of a topic no group consumes yet (a consumer that subscribes
   * late still sees them). Default 10,000: a topic nobody reads cannot grow without bound.
   */
  retainUnconsumed?: number;
}

export function partitionFor(key: string, partitions: number): number {
  return createHash('md5').update(key).digest().readUInt32BE(0) % partitions;
}

export class InProcessBus implements Bus {
  readonly sharedAcrossProcesses = false;
  private readonly topics = new Map<string, Partition[]>();
  private readonly groups = new Map<string, Group>();
  private readonly partitionCount: number;
  private closed = false;

  constructor(private readonly options: InProcessBusOptions = {}) {
    this.partitionCount = options.partitions ?? 12;
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) throw new Error('bus is closed');
    const partitions = this.topic(topic);
    // Serialize everything first: a value that cannot be serialized fails the whole publish.
    const encoded = messages.map((message) => {
      const json = JSON.stringify(message.value);
      if (json === undefined) throw new TypeError(`message for key '${message.key}' has no JSON value`);
      return { key: message.key, json };
    });
    // NOTE: a publish often repeats one key (a delivery's commands): its partition is hashed once
    // per run of equal keys, not once per message.
    let lastKey: string | undefined;
    let partition = 0;
    for (const message of encoded) {
      if (message.key !== lastKey) {
        lastKey = message.key;
        partition = partitionFor(message.key, this.partitionCount);
      }
      partitions[partition]!.messages.push(message);
    }
    if (!this.hasGroup(topic)) this.retain(partitions);
    for (const [name, group] of this.groups) {
      if (name.startsWith(`${topic}\u0000`)) for (const consumer of group.consumers) this.pump(topic, group, consumer);
    }
  }

  async subscribe<T>(typed: SubscribeOptions<T>): Promise<Subscription> {
    if (this.closed) throw new Error('bus is closed');
    const consumption = Consumption.of(typed, this, this.options);
    const { options } = consumption;
    const groupKey = `${options.topic}\u0000${options.group}`;
    let group = this.groups.get(groupKey);
    if (!group) {
      group = { offsets: new Map([[options.topic, this.topic(options.topic).map((p) => p.base)]]), consumers: [] };
      this.groups.set(groupKey, group);
    }
    const consumer: Consumer = { options, consumption, partitions: [], busy: new Set(), retryTimers: new Map(), closed: false };
    group.consumers.push(consumer);
    this.rebalance(options.topic, group);
    return {
      close: async () => {
        consumer.closed = true;
        this.clearRetries(consumer);
        group.consumers = group.consumers.filter((c) => c !== consumer);
        this.rebalance(options.topic, group);
        while (consumer.busy.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const group of this.groups.values()) {
      for (const consumer of group.consumers) {
        consumer.closed = true;
        this.clearRetries(consumer);
      }
    }
  }

  /** Nothing to reach: the bus is this process. */
  async ping(): Promise<void> {}

  async lag(topic: string, group: string): Promise<number> {
    const partitions = this.topic(topic);
    const offsets = this.groups.get(`${topic}\u0000${group}`)?.offsets.get(topic);
    return partitions.reduce((sum, p, i) => sum + p.base + p.messages.length - (offsets?.[i] ?? p.base), 0);
  }

  assignments(topic: string): Assignment[] {
    const owned: Assignment[] = [];
    for (const [key, group] of this.groups) {
      if (!key.startsWith(`${topic}\u0000`)) continue;
      for (const consumer of group.consumers) {
        if (!consumer.closed) owned.push({ topic, group: consumer.options.group, partitions: [...consumer.partitions] });
      }
    }
    return owned;
  }

  /** Every dead letter written since the process started: the end offsets of `<topic>.dlq`, which consuming does not lower. */
  async dlqCount(topic: string): Promise<number> {
    return (this.topics.get(dlqTopic(topic)) ?? []).reduce((sum, p) => sum + p.base + p.messages.length, 0);
  }

  async replayDlq(topic: string): Promise<number> {
    throw new Error(
      `the in-process bus keeps nothing after its process, so there are no dead letters of ${topic} to replay from another one; ` +
        'dead letters are replayed from Kafka (set KAFKA_BROKERS)',
    );
  }

  private hasGroup(topic: string): boolean {
    for (const key of this.groups.keys()) if (key.startsWith(`${topic}\u0000`)) return true;
    return false;
  }

  private retain(partitions: Partition[]): void {
    const keep = this.options.retainUnconsumed ?? 10_000;
    for (const partition of partitions) {
      const excess = partition.messages.length - keep;
      if (excess > 0) {
        partition.messages.splice(0, excess);
        partition.base += excess;
      }
    }
  }

  private topic(name: string): Partition[] {
    let partitions = this.topics.get(name);
    if (!partitions) {
      partitions = Array.from({ length: this.partitionCount }, () => ({ base: 0, messages: [] }));
      this.topics.set(name, partitions);
    }
    return partitions;
  }

  private rebalance(topic: string, group: Group): void {
    const live = group.consumers.filter((c) => !c.closed);
    for (const consumer of live) consumer.partitions = [];
    for (let p = 0; p < this.partitionCount && live.length > 0; p++) live[p % live.length]!.partitions.push(p);
    for (const consumer of live) this.pump(topic, group, consumer);
  }

  private pump(topic: string, group: Group, consumer: Consumer): void {
    for (const partition of consumer.partitions) {
      if (!consumer.busy.has(partition) && !consumer.retryTimers.has(partition)) void this.drain(topic, group, consumer, partition);
    }
  }

  private clearRetries(consumer: Consumer): void {
    for (const timer of consumer.retryTimers.values()) clearTimeout(timer);
    consumer.retryTimers.clear();
  }

  private async drain(topic: string, group: Group, consumer: Consumer, partitionIndex: number): Promise<void> {
    const partition = this.topic(topic)[partitionIndex]!;
    const offsets = group.offsets.get(topic)!;
    const maxBatch = consumer.options.maxBatchSize ?? 500;
    consumer.busy.add(partitionIndex);
    try {
      while (!consumer.closed && !this.closed && consumer.partitions.includes(partitionIndex)) {
        const first = offsets[partitionIndex]!;
        const slice = partition.messages.slice(first - partition.base, first - partition.base + maxBatch);
        if (slice.length === 0) break;
        const batch: DeliveredMessage[] = slice.map((m, i) => ({
          topic,
          partition: partitionIndex,
          offset: first + i,
          key: m.key,
          value: JSON.parse(m.json) as unknown,
        }));
        const behind = partition.messages.length - (first - partition.base) - slice.length;
        const { settled, retryInMs } = await consumer.consumption.consume(batch, { behind });
        // NOTE: the commit is absolute and never moves backwards: if the partition changed owner
        // while this batch ran, the new owner may have handled (and committed) it too.
        offsets[partitionIndex] = Math.max(offsets[partitionIndex]!, first + settled);
        this.trim(topic, partitionIndex);
        if (retryInMs !== undefined) {
          // The rest of the batch waits out its backoff; a publish does not cut the wait short.
          if (consumer.closed || this.closed) return;
          consumer.retryTimers.set(
            partitionIndex,
            setTimeout(() => {
              consumer.retryTimers.delete(partitionIndex);
              this.pump(topic, group, consumer);
            }, retryInMs),
          );
          return;
        }
      }
    } finally {
      consumer.busy.delete(partitionIndex);
    }
  }

  /** Drops messages every group has consumed, so memory stays bounded by the slowest group. */
  private trim(topic: string, partitionIndex: number): void {
    const partition = this.topic(topic)[partitionIndex]!;
    let low = partition.base + partition.messages.length;
    for (const [key, group] of this.groups) {
      if (key.startsWith(`${topic}\u0000`)) low = Math.min(low, group.offsets.get(topic)![partitionIndex]!);
    }
    if (low > partition.base) {
      partition.messages.splice(0, low - partition.base);
      partition.base = low;
    }
  }
}
