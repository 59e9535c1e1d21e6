// Deliveries and their occurrences: rows in, domain objects out. State rules live in the services.
import type { Queryable } from '../database.js';
import type { ActionFacts, DeliveryState, OccurrenceState } from '../lifecycle.js';
import type { Channel, DeliveryContent, Recurrence, Schedule } from '../schemas.js';

export interface Preparation {
  audienceCount: number;
  toSend: number;
  excluded: Record<string, number>;
  preparedAt: string;
}

export interface Delivery {
  id: string;
  name: string;
  channel: Channel;
  audienceId: string;
  content: DeliveryContent;
  schedule: Schedule | null;
  recurrence: Recurrence | null;
  throughput: { perHour: number } | null;
  state: DeliveryState;
  stateReason: string | null;
  version: number;
  preparation: Preparation | null;
  contentHash: string | null;
  nextRunAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  occurrenceCount: number;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

export interface Occurrence {
  deliveryId: string;
  n: number;
  state: OccurrenceState;
  stateReason: string | null;
  version: number;
  scheduledFor: string;
  preparation: Preparation;
  createdAt: string;
  updatedAt: string;
}

type Row = Record<string, unknown>;
const iso = (value: unknown) => (value instanceof Date ? value.toISOString() : null);

function toDelivery(r: Row): Delivery {
  return {
    id: r.id as string,
    name: r.name as string,
    channel: r.channel as Channel,
    audienceId: r.audience_id as string,
    content: r.content as DeliveryContent,
    schedule: (r.schedule as Schedule | null) ?? null,
    recurrence: (r.recurrence as Recurrence | null) ?? null,
    throughput: (r.throughput as { perHour: number } | null) ?? null,
    state: r.state as DeliveryState,
    stateReason: (r.state_reason as string | null) ?? null,
    version: r.version as number,
    preparation: (r.preparation as Preparation | null) ?? null,
    contentHash: (r.content_hash as string | null) ?? null,
    nextRunAt: iso(r.next_run_at),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    occurrenceCount: r.occurrence_count as number,
    createdBy: r.created_by as string,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
}

function toOccurrence(r: Row): Occurrence {
  return {
    deliveryId: r.delivery_id as string,
    n: r.n as number,
    state: r.state as OccurrenceState,
    stateReason: (r.state_reason as string | null) ?? null,
    version: r.version as number,
    scheduledFor: iso(r.scheduled_for)!,
    preparation: r.preparation as Preparation,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
}

const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));

/**
 * Columns an edit or a lifecycle step may change besides the state; `version` is bumped by every
 * write. The state and its reason are written only by {@link DeliveriesRepository.transition}.
 */
export interface DeliveryChanges {
  name?: string;
  channel?: Channel;
  audienceId?: string;
  content?: DeliveryContent;
  schedule?: Schedule | null;
  recurrence?: Recurrence | null;
  throughput?: { perHour: number } | null;
  preparation?: Preparation | null;
  contentHash?: string | null;
  nextRunAt?: Date | null;
  startedAt?: Date | null;
  occurrenceCount?: number;
  finishedAt?: Date | null;
}

/** A state change as the transition primitive writes it (services/transitions.ts). */
export interface DeliveryTransition {
  from: DeliveryState;
  to: DeliveryState;
  /** The new stateReason; undefined leaves it as it is. */
  reason?: string | null;
  changes: DeliveryChanges;
}

const COLUMNS: Record<keyof DeliveryChanges, [string, (v: never) => unknown]> = {
  name: ['name', (v) => v],
  channel: ['channel', (v) => v],
  audienceId: ['audience_id', (v) => v],
  content: ['content', json],
  schedule: ['schedule', json],
  recurrence: ['recurrence', json],
  throughput: ['throughput', json],
  preparation: ['preparation', json],
  contentHash: ['content_hash', (v) => v],
  nextRunAt: ['next_run_at', (v) => v],
  startedAt: ['started_at', (v) => v],
  occurrenceCount: ['occurrence_count', (v) => v],
  finishedAt: ['finished_at', (v) => v],
};

/** SET clauses for `changes` (parameters appended to `params`). */
function setsOf(changes: DeliveryChanges, params: unknown[]): string[] {
  const sets: string[] = [];
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) continue;
    const [column, encode] = COLUMNS[key as keyof DeliveryChanges];
    params.push(encode(value as never));
    sets.push(`${column} = $${params.length}`);
  }
  return sets;
}

export interface DeliveriesRepository {
  insert(tx: Queryable, d: Omit<Delivery, 'version' | 'createdAt' | 'updatedAt' | 'startedAt' | 'finishedAt' | 'occurrenceCount'>, at: Date): Promise<void>;
  /** One delivery; `lock` takes a row lock until the transaction ends (serializes concurrent OKs). */
  get(db: Queryable, id: string, lock?: boolean): Promise<Delivery | undefined>;
  list(db: Queryable, options: { limit: number; state?: string; before?: { createdAt: string; id: string } }): Promise<Delivery[]>;
  /** Writes `changes` (never the state: see transition). */
  update(tx: Queryable, id: string, changes: DeliveryChanges, at: Date): Promise<Delivery>;
  /**
   * Moves the delivery from `from` to `to` with its other changes: the only write of the state
   * column (the transition primitive's). Undefined when the delivery is not in `from` (nothing written).
   */
  transition(tx: Queryable, id: string, move: DeliveryTransition, at: Date): Promise<Delivery | undefined>;
  /** What decides the actions of each delivery besides its state (see lifecycle.ts), as of `now`. */
  actionFacts(db: Queryable, ids: string[], now: Date): Promise<Map<string, ActionFacts>>;
  /** Deliveries waiting for OK whose confirmations have all expired (or one of them, when `id` is given). */
  awaitingExpiredOk(db: Queryable, now: Date, limit: number, id?: string): Promise<string[]>;
  /** The runs of a delivery with a live confirmation waiting for its OK. */
  occurrencesAwaitingOk(db: Queryable, deliveryId: string, now: Date): Promise<Set<number>>;
  /** Scheduled deliveries whose time has come, oldest first. */
  due(db: Queryable, now: Date, limit: number): Promise<Delivery[]>;
  insertOccurrence(tx: Queryable, o: { deliveryId: string; n: number; state: OccurrenceState; scheduledFor: Date; preparation: Preparation }, at: Date): Promise<void>;
  getOccurrence(db: Queryable, deliveryId: string, n: number, lock?: boolean): Promise<Occurrence | undefined>;
  listOccurrences(db: Queryable, deliveryId: string): Promise<Occurrence[]>;
  /**
   * Moves a run from `from` to `to` with its reason: the only write of a run's state column (the
   * transition primitive's). Undefined when the run is not in `from` (nothing written).
   */
  transitionOccurrence(
    tx: Queryable,
    deliveryId: string,
    n: number,
    move: { from: OccurrenceState; to: OccurrenceState; reason: string | null },
    at: Date,
  ): Promise<Occurrence | undefined>;
  /** The runs waiting for a confirmation beyond the `keep` newest: the ones to expire, oldest first. */
  waitingBeyond(db: Queryable, deliveryId: string, keep: number): Promise<number[]>;
  /** The runs being sent now: every delivery and occurrence in state `sending`. */
  sendingRuns(db: Queryable): Promise<{ deliveryId: string; occurrence: number }[]>;
}

export class SqlDeliveriesRepository implements DeliveriesRepository {
  async insert(tx: Queryable, d: Omit<Delivery, 'version' | 'createdAt' | 'updatedAt' | 'startedAt' | 'finishedAt' | 'occurrenceCount'>, at: Date): Promise<void> {
    await tx.query(
      `INSERT INTO deliveries (id, name, channel, audience_id, content, schedule, recurrence, throughput, state, state_reason,
                               preparation, content_hash, next_run_at, created_by, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)`,
      [
        d.id,
        d.name,
        d.channel,
        d.audienceId,
        json(d.content),
        json(d.schedule),
        json(d.recurrence),
        json(d.throughput),
        d.state,
        d.stateReason,
        json(d.preparation),
        d.contentHash,
        d.nextRunAt,
        d.createdBy,
        at,
      ],
    );
  }

  async get(db: Queryable, id: string, lock = false): Promise<Delivery | undefined> {
    const [row] = await db.query<Row>(`SELECT * FROM deliveries WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    return row && toDelivery(row);
  }

  async list(db: Queryable, options: { limit: number; state?: string; before?: { createdAt: string; id: string } }): Promise<Delivery[]> {
    const rows = await db.query<Row>(
      `SELECT * FROM deliveries
        WHERE ($1::text IS NULL OR state = $1)
          AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $4`,
      [options.state ?? null, options.before?.createdAt ?? null, options.before?.id ?? null, options.limit],
    );
    return rows.map(toDelivery);
  }

  async update(tx: Queryable, id: string, changes: DeliveryChanges, at: Date): Promise<Delivery> {
    const params: unknown[] = [id, at];
    const sets = setsOf(changes, params);
    const [row] = await tx.query<Row>(
      `UPDATE deliveries SET ${[...sets, 'version = version + 1', 'updated_at = $2'].join(', ')} WHERE id = $1 RETURNING *`,
      params,
    );
    return toDelivery(row!);
  }

  async transition(tx: Queryable, id: string, move: DeliveryTransition, at: Date): Promise<Delivery | undefined> {
    const params: unknown[] = [id, at, move.from, move.to];
    const sets = ['state = $4', ...setsOf(move.changes, params)];
    if (move.reason !== undefined) {
      params.push(move.reason);
      sets.push(`state_reason = $${params.length}`);
    }
    const [row] = await tx.query<Row>(
      `UPDATE deliveries SET ${[...sets, 'version = version + 1', 'updated_at = $2'].join(', ')} WHERE id = $1 AND state = $3 RETURNING *`,
      params,
    );
    return row && toDelivery(row);
  }

  async actionFacts(db: Queryable, ids: string[], now: Date): Promise<Map<string, ActionFacts>> {
    if (ids.length === 0) return new Map();
    const rows = await db.query<{ id: string; live_confirmation: boolean; paused_runs: boolean }>(
      `SELECT d.id,
              EXISTS (SELECT 1 FROM confirmations c
                       WHERE c.delivery_id = d.id AND c.occurrence = 0 AND c.status = 'pending' AND c.expires_at > $2) AS live_confirmation,
              EXISTS (SELECT 1 FROM delivery_occurrences o WHERE o.delivery_id = d.id AND o.state = 'paused') AS paused_runs
         FROM deliveries d WHERE d.id = ANY($1::uuid[])`,
      [ids, now],
    );
    return new Map(rows.map((r) => [r.id, { liveConfirmation: r.live_confirmation, pausedRuns: r.paused_runs }]));
  }

  async awaitingExpiredOk(db: Queryable, now: Date, limit: number, id?: string): Promise<string[]> {
    const rows = await db.query<{ id: string }>(
      `SELECT d.id FROM deliveries d
        WHERE d.state = 'pending_ok' AND ($3::uuid IS NULL OR d.id = $3)
          AND NOT EXISTS (SELECT 1 FROM confirmations c
                           WHERE c.delivery_id = d.id AND c.occurrence = 0 AND c.status = 'pending' AND c.expires_at > $1)
        LIMIT $2`,
      [now, limit, id ?? null],
    );
    return rows.map((r) => r.id);
  }

  async occurrencesAwaitingOk(db: Queryable, deliveryId: string, now: Date): Promise<Set<number>> {
    const rows = await db.query<{ occurrence: number }>(
      `SELECT DISTINCT occurrence FROM confirmations
        WHERE delivery_id = $1 AND occurrence > 0 AND status = 'pending' AND expires_at > $2`,
      [deliveryId, now],
    );
    return new Set(rows.map((r) => r.occurrence));
  }

  async due(db: Queryable, now: Date, limit: number): Promise<Delivery[]> {
    const rows = await db.query<Row>(
      `SELECT * FROM deliveries WHERE state = 'scheduled' AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2`,
      [now, limit],
    );
    return rows.map(toDelivery);
  }

  async insertOccurrence(tx: Queryable, o: { deliveryId: string; n: number; state: OccurrenceState; scheduledFor: Date; preparation: Preparation }, at: Date): Promise<void> {
    await tx.query(
      `INSERT INTO delivery_occurrences (delivery_id, n, state, scheduled_for, preparation, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $6)`,
      [o.deliveryId, o.n, o.state, o.scheduledFor, JSON.stringify(o.preparation), at],
    );
  }

  async getOccurrence(db: Queryable, deliveryId: string, n: number, lock = false): Promise<Occurrence | undefined> {
    const [row] = await db.query<Row>(
      `SELECT * FROM delivery_occurrences WHERE delivery_id = $1 AND n = $2${lock ? ' FOR UPDATE' : ''}`,
      [deliveryId, n],
    );
    return row && toOccurrence(row);
  }

  async listOccurrences(db: Queryable, deliveryId: string): Promise<Occurrence[]> {
    const rows = await db.query<Row>('SELECT * FROM delivery_occurrences WHERE delivery_id = $1 ORDER BY n DESC', [deliveryId]);
    return rows.map(toOccurrence);
  }

  async transitionOccurrence(
    tx: Queryable,
    deliveryId: string,
    n: number,
    move: { from: OccurrenceState; to: OccurrenceState; reason: string | null },
    at: Date,
  ): Promise<Occurrence | undefined> {
    const [row] = await tx.query<Row>(
      `UPDATE delivery_occurrences SET state = $4, state_reason = $5, version = version + 1, updated_at = $6
        WHERE delivery_id = $1 AND n = $2 AND state = $3 RETURNING *`,
      [deliveryId, n, move.from, move.to, move.reason, at],
    );
    return row && toOccurrence(row);
  }

  async waitingBeyond(db: Queryable, deliveryId: string, keep: number): Promise<number[]> {
    const rows = await db.query<{ n: number }>(
      `SELECT n FROM delivery_occurrences WHERE delivery_id = $1 AND state = 'pending_confirmation' ORDER BY n DESC OFFSET $2`,
      [deliveryId, keep],
    );
    return rows.map((r) => r.n).reverse();
  }

  async sendingRuns(db: Queryable): Promise<{ deliveryId: string; occurrence: number }[]> {
    const rows = await db.query<{ delivery_id: string; occurrence: number }>(
      `SELECT id AS delivery_id, 0 AS occurrence FROM deliveries WHERE state = 'sending'
       UNION ALL SELECT delivery_id, n FROM delivery_occurrences WHERE state = 'sending'`,
    );
    return rows.map((r) => ({ deliveryId: r.delivery_id, occurrence: r.occurrence }));
  }
}
