// The KPI consumer: message events from the bus into the KPI store. Events of every partition
// gather in one buffer that is flushed by size or by time (defaults: 50,000 rows or 1 s), one
// insert per flush, with a deduplication token derived from the flushed events' ids. A bus batch
// is acknowledged (its handler resolves) only after the flush holding it was acknowledged by the
// store. While the store fails, the same flush is retried with the same token after a growing
// backoff, and the handlers stay pending: the bus hands out nothing more, so memory stays bounded
// (at most one bus batch, fetchSize events, per partition) and nothing is lost. The bus checks
// each event against its contract: a poison event goes to the DLQ, never here.
import { createHash } from 'node:crypto';
import { type Bus, type DeliveredMessage, type MessageResult, ok, type Subscription } from '@herald/bus';
import { type MessageEvent, messageEventSchema, TOPICS } from '@herald/contracts';
import type { Logger } from 'pino';

const GROUP = 'kpi-consumer';

export interface EventSink {
  insertEvents(events: readonly MessageEvent[], options: { dedupToken?: string }): Promise<void>;
  /** Of these events, those not stored (ingested since `since`); lets the consumer drop redelivered ones. */
  missingEventIds?(eventIds: readonly string[], since: Date): Promise<Set<string>>;
}

/** How far back a redelivered batch is looked for in the store. */
const REDELIVERY_WINDOW_MS = 24 * 3600_000;

export interface KpiConsumerOptions {
  /** Flush when this many events are buffered (default 50,000). */
  maxRows?: number;
  /** Flush at the latest this long after the oldest buffered event occurred, or arrived if later (default 1,000 ms). */
  maxWaitMs?: number;
  /**
   * Events per bus batch and partition (default: maxRows). Events are keyed by message, so a send
   * spreads over the partitions; a batch can still fill a flush on its own (a topic of one
   * partition, or a consumer that owns them all).
   */
  fetchSize?: number;
  /**
   * Bytes a fetch may bring from one partition (default 16 MiB, ~40,000 events): on Kafka, the
   * default 1 MiB brought ~2,500 events per batch, so a backlog was inserted 2,500 rows at a time.
   */
  fetchBytes?: number;
  /** First retry delay after a failed insert; doubles up to maxRetryDelayMs (defaults 200 ms, 10 s). */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
}

export interface KpiConsumerStats {
  inserted: number;
  flushes: number;
  failures: number;
  /** Redelivered events dropped because the store already had them. */
  redelivered: number;
  /** Events waiting in the buffer or in the flush being retried. */
  buffered: number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** The token of a flush: the same events give the same token, so a retried insert counts once. */
export function dedupTokenOf(events: readonly MessageEvent[]): string {
  const hash = createHash('sha256');
  for (const event of events) hash.update(event.eventId).update(',');
  return hash.digest('hex');
}

export class KpiConsumer {
  private subscription?: Subscription;
  readonly stats: KpiConsumerStats = { inserted: 0, flushes: 0, failures: 0, redelivered: 0, buffered: 0 };
  private readonly maxRows: number;
  private readonly maxWaitMs: number;
  private readonly fetchSize: number;
  private readonly fetchBytes: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private buffer: MessageEvent[] = [];
  private waiters: Waiter[] = [];
  private timer?: NodeJS.Timeout;
  private flushDue = 0;
  /** Per topic-partition: the offset the next batch should start at. */
  private readonly nextOffsets = new Map<string, number>();
  /** Partitions whose batches are checked against the store until one brings something new. */
  private readonly verifying = new Set<string>();
  private flushing?: Promise<void>;
  /** Flushes and betweenFlushes() work, one at a time, in order. */
  private lane: Promise<unknown> = Promise.resolve();
  private stopping = false;
  private wakeRetry?: () => void;

  constructor(
    private readonly bus: Bus,
    private readonly store: EventSink,
    private readonly logger: Logger,
    options: KpiConsumerOptions = {},
  ) {
    this.maxRows = options.maxRows ?? 50_000;
    this.maxWaitMs = options.maxWaitMs ?? 1_000;
    this.fetchSize = Math.min(options.fetchSize ?? this.maxRows, this.maxRows);
    this.fetchBytes = options.fetchBytes ?? 16 * 1024 * 1024;
    this.retryDelayMs = options.retryDelayMs ?? 200;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 10_000;
  }

  async start(): Promise<void> {
    this.stopping = false;
    this.subscription = await this.bus.subscribe({
      topic: TOPICS.messageEvents,
      group: GROUP,
      schema: messageEventSchema,
      maxBatchSize: this.fetchSize,
      maxFetchBytes: this.fetchBytes,
      handler: (batch, info) => this.handle(batch, info.behind),
    });
  }

  /** Flushes what is buffered (one last attempt if the store fails), then leaves the group. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeRetry?.();
    const closing = this.subscription?.close();
    await this.flushNow().catch(() => undefined);
    await closing;
  }

  /**
   * Inserts now what is buffered and what the bus holds for this consumer, and resolves once the
   * bus has nothing left for it (its lag is 0) or after `timeoutMs`. Returns whether it caught
   * up. Compute stats calls it so that an open recorded a moment ago counts.
   */
  async catchUp(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.flushNow().catch(() => undefined);
      const lag = await this.bus.lag(TOPICS.messageEvents, GROUP);
      if (lag === 0 && this.stats.buffered === 0) return true;
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /**
   * Runs `work` when no flush of this consumer is in progress, and holds the next flush until it
   * is done: what `work` reads of the KPI store is not half-way through one of this consumer's
   * inserts (e.g. a reconciliation of the counters with the raw events).
   */
  betweenFlushes<T>(work: () => Promise<T>): Promise<T> {
    return this.serialize(work);
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.lane.then(task);
    this.lane = run.catch(() => undefined);
    return run;
  }

  /** Resolves ok once the flush holding the batch's events was acknowledged by the store. */
  private async handle(batch: DeliveredMessage<MessageEvent>[], behind = 0): Promise<MessageResult> {
    const events = batch.map((message) => message.value);
    const fresh = await this.dropRedelivered(batch, events);
    if (fresh.length === 0) return ok();
    if (this.stopping) throw new Error('the KPI consumer is stopping; the batch will be delivered again');
    const acknowledged = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.buffer.push(...fresh);
    this.stats.buffered += fresh.length;
    // Full, or more is already waiting behind this batch (a backlog: the time limit is for a
    // trickle, and waiting would only hold the partition).
    if (this.buffer.length >= this.maxRows || behind > 0) void this.flushNow();
    else this.scheduleFlush(fresh);
    await acknowledged;
    return ok();
  }

  /**
   * A batch that does not continue where this consumer left the partition is a redelivery (after
   * a crash between an insert and its commit, or a partition taken over from another consumer):
   * the events the store already has are dropped. The partition is checked batch by batch until
   * a batch brings something new — past that point nothing was inserted before.
   */
  private async dropRedelivered(batch: DeliveredMessage<MessageEvent>[], events: MessageEvent[]): Promise<MessageEvent[]> {
    const first = batch[0]!;
    const last = batch[batch.length - 1]!;
    const partition = `${first.topic}:${first.partition}`;
    const continues = this.nextOffsets.get(partition) === first.offset;
    this.nextOffsets.set(partition, last.offset + 1);
    if (continues && !this.verifying.has(partition)) return events;
    if (!this.store.missingEventIds || events.length === 0) return events;
    const missing = await this.store.missingEventIds(
      events.map((e) => e.eventId),
      new Date(Date.now() - REDELIVERY_WINDOW_MS),
    );
    if (missing.size > 0) this.verifying.delete(partition);
    else this.verifying.add(partition);
    const dropped = events.length - missing.size;
    if (dropped > 0) {
      this.stats.redelivered += dropped;
      this.logger.info({ partition, dropped }, 'dropped redelivered events the KPI store already has');
    }
    return dropped === 0 ? events : events.filter((e) => missing.has(e.eventId));
  }

  /**
   * The time limit counts from when an event occurred, not from when this batch arrived: an event
   * that waited on the bus behind a flush of its partition is flushed sooner (never later than
   * maxWaitMs after it arrived, whatever the producers' clocks say).
   */
  private scheduleFlush(events: MessageEvent[]): void {
    const now = Date.now();
    let oldest = now;
    for (const event of events) oldest = Math.min(oldest, Date.parse(event.occurredAt));
    const due = Math.max(now, oldest + this.maxWaitMs);
    if (this.timer && due >= this.flushDue) return;
    clearTimeout(this.timer);
    this.flushDue = due;
    this.timer = setTimeout(() => void this.flushNow(), due - now);
  }

  /** Flushes the buffer now; flushes (and betweenFlushes() work) run one at a time, in order. */
  private flushNow(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length === 0) return this.flushing ?? Promise.resolve();
    const events = this.buffer;
    const waiters = this.waiters;
    this.buffer = [];
    this.waiters = [];
    const flush = this.serialize(() => this.insertUntilDone(events, waiters));
    this.flushing = flush;
    void flush.catch(() => undefined).then(() => {
      if (this.flushing === flush) this.flushing = undefined;
    });
    return flush;
  }

  private async insertUntilDone(events: MessageEvent[], waiters: Waiter[]): Promise<void> {
    const dedupToken = dedupTokenOf(events);
    let delay = this.retryDelayMs;
    for (;;) {
      try {
        await this.store.insertEvents(events, { dedupToken });
        break;
      } catch (error) {
        this.stats.failures++;
        if (this.stopping) {
          this.stats.buffered -= events.length;
          for (const waiter of waiters) waiter.reject(error);
          this.logger.warn({ err: error, events: events.length }, 'KPI store insert failed while stopping; the bus delivers these events again');
          throw error;
        }
        this.logger.warn({ err: error, events: events.length, retryInMs: delay }, 'KPI store insert failed; retrying the same flush');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wakeRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeRetry = undefined;
        delay = Math.min(delay * 2, this.maxRetryDelayMs);
      }
    }
    this.stats.flushes++;
    this.stats.inserted += events.length;
    this.stats.buffered -= events.length;
    for (const waiter of waiters) waiter.resolve();
  }
}
