// The audit log: every confirmation step and state change, who, when, from which state to which.
import type { Queryable } from '../database.js';

export interface AuditEntry {
  at: Date;
  actor: string;
  deliveryId: string;
  occurrence?: number;
  action: string;
  fromState?: string | null;
  toState?: string | null;
  summaryHash?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditRecord extends Omit<AuditEntry, 'at'> {
  id: number;
  at: string;
}

export interface AuditRepository {
  record(tx: Queryable, entry: AuditEntry): Promise<void>;
  /** Whether `actor` (the engine's circuit breaker, say) ever paused this run. */
  pausedBy(db: Queryable, deliveryId: string, occurrence: number, actor: string): Promise<boolean>;
  /** The id of the entry that last moved the run into `state` (0 if none): it changes each time the run enters it again. */
  lastEntryInto(db: Queryable, deliveryId: string, occurrence: number, state: string): Promise<number>;
  forDelivery(db: Queryable, deliveryId: string): Promise<AuditRecord[]>;
}

export class SqlAuditRepository implements AuditRepository {
  async record(tx: Queryable, entry: AuditEntry): Promise<void> {
    await tx.query(
      `INSERT INTO audit_log (at, actor, delivery_id, occurrence, action, from_state, to_state, summary_hash, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        entry.at,
        entry.actor,
        entry.deliveryId,
        entry.occurrence ?? 0,
        entry.action,
        entry.fromState ?? null,
        entry.toState ?? null,
        entry.summaryHash ?? null,
        entry.details ? JSON.stringify(entry.details) : null,
      ],
    );
  }

  async pausedBy(db: Queryable, deliveryId: string, occurrence: number, actor: string): Promise<boolean> {
    const rows = await db.query(
      `SELECT 1 FROM audit_log WHERE delivery_id = $1 AND occurrence = $2 AND actor = $3 AND to_state = 'paused' LIMIT 1`,
      [deliveryId, occurrence, actor],
    );
    return rows.length > 0;
  }

  async lastEntryInto(db: Queryable, deliveryId: string, occurrence: number, state: string): Promise<number> {
    const [row] = await db.query<{ id: string | number | null }>(
      `SELECT max(id) AS id FROM audit_log WHERE delivery_id = $1 AND occurrence = $2 AND to_state = $3`,
      [deliveryId, occurrence, state],
    );
    return Number(row?.id ?? 0);
  }

  async forDelivery(db: Queryable, deliveryId: string): Promise<AuditRecord[]> {
    const rows = await db.query<Record<string, unknown> & { at: Date }>(
      'SELECT * FROM audit_log WHERE delivery_id = $1 ORDER BY id',
      [deliveryId],
    );
    return rows.map((r) => ({
      id: r.id as number,
      at: r.at.toISOString(),
      actor: r.actor as string,
      deliveryId: r.delivery_id as string,
      occurrence: r.occurrence as number,
      action: r.action as string,
      fromState: r.from_state as string | null,
      toState: r.to_state as string | null,
      summaryHash: r.summary_hash as string | null,
      ...(r.details ? { details: r.details as Record<string, unknown> } : {}),
    }));
  }
}
