// The embedded bus: topics split into partitions by key hash, consumer groups with their own
// offsets, batches handed to handlers, at-least-once (a failing handler sees its batch again
// after a backoff). It lives in one process: durability across restarts comes from the outbox
// and the ledger, not from the bus.
import { createHash } from 'node:crypto';
import type { Bus, DeliveredMessage, OutgoingMessage, SubscribeOptions, Subscription } from './bus.js';

interface Partition {
  /** Offset of messages[0]: consumed messages are trimmed from the front. */
  base: number;
  /** Values are kept serialized: every delivery parses its own copy, as across a broker. */
  messages: { key: string; json: string }[];
}

interface Consumer {
  options: SubscribeOptions;
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

export interface InProcessBusOptions {
  partitions?: number;
  /**
   * Messages kept per partition of a topic no group consumes yet (a consumer that subscribes
   * late still sees them). Default 10,000: a topic nobody reads cannot grow without bound.
   */
  retainUnconsumed?: number;
  retryBackoffMs?: number;
  onHandlerError?: (error: unknown, topic: string, group: string) => void;
}

export function partitionFor(key: string, partitions: number): number {
  return createHash('md5').update(key).digest().readUInt32BE(0) % partitions;
}

export class InProcessBus implements Bus {
  readonly sharedAcrossProcesses = false;
  private readonly topics = new Map<string, Partition[]>();
  private readonly groups = new Map<string, Group>();
  private readonly partitionCount: number;
  private readonly retryBackoffMs: number;
  private closed = false;

  constructor(private readonly options: InProcessBusOptions = {}) {
    this.partitionCount = options.partitions ?? 12;
    this.retryBackoffMs = options.retryBackoffMs ?? 500;
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
    for (const message of encoded) partitions[partitionFor(message.key, this.partitionCount)]!.messages.push(message);
    if (!this.hasGroup(topic)) this.retain(partitions);
    for (const [name, group] of this.groups) {
      if (name.startsWith(`${topic}\u0000`)) for (const consumer of group.consumers) this.pump(topic, group, consumer);
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    const groupKey = `${options.topic}\u0000${options.group}`;
    let group = this.groups.get(groupKey);
    if (!group) {
      group = { offsets: new Map([[options.topic, this.topic(options.topic).map((p) => p.base)]]), consumers: [] };
      this.groups.set(groupKey, group);
    }
    const consumer: Consumer = { options, partitions: [], busy: new Set(), retryTimers: new Map(), closed: false };
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

  /** Messages not yet consumed by `group` on `topic` (its lag). */
  lag(topic: string, group: string): number {
    const partitions = this.topic(topic);
    const offsets = this.groups.get(`${topic}\u0000${group}`)?.offsets.get(topic);
    return partitions.reduce((sum, p, i) => sum + p.base + p.messages.length - (offsets?.[i] ?? p.base), 0);
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
        try {
          const behind = partition.messages.length - (first - partition.base) - slice.length;
          await consumer.options.handler(batch, { behind });
        } catch (error) {
          this.options.onHandlerError?.(error, topic, consumer.options.group);
          consumer.retryTimers.set(
            partitionIndex,
            setTimeout(() => {
              consumer.retryTimers.delete(partitionIndex);
              this.pump(topic, group, consumer);
            }, this.retryBackoffMs),
          );
          return;
        }
        // NOTE: the commit is absolute and never moves backwards: if the partition changed owner
        // while this batch ran, the new owner may have handled (and committed) it too.
        offsets[partitionIndex] = Math.max(offsets[partitionIndex]!, first + slice.length);
        this.trim(topic, partitionIndex);
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
