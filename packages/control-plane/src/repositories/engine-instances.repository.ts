// Live engine processes and the ledger rows they hold (services/engine-registry.service.ts says
// when an engine is late or dead).
import type { Queryable } from '../database.js';
import { unsentStatusSql } from './send-queue.repository.js';

/** A channel an engine can send, and through what (URLs with their credentials redacted). */
export type ChannelProvider =
  | { channel: 'email'; kind: 'smtp' | 'capture-sink'; host: string; port: number; url: string }
  | { channel: 'sms'; kind: 'http'; url: string };

export interface EngineInstance {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeatAt: string;
  stats: Record<string, unknown>;
  channels: ChannelProvider[];
}

export interface ReapResult {
  engines: string[];
  requeued: number;
  /** Of the requeued rows, those that were being sent (may have left twice). */
  inFlight: number;
}

interface EngineInstanceRow {
  id: string;
  host: string;
  pid: number;
  started_at: Date;
  heartbeat_at: Date;
  stats: Record<string, unknown>;
  channels: ChannelProvider[];
}

function fromRow(r: EngineInstanceRow): EngineInstance {
  return {
    id: r.id,
    host: r.host,
    pid: r.pid,
    startedAt: r.started_at.toISOString(),
    heartbeatAt: r.heartbeat_at.toISOString(),
    stats: r.stats,
    channels: r.channels,
  };
}

export interface EngineInstancesRepository {
  register(db: Queryable, instance: Omit<EngineInstance, 'heartbeatAt' | 'stats'>, at: Date): Promise<void>;
  /** Returns false when the row is gone (another engine declared this one dead). */
  heartbeat(db: Queryable, id: string, stats: Record<string, unknown>, at: Date): Promise<boolean>;
  deregister(db: Queryable, id: string): Promise<void>;
  /** Every registered engine, live or not (not yet reaped), oldest first, with its heartbeat's age at `now`. */
  all(db: Queryable, now: Date): Promise<(EngineInstance & { heartbeatAgeMs: number })[]>;
  /** Engines that heartbeat within `staleAfterMs`, oldest first. */
  live(db: Queryable, staleAfterMs: number, now: Date): Promise<EngineInstance[]>;
  /**
   * Requeues the rows held by engines dead for `staleAfterMs` (and by no engine at all, when
   * `orphans` is set: rows written before engines had ids, or by an engine that died before it
   * registered), then forgets those engines. One engine reaps at a time (row locks, held until
   * the caller's transaction `tx` ends).
   */
  reapDead(tx: Queryable, selfId: string, staleAfterMs: number, now: Date, orphans: boolean): Promise<ReapResult>;
}

export class SqlEngineInstancesRepository implements EngineInstancesRepository {
  async register(db: Queryable, instance: Omit<EngineInstance, 'heartbeatAt' | 'stats'>, at: Date): Promise<void> {
    await db.query(
      `INSERT INTO engine_instances (id, host, pid, started_at, heartbeat_at, channels) VALUES ($1, $2, $3, $4, $4, $5)
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, channels = excluded.channels`,
      [instance.id, instance.host, instance.pid, at, JSON.stringify(instance.channels)],
    );
  }

  async heartbeat(db: Queryable, id: string, stats: Record<string, unknown>, at: Date): Promise<boolean> {
    const rows = await db.query('UPDATE engine_instances SET heartbeat_at = $2, stats = $3 WHERE id = $1 RETURNING 1', [id, at, JSON.stringify(stats)]);
    return rows.length > 0;
  }

  async deregister(db: Queryable, id: string): Promise<void> {
    await db.query('DELETE FROM engine_instances WHERE id = $1', [id]);
  }

  async all(db: Queryable, now: Date): Promise<(EngineInstance & { heartbeatAgeMs: number })[]> {
    const rows = await db.query<EngineInstanceRow>('SELECT * FROM engine_instances ORDER BY started_at, id');
    return rows.map((r) => ({ ...fromRow(r), heartbeatAgeMs: Math.max(0, now.getTime() - r.heartbeat_at.getTime()) }));
  }

  async live(db: Queryable, staleAfterMs: number, now: Date): Promise<EngineInstance[]> {
    const rows = await db.query<EngineInstanceRow>(
      `SELECT * FROM engine_instances WHERE heartbeat_at >= $1::timestamptz - make_interval(secs => $2::double precision / 1000)
        ORDER BY started_at, id`,
      [now, staleAfterMs],
    );
    return rows.map(fromRow);
  }

  async reapDead(tx: Queryable, selfId: string, staleAfterMs: number, now: Date, orphans: boolean): Promise<ReapResult> {
    const dead = await tx.query<{ id: string }>(
      `SELECT id FROM engine_instances
        WHERE id <> $1 AND heartbeat_at < $2::timestamptz - make_interval(secs => $3::double precision / 1000)
        FOR UPDATE SKIP LOCKED`,
      [selfId, now, staleAfterMs],
    );
    const ids = dead.map((r) => r.id);
    if (ids.length === 0 && !orphans) return { engines: [], requeued: 0, inFlight: 0 };
    const rows = await tx.query<{ was: string }>(
      `UPDATE send_ledger l SET status = ${unsentStatusSql('l.delivery_id', 'l.occurrence')}, engine_id = NULL, updated_at = $3
         FROM (SELECT delivery_id, occurrence, profile_id, status AS was FROM send_ledger
                WHERE status IN ('queued', 'sending')
                  AND (engine_id = ANY($1::uuid[]) OR ($2 AND (engine_id IS NULL OR engine_id NOT IN (SELECT id FROM engine_instances))))
                FOR UPDATE) old
        WHERE l.delivery_id = old.delivery_id AND l.occurrence = old.occurrence AND l.profile_id = old.profile_id
        RETURNING old.was`,
      [ids, orphans, now],
    );
    if (ids.length > 0) await tx.query('DELETE FROM engine_instances WHERE id = ANY($1::uuid[])', [ids]);
    return { engines: ids, requeued: rows.length, inFlight: rows.filter((r) => r.was === 'sending').length };
  }
}
