// The production bus: the Bus port on Apache Kafka through kafkajs. Same contract as the
// in-process bus: messages with one key keep their order (one partition per key), consumers of
// a group share the partitions, each group sees every message, and delivery is at-least-once:
// an offset is committed only once the handler's results settled its messages (consumption.ts:
// contract check, results, retries, dead letters), and a retry pauses the partition for its
// backoff and delivers the rest of the batch again.
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { TOPICS, dlqTopic } from '@herald/contracts';
import kafkajs from 'kafkajs';
import type { Admin, Consumer, ConsumerConfig, EachBatchPayload, ICustomPartitioner, KafkaMessage, LogEntry, Producer, logLevel as LogLevel } from 'kafkajs';
import type { Assignment, Bus, DeliveredMessage, OutgoingMessage, SubscribeOptions, Subscription } from './bus.js';
import { type ConsumerRetryOptions, Consumption } from './consumption.js';

const { Kafka, Partitioners, logLevel, CompressionTypes, CompressionCodecs } = kafkajs;

/** Compression of the record batches this bus produces (consumers read any of them). */
export type KafkaCompression = 'none' | 'gzip' | 'zstd';

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);
// kafkajs ships GZIP only and takes other codecs from the application. Node's zlib has Zstandard
// (no native add-on to build); its asynchronous calls run on libuv's thread pool, off the event loop.
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: (encoder: { buffer: Buffer }) => zstdCompress(encoder.buffer),
  decompress: (buffer: Buffer) => zstdDecompress(buffer),
});

const COMPRESSION_TYPES: Record<KafkaCompression, number> = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  zstd: CompressionTypes.ZSTD,
};

/** How long a process that lost the race to create topics waits for the winner's to be led. */
const TOPIC_RACE_WAIT_MS = 15_000;

/** Partitions of the topics that do not get `defaultPartitions` (keys: topic names without prefix). */
export const DEFAULT_TOPIC_PARTITIONS: Readonly<Record<string, number>> = { [TOPICS.sendBatches]: 32 };

/** The topics of DESIGN.md and their dead-letter topics: what `ensureTopics()` creates by default. */
export const HERALD_TOPICS: readonly string[] = Object.values(TOPICS).flatMap((topic) => [topic, dlqTopic(topic)]);

export interface KafkaConsumerSettings {
  /** ms without a heartbeat before the broker drops a member (kafkajs default 30,000). */
  sessionTimeout?: number;
  /** ms between heartbeats (default 3,000); a member learns of a rebalance at its next heartbeat. */
  heartbeatInterval?: number;
  /** ms the broker waits for every member to rejoin during a rebalance (default 60,000). */
  rebalanceTimeout?: number;
  /** ms a fetch waits for data on an idle partition (default 1,000; kafkajs's own is 5,000). */
  maxWaitTimeInMs?: number;
  /** Bytes fetched per partition at most (kafkajs default 1 MiB). */
  maxBytesPerPartition?: number;
}

export interface KafkaBusOptions extends ConsumerRetryOptions {
  /** Bootstrap brokers, `host:port`. */
  brokers: string[];
  /** kafkajs client id, seen in the broker's logs and quotas (default 'herald'). */
  clientId?: string;
  /**
   * Prepended to every topic name and consumer group id on the broker, DLQ topics included:
   * environments share a cluster under different prefixes. Handlers, lag() and assignments()
   * use the names without it. Default ''.
   */
  topicPrefix?: string;
  /** Partitions of a topic created by this bus, by topic name without prefix (see DEFAULT_TOPIC_PARTITIONS). */
  partitions?: Record<string, number>;
  /** Partitions of a created topic not named in `partitions` (default 12). */
  defaultPartitions?: number;
  /** Replication factor of created topics (default 1; 3 on a production cluster). */
  replicationFactor?: number;
  /**
   * Handler calls in flight at once per subscription, each on its own partition (kafkajs
   * partitionsConsumedConcurrently): partitions progress independently. Default 4.
   */
  maxBatchesInFlight?: number;
  /**
   * Retries of a failed send before publish() rejects (default 10: about two minutes with
   * kafkajs's exponential backoff capped at 30 s, enough to ride out a broker restart).
   */
  publishRetries?: number;
  /** Compression of produced record batches (default 'none'). */
  compression?: KafkaCompression;
  consumer?: KafkaConsumerSettings;
  /** kafkajs log level (default 'warn'). */
  logLevel?: 'nothing' | 'error' | 'warn' | 'info' | 'debug';
}

interface ConsumerState {
  topic: string;
  group: string;
  consumer: Consumer;
  /** Partitions this subscription owns right now (from its last group join). */
  partitions: number[];
  retryTimers: Set<NodeJS.Timeout>;
  closing?: Promise<void>;
}

const LOG_LEVELS: Record<NonNullable<KafkaBusOptions['logLevel']>, LogLevel> = {
  nothing: logLevel.NOTHING,
  error: logLevel.ERROR,
  warn: logLevel.WARN,
  info: logLevel.INFO,
  debug: logLevel.DEBUG,
};

/**
 * Error responses kafkajs logs at ERROR level although they are routine: a rebalance, a group
 * coordinator still loading after a broker start, a partition whose leader is still being
 * elected (a topic just created, a broker restarted). kafkajs refreshes its metadata and retries
 * them (an error that persists surfaces as the call's own failure); they are logged here only at
 * the 'info' level.
 */
const ROUTINE_ERRORS = [
  'The group is rebalancing',
  'The coordinator is loading',
  'The group coordinator is not available',
  'This is not the correct coordinator',
  'This server is not the leader for that topic-partition',
  'There is no leader for this topic-partition as we are in the middle of a leadership election',
];

/** kafkajs log lines on stderr, one JSON object each. */
const logToStderr = (configured: LogLevel) => (entry: LogEntry) => {
  const { message, ...extra } = entry.log;
  // A deliberate choice, see publishRetries.
  if (message.startsWith('Limiting retries for the idempotent producer')) return;
  const error = typeof extra.error === 'string' ? extra.error : '';
  const routine = entry.level <= logLevel.WARN && ROUTINE_ERRORS.some((text) => error.startsWith(text));
  if (routine && configured < logLevel.INFO) return;
  const level = routine ? 'info' : entry.level === logLevel.ERROR ? 'error' : entry.level === logLevel.WARN ? 'warn' : 'info';
  process.stderr.write(`${JSON.stringify({ level, logger: 'kafkajs', namespace: entry.namespace, msg: message, ...extra })}\n`);
};

/**
 * kafkajs's DefaultPartitioner (murmur2 of the key, as the Java client: a key lands on the same
 * partition whichever client wrote it), asked once per run of messages with one key: a publish
 * may hold one key's messages in a row (a delivery's commands, a message's events), and kafkajs
 * calls the partitioner for every message, which hashed the key and filtered the partition list
 * each time.
 */
export const keyRunPartitioner: ICustomPartitioner = () => {
  const partition = Partitioners.DefaultPartitioner();
  let lastKey: string | undefined;
  let lastPartitionCount = -1;
  let lastPartition = 0;
  return (args) => {
    const { key, partition: explicit } = args.message;
    if (typeof key !== 'string' || (explicit !== undefined && explicit !== null)) return partition(args);
    if (key !== lastKey || args.partitionMetadata.length !== lastPartitionCount) {
      lastPartition = partition(args);
      lastKey = key;
      lastPartitionCount = args.partitionMetadata.length;
    }
    return lastPartition;
  };
};

/** kafkajs's default limit of one fetch response over all partitions. */
const KAFKAJS_MAX_BYTES = 10 * 1024 * 1024;

/**
 * A consumer's fetch limits: per partition as asked (kafkajs default 1 MiB when not), and a
 * whole response large enough for one such partition (a broker always returns at least one
 * record batch, but kafkajs would otherwise cut the response at 10 MiB).
 */
function fetchSizes(perPartition: number | undefined): { maxBytesPerPartition?: number; maxBytes?: number } {
  if (perPartition === undefined) return {};
  return { maxBytesPerPartition: perPartition, maxBytes: Math.max(KAFKAJS_MAX_BYTES, perPartition) };
}

function decode(message: KafkaMessage): unknown {
  if (message.value === null) return null;
  const text = message.value.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Not written by a Herald producer: hand over the text, so the consumer's schema check
    // rejects it (and dead-letters it with the reason) instead of the partition stalling here.
    return text;
  }
}

export class KafkaBus implements Bus {
  readonly sharedAcrossProcesses = true;
  private readonly kafka: InstanceType<typeof Kafka>;
  private readonly prefix: string;
  private readonly consumers = new Set<ConsumerState>();
  /** Topics known to exist (or being created), by name without prefix. */
  private readonly topicsReady = new Map<string, Promise<void>>();
  private producerReady?: Promise<Producer>;
  private adminReady?: Promise<Admin>;
  private closed = false;
  private readonly heartbeatInterval: number;

  constructor(private readonly options: KafkaBusOptions) {
    this.heartbeatInterval = options.consumer?.heartbeatInterval ?? 3_000;
    if (options.brokers.length === 0) throw new Error('KafkaBus needs at least one broker');
    this.prefix = options.topicPrefix ?? '';
    this.kafka = new Kafka({
      clientId: options.clientId ?? 'herald',
      brokers: options.brokers,
      logLevel: LOG_LEVELS[options.logLevel ?? 'warn'],
      logCreator: logToStderr,
    });
  }

  /** The consumers' session timeout and heartbeat interval, in ms. */
  get consumerTimeouts(): { sessionTimeout: number; heartbeatInterval: number } {
    return { sessionTimeout: this.options.consumer?.sessionTimeout ?? 30_000, heartbeatInterval: this.heartbeatInterval };
  }

  /** The topic's name on the broker. */
  physicalTopic(topic: string): string {
    return `${this.prefix}${topic}`;
  }

  /**
   * The consumer group's id on the broker. A group of the port belongs to one topic (as on the
   * in-process bus), so the id names both, under the prefix: `<prefix><group>.<topic>`.
   */
  physicalGroup(topic: string, group: string): string {
    return `${this.prefix}${group}.${topic}`;
  }

  /** Partitions a topic gets when this bus creates it. */
  partitionsFor(topic: string): number {
    return this.options.partitions?.[topic] ?? DEFAULT_TOPIC_PARTITIONS[topic] ?? this.options.defaultPartitions ?? 12;
  }

  /**
   * Creates the topics (names without prefix) that do not exist yet, and waits for their
   * leaders. publish() and subscribe() do this for their topic on first use; call it at start
   * (default: every topic of DESIGN.md and its DLQ) to fail early and keep first sends fast.
   */
  async ensureTopics(topics: readonly string[] = HERALD_TOPICS): Promise<void> {
    const missing = [...new Set(topics)].filter((topic) => !this.topicsReady.has(topic));
    if (missing.length > 0) {
      const created = this.createTopics(missing);
      for (const topic of missing) this.topicsReady.set(topic, created);
      created.catch(() => {
        for (const topic of missing) if (this.topicsReady.get(topic) === created) this.topicsReady.delete(topic);
      });
    }
    await Promise.all(topics.map((topic) => this.topicsReady.get(topic)));
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) throw new Error('bus is closed');
    // Serialize everything first: a value that cannot be serialized fails the whole publish.
    const encoded = messages.map((message) => {
      const json = JSON.stringify(message.value);
      if (json === undefined) throw new TypeError(`message for key '${message.key}' has no JSON value`);
      return { key: message.key, value: json };
    });
    if (encoded.length === 0) return;
    await this.ensureTopics([topic]);
    const producer = await this.producer();
    // One send per chunk of at most MAX_SEND_BYTES (in order): kafkajs groups a send's messages
    // by partition leader, one produce request per broker, and a broker refuses a record batch
    // over message.max.bytes (1 MiB by default) — messages with one key share one batch.
    // acks -1: written to every in-sync replica before we return.
    for (const chunk of chunksOfBytes(encoded, MAX_SEND_BYTES)) {
      await producer.send({ topic: this.physicalTopic(topic), messages: chunk, acks: -1, compression: COMPRESSION_TYPES[this.options.compression ?? 'none'] });
    }
  }

  async subscribe<T>(typed: SubscribeOptions<T>): Promise<Subscription> {
    if (this.closed) throw new Error('bus is closed');
    const consumption = Consumption.of(typed, this, this.options);
    const { options } = consumption;
    await this.ensureTopics([options.topic]);
    const consumer = this.newConsumer(options.topic, options.group, { ...fetchSizes(options.maxFetchBytes ?? this.options.consumer?.maxBytesPerPartition) });
    const state: ConsumerState = { topic: options.topic, group: options.group, consumer, partitions: [], retryTimers: new Set() };
    const physical = this.physicalTopic(options.topic);
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      state.partitions = [...(payload.memberAssignment[physical] ?? [])].sort((a, b) => a - b);
    });
    const forget = () => {
      state.partitions = [];
    };
    consumer.on(consumer.events.REBALANCING, forget);
    consumer.on(consumer.events.STOP, forget);
    consumer.on(consumer.events.CRASH, forget);

    await consumer.connect();
    try {
      // A group without committed offsets starts at the oldest retained message, as a late
      // group does on the in-process bus.
      await consumer.subscribe({ topics: [physical], fromBeginning: true });
      this.consumers.add(state);
      await consumer.run({
        // Offsets are resolved by eachBatch below only once the handler's results settled them,
        // and committed right after each chunk (autoCommitThreshold 1) and at the end of each batch.
        autoCommit: true,
        autoCommitThreshold: 1,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.options.maxBatchesInFlight ?? 4,
        eachBatch: (payload) => this.handleBatch(state, options, consumption, payload),
      });
    } catch (error) {
      this.consumers.delete(state);
      await consumer.disconnect().catch(() => undefined);
      throw error;
    }
    return { close: () => this.closeConsumer(state) };
  }

  /** Closes every subscription gracefully (see Subscription.close), then the producer and admin clients. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.consumers].map((state) => this.closeConsumer(state)));
    const producer = this.producerReady;
    const admin = this.adminReady;
    this.producerReady = undefined;
    this.adminReady = undefined;
    await Promise.all([
      producer?.then((p) => p.disconnect()).catch(() => undefined),
      admin?.then((a) => a.disconnect()).catch(() => undefined),
    ]);
  }

  /** Asks a broker for the cluster's metadata: rejects while no broker answers (kafkajs retries first). */
  async ping(): Promise<void> {
    await (await this.admin()).describeCluster();
  }

  /** The end offset (the next offset to be written) of each partition of `topic`. */
  async endOffsets(topic: string): Promise<Map<number, number>> {
    const admin = await this.admin();
    const ends = await admin.fetchTopicOffsets(this.physicalTopic(topic));
    return new Map(ends.map((p) => [p.partition, Number(p.high)]));
  }

  /** Committed offset (or the oldest retained, for a group that never committed) to the end, over all partitions. */
  lag(topic: string, group: string): Promise<number> {
    return this.lagUntil(topic, group);
  }

  /** Partitions the subscriptions of this process own on `topic` right now (from their last group join). */
  assignments(topic: string): Assignment[] {
    return [...this.consumers]
      .filter((state) => state.topic === topic)
      .map((state) => ({ topic: state.topic, group: state.group, partitions: [...state.partitions] }));
  }

  /** The dead letters the broker retains on `<topic>.dlq` (0 while that topic does not exist). */
  async dlqCount(topic: string): Promise<number> {
    const dlq = dlqTopic(topic);
    if (!(await this.exists(dlq))) return 0;
    const offsets = await (await this.admin()).fetchTopicOffsets(this.physicalTopic(dlq));
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  }

  /**
   * Replays what `<topic>.dlq` holds now, as consumer group `dlq-replay`: each dead letter's
   * original value is published to `topic` under its original key, then its offset committed, one
   * at a time; a partition is paused (not acknowledged) at the end offset it had when the replay
   * began, or once `limit` messages are replayed, so what arrives meanwhile waits for the next
   * replay. A message of the DLQ that is not a dead letter is replayed as it is.
   */
  async replayDlq(topic: string, options: { limit?: number } = {}): Promise<number> {
    if (this.closed) throw new Error('bus is closed');
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const dlq = dlqTopic(topic);
    const group = 'dlq-replay';
    await this.ensureTopics([topic, dlq]);
    const ends = await this.endOffsets(dlq);
    if (limit <= 0 || (await this.lagUntil(dlq, group, ends)) === 0) return 0;
    let replayed = 0;
    const consumer = this.newConsumer(dlq, group, {});
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [this.physicalTopic(dlq)], fromBeginning: true });
      await consumer.run({
        autoCommit: true,
        autoCommitThreshold: 1,
        eachBatchAutoResolve: false,
        // One partition at a time: the limit is never overshot.
        partitionsConsumedConcurrently: 1,
        eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary, heartbeat, pause, isRunning, isStale }) => {
          for (const message of batch.messages) {
            if (!isRunning() || isStale()) return;
            if (Number(message.offset) >= (ends.get(batch.partition) ?? 0) || replayed >= limit) {
              pause();
              return;
            }
            const entry = decode(message) as { key?: unknown; value?: unknown } | null;
            const letter = typeof entry === 'object' && entry !== null && 'value' in entry;
            const key = letter && typeof entry.key === 'string' ? entry.key : (message.key?.toString('utf8') ?? '');
            await this.publish(topic, [{ key, value: letter ? entry.value : entry }]);
            replayed++;
            resolveOffset(message.offset);
            await commitOffsetsIfNecessary();
            await heartbeat();
          }
        },
      });
      while (replayed < limit && (await this.lagUntil(dlq, group, ends)) > 0) await sleep(250);
    } finally {
      await consumer.disconnect();
    }
    return replayed;
  }

  /**
   * Messages of `topic` not yet committed by `group`: committed offset (or the oldest retained)
   * to the end, over all partitions; with `until`, only up to those end offsets (per partition).
   */
  private async lagUntil(topic: string, group: string, until?: Map<number, number>): Promise<number> {
    const admin = await this.admin();
    const physical = this.physicalTopic(topic);
    const [ends, committed] = await Promise.all([
      admin.fetchTopicOffsets(physical),
      admin.fetchOffsets({ groupId: this.physicalGroup(topic, group), topics: [physical] }),
    ]);
    const committedByPartition = new Map<number, number>();
    for (const p of committed.find((t) => t.topic === physical)?.partitions ?? []) {
      committedByPartition.set(p.partition, Number(p.offset));
    }
    let lag = 0;
    for (const p of ends) {
      const high = Math.min(Number(p.high), until?.get(p.partition) ?? Number.POSITIVE_INFINITY);
      const low = Number(p.low);
      const at = committedByPartition.get(p.partition) ?? -1;
      lag += Math.max(0, high - (at >= 0 ? Math.max(at, low) : low));
    }
    return lag;
  }

  /** Whether `topic` (name without prefix) exists on the broker; a topic this bus made sure of is not asked about again. */
  private async exists(topic: string): Promise<boolean> {
    if (this.topicsReady.has(topic)) return true;
    return (await (await this.admin()).listTopics()).includes(this.physicalTopic(topic));
  }

  /** A kafkajs consumer in the port's group `group` of `topic`, with this bus's timeouts. */
  private newConsumer(topic: string, group: string, fetch: Pick<ConsumerConfig, 'maxBytesPerPartition' | 'maxBytes'>): Consumer {
    const settings = this.options.consumer ?? {};
    return this.kafka.consumer({
      groupId: this.physicalGroup(topic, group),
      sessionTimeout: this.consumerTimeouts.sessionTimeout,
      heartbeatInterval: this.heartbeatInterval,
      rebalanceTimeout: settings.rebalanceTimeout ?? 60_000,
      maxWaitTimeInMs: settings.maxWaitTimeInMs ?? 1_000,
      ...fetch,
      allowAutoTopicCreation: false,
    });
  }

  private async handleBatch(state: ConsumerState, options: SubscribeOptions<unknown>, consumption: Consumption<unknown>, payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale, pause } = payload;
    const maxBatch = options.maxBatchSize ?? 500;
    for (let start = 0; start < batch.messages.length; start += maxBatch) {
      // Stop between chunks when closing (the rest is fetched again by whoever owns the
      // partition next) or when a seek made this batch stale.
      if (!isRunning() || isStale()) return;
      const chunk = batch.messages.slice(start, start + maxBatch);
      const delivered: DeliveredMessage[] = chunk.map((message) => ({
        topic: options.topic,
        partition: batch.partition,
        offset: Number(message.offset),
        key: message.key?.toString('utf8') ?? '',
        value: decode(message),
      }));
      // Heartbeats while the handler runs too, so that a slow chunk (a send batch under a low
      // throughput limit) does not cost the partitions: kafkajs only heartbeats between calls.
      const beating = setInterval(() => void heartbeat().catch(() => undefined), this.heartbeatInterval);
      let settlement: { settled: number; retryInMs?: number };
      try {
        // The partition's end when this batch was fetched, after this chunk's last message.
        const behind = Math.max(0, Number(batch.highWatermark) - Number(chunk[chunk.length - 1]!.offset) - 1);
        settlement = await consumption.consume(delivered, { behind });
      } finally {
        clearInterval(beating);
      }
      if (settlement.settled > 0) {
        resolveOffset(chunk[settlement.settled - 1]!.offset);
        await commitOffsetsIfNecessary();
      }
      if (settlement.retryInMs !== undefined) {
        // Closing: the next owner of the partition fetches the rest from the committed offset.
        if (state.closing) return;
        // Pause the partition, and fetch again from the first message not settled once the
        // backoff is over. The other partitions keep flowing.
        const resume = pause();
        state.consumer.seek({ topic: batch.topic, partition: batch.partition, offset: chunk[settlement.settled]!.offset });
        const timer = setTimeout(() => {
          state.retryTimers.delete(timer);
          resume();
        }, settlement.retryInMs);
        state.retryTimers.add(timer);
        return;
      }
      await heartbeat();
    }
  }

  /**
   * Graceful: stop fetching, let the handler in hand finish (its offsets are committed), leave
   * the group (its partitions go to the other members at once) and disconnect.
   */
  private closeConsumer(state: ConsumerState): Promise<void> {
    state.closing ??= (async () => {
      for (const timer of state.retryTimers) clearTimeout(timer);
      state.retryTimers.clear();
      try {
        await state.consumer.disconnect();
      } finally {
        state.partitions = [];
        this.consumers.delete(state);
      }
    })();
    return state.closing;
  }

  private async createTopics(topics: string[]): Promise<void> {
    const admin = await this.admin();
    const present = new Set(await admin.listTopics());
    const missing = topics.filter((topic) => !present.has(this.physicalTopic(topic)));
    if (missing.length === 0) return;
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({
          topic: this.physicalTopic(topic),
          numPartitions: this.partitionsFor(topic),
          replicationFactor: this.options.replicationFactor ?? 1,
        })),
      });
    } catch (error) {
      // Another process (engines of one platform start together) may be creating them at the same
      // moment: then this one loses the race (TOPIC_ALREADY_EXISTS, or UNKNOWN_TOPIC_OR_PARTITION
      // while waiting for leaders the broker has not announced yet). Fine once all exist with
      // leaders; wait for that a while before calling it a failure.
      if (!(await this.topicsLed(admin, missing.map((topic) => this.physicalTopic(topic)), TOPIC_RACE_WAIT_MS))) throw error;
    }
  }

  /** Whether every topic exists and each partition has a leader, polled until the deadline. */
  private async topicsLed(admin: Admin, topics: string[], waitMs: number): Promise<boolean> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const present = new Set(await admin.listTopics());
        if (topics.every((topic) => present.has(topic))) {
          const { topics: metadata } = await admin.fetchTopicMetadata({ topics });
          if (metadata.every((topic) => topic.partitions.length > 0 && topic.partitions.every((p) => p.leader >= 0))) return true;
        }
      } catch {
        // Metadata not propagated yet: ask again.
      }
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  private producer(): Promise<Producer> {
    this.producerReady ??= (async () => {
      const producer = this.kafka.producer({
        // Idempotent: a send retried after a lost acknowledgement is not written twice, and
        // kafkajs then sends one request at a time per broker, so retries keep the order.
        idempotent: true,
        allowAutoTopicCreation: false,
        createPartitioner: keyRunPartitioner,
        retry: { retries: this.options.publishRetries ?? 10, initialRetryTime: 300, maxRetryTime: 30_000 },
      });
      await producer.connect();
      return producer;
    })();
    const ready = this.producerReady;
    ready.catch(() => {
      if (this.producerReady === ready) this.producerReady = undefined;
    });
    return ready;
  }

  private admin(): Promise<Admin> {
    this.adminReady ??= (async () => {
      const admin = this.kafka.admin();
      await admin.connect();
      return admin;
    })();
    const ready = this.adminReady;
    ready.catch(() => {
      if (this.adminReady === ready) this.adminReady = undefined;
    });
    return ready;
  }
}

/** Under the broker's default message.max.bytes (1 MiB), with room for record overheads. */
const MAX_SEND_BYTES = 768 * 1024;

/** Consecutive chunks whose keys and values add up to at most `max` bytes (a bigger message goes alone). */
export function chunksOfBytes<T extends { key: string; value: string }>(messages: T[], max: number): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let size = 0;
  for (const message of messages) {
    const bytes = Buffer.byteLength(message.value) + Buffer.byteLength(message.key) + 64;
    if (chunk.length > 0 && size + bytes > max) {
      chunks.push(chunk);
      chunk = [];
      size = 0;
    }
    chunk.push(message);
    size += bytes;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
