// The transactional outbox: commands written in the same transaction as the state change that
// causes them, published later by the relay.
import { type MessageEvent, messageEventKey, TOPICS } from '@herald/contracts';
import type { Queryable } from '../database.js';

export interface OutboxRow {
  id: number;
  commandId: string;
  topic: string;
  key: string;
  payload: unknown;
  /** The payload is an array of messages, each published on its own (see enqueueFanout). */
  fanout?: boolean;
}

/** Where a reader of {@link OutboxRepository.publishedSince} is: a row, and a message in it (from 1). */
export interface OutboxCursor {
  id: number;
  idx: number;
}

/**
 * Topics whose fanout rows publish each message under a key of its own, derived from the message,
 * instead of the row's key: a batch's message events, each keyed by its message id, so a batch
 * spreads over the topic's partitions while each message's events stay on one.
 */
const FANOUT_KEY_OF: Readonly<Record<string, (message: unknown) => string>> = {
  [TOPICS.messageEvents]: (event) => messageEventKey(event as MessageEvent),
};

/** The bus messages of an outbox row, in order: its payload, or each element of a fanout row's. */
export function messagesOf(row: Pick<OutboxRow, 'topic' | 'key' | 'payload' | 'fanout'>): { key: string; value: unknown }[] {
  if (!row.fanout) return [{ key: row.key, value: row.payload }];
  const keyOf = FANOUT_KEY_OF[row.topic];
  return (row.payload as unknown[]).map((value) => ({ key: keyOf ? keyOf(value) : row.key, value }));
}

export interface OutboxRepository {
  enqueue(tx: Queryable, row: Omit<OutboxRow, 'id' | 'fanout'>): Promise<void>;
  /**
   * Many messages of one topic in one row (the engine's message events of a batch): the relay
   * publishes each as its own bus message, in order, under the row's key, or under each
   * message's own key on a topic that derives it (message events: their message id, see
   * FANOUT_KEY_OF). One row costs the store one tuple and one index entry per batch instead of
   * per message.
   */
  enqueueFanout(tx: Queryable, row: { commandId: string; topic: string; key: string; payloads: unknown[] }): Promise<void>;
  /**
   * The oldest unpublished rows, at most `limit`, cut once they hold `maxMessages` bus messages
   * (always at least one row).
   */
  unpublished(db: Queryable, limit: number, maxMessages?: number): Promise<OutboxRow[]>;
  markPublished(db: Queryable, ids: number[], at: Date): Promise<void>;
  /**
   * Messages of `topic` published at or after `since`, in order, after the cursor `after`
   * (keyset paging, `limit` messages a page; a fanout row's messages one by one). The relay
   * publishes in id order, so they are the rows from the first one published since then: found
   * by a binary search over ids (no index on published_at to maintain per row) for the first
   * page; the next pages continue after the cursor.
   */
  publishedSince(db: Queryable, topic: string, since: Date, after: OutboxCursor | null, limit: number): Promise<(OutboxCursor & { payload: unknown })[]>;
  /**
   * Deletes up to `limit` rows published before `before`, oldest first; returns how many. The
   * rows are found from the front of the table by id (the relay publishes in id order); a row
   * not published, or published since, is never deleted.
   */
  prunePublished(db: Queryable, before: Date, limit: number): Promise<number>;
  /** Records that `consumer` applied `commandId`; false when it already had (a redelivery). */
  claimCommand(tx: Queryable, consumer: string, commandId: string): Promise<boolean>;
}

export class SqlOutboxRepository implements OutboxRepository {
  async enqueue(tx: Queryable, row: Omit<OutboxRow, 'id' | 'fanout'>): Promise<void> {
    await tx.query('INSERT INTO outbox (command_id, topic, key, payload) VALUES ($1, $2, $3, $4)', [
      row.commandId,
      row.topic,
      row.key,
      JSON.stringify(row.payload),
    ]);
  }

  async enqueueFanout(tx: Queryable, row: { commandId: string; topic: string; key: string; payloads: unknown[] }): Promise<void> {
    if (row.payloads.length === 0) return;
    await tx.query('INSERT INTO outbox (command_id, topic, key, payload, fanout, messages) VALUES ($1, $2, $3, $4, true, $5)', [
      row.commandId,
      row.topic,
      row.key,
      JSON.stringify(row.payloads),
      row.payloads.length,
    ]);
  }

  async unpublished(db: Queryable, limit: number, maxMessages = 20_000): Promise<OutboxRow[]> {
    // NOTE: rows past the budget are filtered after the window sum, so their payloads are never read.
    const rows = await db.query<{ id: number; command_id: string; topic: string; key: string; payload: unknown; fanout: boolean }>(
      `SELECT id, command_id, topic, key, payload, fanout FROM (
         SELECT id, command_id, topic, key, payload, fanout, messages, sum(messages) OVER (ORDER BY id) AS upto
           FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1) AS next
        WHERE upto - messages < $2 ORDER BY id`,
      [limit, maxMessages],
    );
    return rows.map((r) => ({ id: Number(r.id), commandId: r.command_id, topic: r.topic, key: r.key, payload: r.payload, fanout: r.fanout }));
  }

  async markPublished(db: Queryable, ids: number[], at: Date): Promise<void> {
    await db.query('UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])', [ids, at]);
  }

  async publishedSince(db: Queryable, topic: string, since: Date, after: OutboxCursor | null, limit: number): Promise<(OutboxCursor & { payload: unknown })[]> {
    const cursor = after ?? { id: await this.firstPublishedSince(db, since), idx: 0 };
    const rows = await db.query<{ id: string | number; idx: number; payload: unknown }>(
      `SELECT id, idx, payload FROM outbox_messages
        WHERE id >= $2 AND (id > $2 OR idx > $3) AND topic = $1 AND published_at IS NOT NULL
        ORDER BY id, idx LIMIT $4`,
      [topic, cursor.id, cursor.idx, limit],
    );
    return rows.map((r) => ({ id: Number(r.id), idx: r.idx, payload: r.payload }));
  }

  async prunePublished(db: Queryable, before: Date, limit: number): Promise<number> {
    const end = await this.firstPublishedSince(db, before);
    const [row] = await db.query<{ n: number }>(
      `WITH gone AS (
         DELETE FROM outbox WHERE id IN (
           SELECT id FROM outbox WHERE id < $1 AND published_at < $2 ORDER BY id LIMIT $3)
         RETURNING 1)
       SELECT count(*)::int AS n FROM gone`,
      [end, before, limit],
    );
    return row?.n ?? 0;
  }

  /** The smallest id whose row was published at or after `since` (or is not published yet). */
  private async firstPublishedSince(db: Queryable, since: Date): Promise<number> {
    const [bounds] = await db.query<{ lo: string | null; hi: string | null }>('SELECT min(id) AS lo, max(id) AS hi FROM outbox');
    if (!bounds?.lo || !bounds.hi) return 0;
    let lo = Number(bounds.lo);
    let hi = Number(bounds.hi) + 1; // answer in [lo, hi]; hi = past the end
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const [row] = await db.query<{ id: string; published_at: Date | null }>(
        'SELECT id, published_at FROM outbox WHERE id >= $1 ORDER BY id LIMIT 1',
        [mid],
      );
      if (!row) {
        hi = mid;
      } else if (row.published_at === null || row.published_at >= since) {
        hi = Math.min(mid, Number(row.id));
      } else {
        lo = Number(row.id) + 1;
      }
    }
    return lo;
  }

  async claimCommand(tx: Queryable, consumer: string, commandId: string): Promise<boolean> {
    const rows = await tx.query(
      'INSERT INTO processed_commands (consumer, command_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
      [consumer, commandId],
    );
    return rows.length > 0;
  }
}
