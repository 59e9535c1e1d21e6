// Two-step confirmations: what a user saw at *Confirm send*, until *OK* or until it dies.
import type { Queryable } from '../database.js';
import type { ChannelProvider } from './engine-instances.repository.js';

/** Something the user should know before OK (e.g. SEND_TIME_PAST, NO_ENGINE). */
export interface SummaryWarning {
  code: string;
  message: string;
}

/** What projectedFinishAt was computed from; `reason` says why there is none. */
export interface ProjectedFinishBasis {
  source: 'throughput.perHour' | 'engines' | null;
  /** The rate used, in messages an hour. */
  perHour: number | null;
  reason?: string;
}

export interface ConfirmationSummary {
  /** Recipients that will be sent now: the frozen ones less those suppressed since preparation. */
  toSend: number;
  /** Exclusions as of now, by reason: those of the preparation plus those since. */
  excluded: Record<string, number>;
  /** True when profiles were suppressed (unsubscribed, denylisted, quarantined) after preparation. */
  exclusionsChangedSincePreparation: boolean;
  /** The exclusions added since preparation, by reason (empty when none). */
  exclusionsSincePreparation: Record<string, number>;
  /** When the send starts: a one-off schedule's instant; null when it starts at OK or per recipient time zone. */
  sendAt: string | null;
  /** Per recipient time zone: the first and last local send instants of the frozen recipients. */
  sendWindow?: { first: string; last: string };
  recipientLocalTime?: string;
  contentHash: string;
  projectedFinishAt: string | null;
  projectedFinishBasis: ProjectedFinishBasis;
  /** What the live engines will send the channel through (credentials redacted); null when no engine runs. */
  provider: ChannelProvider | null;
  warnings: SummaryWarning[];
}

export interface Confirmation {
  id: string;
  deliveryId: string;
  occurrence: number;
  userId: string;
  subjectVersion: number;
  summary: ConfirmationSummary;
  summaryHash: string;
  expiresAt: Date;
  status: 'pending' | 'accepted' | 'void';
  result: { state: string } | null;
  createdAt: Date;
}

type Row = Record<string, unknown>;
const toConfirmation = (r: Row): Confirmation => ({
  id: r.id as string,
  deliveryId: r.delivery_id as string,
  occurrence: r.occurrence as number,
  userId: r.user_id as string,
  subjectVersion: r.subject_version as number,
  summary: r.summary as ConfirmationSummary,
  summaryHash: r.summary_hash as string,
  expiresAt: r.expires_at as Date,
  status: r.status as Confirmation['status'],
  result: (r.result as { state: string } | null) ?? null,
  createdAt: r.created_at as Date,
});

export interface ConfirmationsRepository {
  insert(tx: Queryable, c: Omit<Confirmation, 'status' | 'result'>): Promise<void>;
  get(db: Queryable, id: string, lock?: boolean): Promise<Confirmation | undefined>;
  accept(tx: Queryable, id: string, result: { state: string }, at: Date): Promise<void>;
  /** Voids the pending confirmations of a delivery (or one occurrence of it); returns their ids. */
  voidPending(tx: Queryable, deliveryId: string, occurrence?: number): Promise<string[]>;
}

export class SqlConfirmationsRepository implements ConfirmationsRepository {
  async insert(tx: Queryable, c: Omit<Confirmation, 'status' | 'result'>): Promise<void> {
    await tx.query(
      `INSERT INTO confirmations (id, delivery_id, occurrence, user_id, subject_version, summary, summary_hash, expires_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [c.id, c.deliveryId, c.occurrence, c.userId, c.subjectVersion, JSON.stringify(c.summary), c.summaryHash, c.expiresAt, c.createdAt],
    );
  }

  async get(db: Queryable, id: string, lock = false): Promise<Confirmation | undefined> {
    const [row] = await db.query<Row>(`SELECT * FROM confirmations WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    return row && toConfirmation(row);
  }

  async accept(tx: Queryable, id: string, result: { state: string }, at: Date): Promise<void> {
    await tx.query(`UPDATE confirmations SET status = 'accepted', result = $2, accepted_at = $3 WHERE id = $1`, [
      id,
      JSON.stringify(result),
      at,
    ]);
  }

  async voidPending(tx: Queryable, deliveryId: string, occurrence?: number): Promise<string[]> {
    const rows = await tx.query<{ id: string }>(
      `UPDATE confirmations SET status = 'void'
        WHERE delivery_id = $1 AND status = 'pending' AND ($2::int IS NULL OR occurrence = $2) RETURNING id`,
      [deliveryId, occurrence ?? null],
    );
    return rows.map((r) => r.id);
  }
}
