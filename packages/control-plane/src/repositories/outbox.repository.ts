// The transactional outbox: commands written in the same transaction as the state change that
// causes them, published later by the relay.
import type { Queryable } from '../database.js';

export interface OutboxRow {
  id: number;
  commandId: string;
  topic: string;
  key: string;
  payload: unknown;
}

export class OutboxRepository {
  async enqueue(tx: Queryable, row: Omit<OutboxRow, 'id'>): Promise<void> {
    await tx.query('INSERT INTO outbox (command_id, topic, key, payload) VALUES ($1, $2, $3, $4)', [
      row.commandId,
      row.topic,
      row.key,
      JSON.stringify(row.payload),
    ]);
  }

  /** Many rows in one statement (the engine's message events of a batch). */
  async enqueueMany(tx: Queryable, rows: Omit<OutboxRow, 'id'>[]): Promise<void> {
    if (rows.length === 0) return;
    await tx.query(
      'INSERT INTO outbox (command_id, topic, key, payload) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])',
      [rows.map((r) => r.commandId), rows.map((r) => r.topic), rows.map((r) => r.key), rows.map((r) => JSON.stringify(r.payload))],
    );
  }

  async unpublished(db: Queryable, limit: number): Promise<OutboxRow[]> {
    const rows = await db.query<{ id: number; command_id: string; topic: string; key: string; payload: unknown }>(
      'SELECT id, command_id, topic, key, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1',
      [limit],
    );
    return rows.map((r) => ({ id: r.id, commandId: r.command_id, topic: r.topic, key: r.key, payload: r.payload }));
  }

  async markPublished(db: Queryable, ids: number[], at: Date): Promise<void> {
    await db.query('UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])', [ids, at]);
  }

  /**
   * Rows of `topic` published at or after `since`, in id order, after `afterId` (keyset paging).
   * The relay publishes in id order, so they are the rows from the first one published since
   * then: found by a binary search over ids (no index on published_at to maintain per row) for
   * the first page; the next pages (afterId > 0, an id already past it) continue after afterId.
   */
  async publishedSince(db: Queryable, topic: string, since: Date, afterId: number, limit: number): Promise<{ id: number; payload: unknown }[]> {
    const start = afterId > 0 ? afterId + 1 : await this.firstPublishedSince(db, since);
    const rows = await db.query<{ id: string | number; payload: unknown }>(
      `SELECT id, payload FROM outbox
        WHERE id >= $2 AND topic = $1 AND published_at IS NOT NULL
        ORDER BY id LIMIT $3`,
      [topic, start, limit],
    );
    return rows.map((r) => ({ id: Number(r.id), payload: r.payload }));
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

  /** Records that `consumer` applied `commandId`; false when it already had (a redelivery). */
  async claimCommand(tx: Queryable, consumer: string, commandId: string): Promise<boolean> {
    const rows = await tx.query(
      'INSERT INTO processed_commands (consumer, command_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
      [consumer, commandId],
    );
    return rows.length > 0;
  }
}
