// The outbox relay: publishes committed outbox rows to the bus in order (a fanout row as one
// message per element), then marks them; published rows past the retention are deleted.
// A crash between publish and mark publishes those rows again on restart: consumers dedupe by
// command id (see CommandDeduplicator), the KPI consumer by event id. What was published stays
// readable (PublishedMessages) until the retention deletes it.
import type { Bus, OutgoingMessage } from '@herald/bus';
import type { Clock } from '../clock.js';
import type { Database, Queryable } from '../database.js';
import { messagesOf, type OutboxCursor, SqlOutboxRepository } from '../repositories/outbox.repository.js';

/**
 * The Prometheus counter of what relays publish, declared the same way by every process that
 * runs one (the gateway, and an engine process without a gateway): Prometheus sums them.
 */
export const OUTBOX_PUBLISHED_METRIC = {
  name: 'herald_outbox_published_total',
  help: 'Bus messages the outbox relay published, by topic (a command, or one event of a fanout row).',
  labelNames: ['topic'],
} as const;

const RELAY_LOCK = 0x4845_5232; // "HER2": one relay at a time keeps commands in order
const PRUNE_EVERY_MS = 60_000;
const PRUNE_CHUNK = 5_000;
const PRUNE_MAX_ROWS = 100_000;

export class OutboxRelay {
  private readonly outbox = new SqlOutboxRepository();
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private next?: Promise<number>;
  private looping = false;

  constructor(
    private readonly db: Database,
    private readonly bus: Bus,
    private readonly clock: Clock,
    private readonly onError: (error: unknown) => void = () => undefined,
    /** Told, after each publish, how many messages went to which topic (for OUTBOX_PUBLISHED_METRIC). */
    private readonly onPublished: (topic: string, messages: number) => void = () => undefined,
  ) {}

  /**
   * Publishes everything committed before the call; returns how many rows the drain that did it
   * published.
   */
  async drain(batchSize = 500): Promise<number> {
    // NOTE: one drain at a time in this process; the advisory lock covers other processes. A drain
    // in hand may have read the outbox before the caller's commit, so a caller that finds one
    // waits for one more after it; every caller arriving meanwhile shares that one.
    if (this.running) {
      this.next ??= this.running
        .catch(() => undefined)
        .then(() => {
          this.next = undefined;
          return this.drain(batchSize);
        });
      return this.next;
    }
    this.running = this.drainOnce(batchSize).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Drains now and then every `intervalMs` after the previous drain ended, until stop(). With
   * `retentionMs`, rows published longer ago than that are deleted once a minute (see prune).
   */
  start(intervalMs: number, options: { retentionMs?: number } = {}): void {
    this.looping = true;
    let prunedAt = 0;
    const loop = async () => {
      try {
        await this.drain();
        if (options.retentionMs !== undefined && Date.now() - prunedAt >= PRUNE_EVERY_MS) {
          prunedAt = Date.now();
          await this.prune(options.retentionMs);
        }
      } catch (error) {
        this.onError(error);
      }
      // A stop() during that drain ends the loop (the store may be closed right after it).
      if (this.looping) this.timer = setTimeout(loop, intervalMs);
    };
    this.timer = setTimeout(loop, 0);
  }

  /** Ends the loop and waits for the drains in hand; drain() can still be called after it. */
  async stop(): Promise<void> {
    this.looping = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
    await this.next?.catch(() => undefined);
  }

  /**
   * Deletes rows published more than `retentionMs` ago, PRUNE_CHUNK at a time (each chunk its
   * own statement, so other queries interleave), at most PRUNE_MAX_ROWS per call; returns how
   * many. They are kept that long for the KPI recovery and for anyone auditing what was sent.
   */
  async prune(retentionMs: number): Promise<number> {
    const before = new Date(this.clock.now().getTime() - retentionMs);
    let total = 0;
    while (total < PRUNE_MAX_ROWS) {
      const deleted = await this.outbox.prunePublished(this.db, before, PRUNE_CHUNK);
      total += deleted;
      if (deleted < PRUNE_CHUNK) break;
    }
    return total;
  }

  private async drainOnce(batchSize: number): Promise<number> {
    const published = await this.db.withAdvisoryLock(RELAY_LOCK, async () => {
      let total = 0;
      for (;;) {
        const rows = await this.outbox.unpublished(this.db, batchSize);
        if (rows.length === 0) return total;
        // Publish per topic in id order, then mark: at-least-once, never lost.
        const byTopic = new Map<string, OutgoingMessage[]>();
        for (const row of rows) {
          const messages = byTopic.get(row.topic) ?? [];
          byTopic.set(row.topic, messages);
          for (const message of messagesOf(row)) messages.push(message);
        }
        for (const [topic, messages] of byTopic) {
          await this.bus.publish(topic, messages);
          this.onPublished(topic, messages.length);
        }
        await this.outbox.markPublished(this.db, rows.map((r) => r.id), this.clock.now());
        total += rows.length;
      }
    });
    return published ?? 0;
  }
}

/** The messages of one topic the relay published, read back in order (the message events: the KPI consumer's recovery after a restart). */
export class PublishedMessages {
  private readonly outbox = new SqlOutboxRepository();

  constructor(
    private readonly db: Queryable,
    readonly topic: string,
  ) {}

  /** Messages published at or after `since`, after the cursor `after`, `limit` a page (a fanout row's one by one). */
  async publishedSince(since: Date, after: OutboxCursor | null, limit: number): Promise<(OutboxCursor & { payload: unknown })[]> {
    return this.outbox.publishedSince(this.db, this.topic, since, after, limit);
  }
}
