// The send ledger as the engine's work queue. A recipient moves
//   pending → queued (in a published batch) → sending (claimed by a dispatcher)
//   → sent | bounced (hard) | failed (soft until validity end) | in_doubt, or retry → queued again.
// Claims make redelivered batches harmless; after a crash, queued and sending rows go back to
// pending, so at most the messages in flight are sent twice.
import type { Queryable } from '../database.js';

export type LedgerStatus = 'pending' | 'queued' | 'sending' | 'retry' | 'sent' | 'bounced' | 'failed' | 'in_doubt';
export const SETTLED_STATUSES: readonly LedgerStatus[] = ['sent', 'bounced', 'failed', 'in_doubt'];

export interface QueuedRecipient {
  profileId: string;
  address: string;
  attempts: number;
  profile: Record<string, unknown>;
}

export interface Outcome {
  profileId: string;
  status: 'sent' | 'bounced' | 'failed' | 'in_doubt' | 'retry';
  code: number | null;
  error: string | null;
  messageId: string | null;
  nextAttemptAt: Date | null;
}

export interface RunRef {
  deliveryId: string;
  occurrence: number;
}

export interface ProfileMessage {
  deliveryId: string;
  deliveryName: string;
  channel: 'email' | 'sms';
  occurrence: number;
  messageId: string | null;
  sentAt: string | null;
  status: LedgerStatus;
  updatedAt: string;
}

export type Progress = Record<LedgerStatus, number> & { total: number };

/** Recipients of a run by receiving domain and outcome (what the circuit breaker judges a first wave on). */
export interface DomainOutcomeCount {
  domain: string;
  status: 'sent' | 'bounced' | 'in_doubt' | 'retry' | 'failed';
  /** The last SMTP reply code's class (2, 4 or 5), null when the server never answered. */
  codeClass: 2 | 4 | 5 | null;
  count: number;
  /** One of their last errors. */
  error: string | null;
}

export class SendQueueRepository {
  /**
   * Marks the next `size` recipients due now as queued, in profile-id order, and returns them
   * with the profile fields personalization needs.
   */
  async queueNext(tx: Queryable, run: RunRef, size: number, now: Date, engineId: string | null = null): Promise<QueuedRecipient[]> {
    const rows = await tx.query<{
      profile_id: string;
      address: string;
      attempts: number;
      email: string | null;
      first_name: string | null;
      last_name: string | null;
      locale: string | null;
      timezone: string | null;
      attributes: Record<string, unknown> | null;
    }>(
      `WITH next AS (
         SELECT profile_id FROM send_ledger
          WHERE delivery_id = $1 AND occurrence = $2 AND status IN ('pending', 'retry')
            AND (next_attempt_at IS NULL OR next_attempt_at <= $4)
            AND (send_after IS NULL OR send_after <= $4)
          ORDER BY profile_id LIMIT $3
          FOR UPDATE SKIP LOCKED),
       queued AS (
         UPDATE send_ledger l SET status = 'queued', engine_id = $5, updated_at = $4
           FROM next WHERE l.delivery_id = $1 AND l.occurrence = $2 AND l.profile_id = next.profile_id
         RETURNING l.profile_id, l.address, l.attempts)
       SELECT q.profile_id, q.address, q.attempts, p.email, p.first_name, p.last_name, p.locale, p.timezone, p.attributes
         FROM queued q LEFT JOIN profiles p ON p.id = q.profile_id
        ORDER BY q.profile_id`,
      [run.deliveryId, run.occurrence, size, now, engineId],
    );
    return rows.map((r) => ({
      profileId: r.profile_id,
      address: r.address,
      attempts: r.attempts,
      profile: {
        id: r.profile_id,
        email: r.email,
        firstName: r.first_name,
        lastName: r.last_name,
        locale: r.locale,
        timezone: r.timezone,
        attributes: r.attributes ?? {},
      },
    }));
  }

  /**
   * Claims queued recipients for sending; returns those this caller may send (the others were
   * taken or released), with their attempt count (this one included) and first attempt time.
   */
  async claim(
    db: Queryable,
    run: RunRef,
    profileIds: string[],
    now: Date,
    engineId: string | null = null,
  ): Promise<Map<string, { attempts: number; firstAttemptAt: Date }>> {
    const rows = await db.query<{ profile_id: string; attempts: number; first_attempt_at: Date }>(
      `UPDATE send_ledger SET status = 'sending', engine_id = $5, attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, $4), updated_at = $4
        WHERE delivery_id = $1 AND occurrence = $2 AND profile_id = ANY($3::text[]) AND status = 'queued'
        RETURNING profile_id, attempts, first_attempt_at`,
      [run.deliveryId, run.occurrence, profileIds, now, engineId],
    );
    return new Map(rows.map((r) => [r.profile_id, { attempts: r.attempts, firstAttemptAt: r.first_attempt_at }]));
  }

  /** Puts unsent recipients of a batch back to pending (the run was paused or stopped). */
  async release(db: Queryable, run: RunRef, profileIds: string[], now: Date): Promise<number> {
    const rows = await db.query(
      `UPDATE send_ledger SET status = 'pending', engine_id = NULL, updated_at = $4
        WHERE delivery_id = $1 AND occurrence = $2 AND profile_id = ANY($3::text[]) AND status IN ('queued', 'sending')
        RETURNING 1`,
      [run.deliveryId, run.occurrence, profileIds, now],
    );
    return rows.length;
  }

  /**
   * Gives back claimed recipients nothing was sent to (their task was cancelled, or their
   * throttle slot is later): pending again, due at `dueAt` (now when absent), the attempt their
   * claim counted not spent.
   */
  async unclaim(db: Queryable, run: RunRef, recipients: { profileId: string; dueAt?: Date }[], now: Date): Promise<number> {
    if (recipients.length === 0) return 0;
    const rows = await db.query(
      `UPDATE send_ledger l SET status = 'pending', engine_id = NULL, next_attempt_at = u.due_at, updated_at = $5,
              attempts = l.attempts - 1, first_attempt_at = CASE WHEN l.attempts = 1 THEN NULL ELSE l.first_attempt_at END
         FROM unnest($3::text[], $4::timestamptz[]) AS u(profile_id, due_at)
        WHERE l.delivery_id = $1 AND l.occurrence = $2 AND l.profile_id = u.profile_id AND l.status = 'sending'
        RETURNING 1`,
      [run.deliveryId, run.occurrence, recipients.map((r) => r.profileId), recipients.map((r) => r.dueAt ?? null), now],
    );
    return rows.length;
  }

  /** Records the outcome of each claimed recipient (only rows still 'sending' change). */
  async settle(tx: Queryable, run: RunRef, outcomes: Outcome[], now: Date): Promise<number> {
    if (outcomes.length === 0) return 0;
    const rows = await tx.query(
      `UPDATE send_ledger l SET
          status = o.status, last_code = o.code, last_error = o.error,
          message_id = coalesce(o.message_id, l.message_id), next_attempt_at = o.next_attempt_at,
          sent_at = CASE WHEN o.status = 'sent' THEN $3 ELSE l.sent_at END, updated_at = $3
         FROM unnest($4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::timestamptz[])
              AS o(profile_id, status, code, error, message_id, next_attempt_at)
        WHERE l.delivery_id = $1 AND l.occurrence = $2 AND l.profile_id = o.profile_id AND l.status = 'sending'
        RETURNING 1`,
      [
        run.deliveryId,
        run.occurrence,
        now,
        outcomes.map((o) => o.profileId),
        outcomes.map((o) => o.status),
        outcomes.map((o) => o.code),
        outcomes.map((o) => o.error),
        outcomes.map((o) => o.messageId),
        outcomes.map((o) => o.nextAttemptAt),
      ],
    );
    return rows.length;
  }

  /** Rows queued (for any run) before `olderThanMs` and never claimed go back to pending; returns how many. */
  async requeueStaleQueued(db: Queryable, olderThanMs: number, now: Date): Promise<number> {
    const rows = await db.query(
      `UPDATE send_ledger SET status = 'pending', engine_id = NULL, updated_at = $1
        WHERE status = 'queued' AND updated_at < $1::timestamptz - make_interval(secs => $2::double precision / 1000)
        RETURNING 1`,
      [now, olderThanMs],
    );
    return rows.length;
  }

  /** Recipients of the run handed out and not settled yet (queued or being sent), by every engine. */
  async inFlightCount(db: Queryable, run: RunRef): Promise<number> {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND occurrence = $2 AND status IN ('queued', 'sending')`,
      [run.deliveryId, run.occurrence],
    );
    return row?.n ?? 0;
  }

  /** Recipients of the run handed out at least once: every one not pending. */
  async handedOutCount(db: Queryable, run: RunRef): Promise<number> {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND occurrence = $2 AND status <> 'pending'`,
      [run.deliveryId, run.occurrence],
    );
    return row?.n ?? 0;
  }

  /** True while some recipient of the run was not handed out yet, or waits in a batch (pausing it would hold something back). */
  async hasUnsent(db: Queryable, run: RunRef): Promise<boolean> {
    const rows = await db.query(
      `SELECT 1 FROM send_ledger WHERE delivery_id = $1 AND occurrence = $2 AND status IN ('pending', 'queued') LIMIT 1`,
      [run.deliveryId, run.occurrence],
    );
    return rows.length > 0;
  }

  /**
   * Locks the run's delivery row until the transaction ends: the planners of every engine hand
   * out a first wave one at a time, so together they never hand out more than it.
   */
  async lockRun(tx: Queryable, run: RunRef): Promise<void> {
    await tx.query('SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE', [run.deliveryId]);
  }

  /** The outcomes of the run so far, by receiving domain. */
  async outcomesByDomain(db: Queryable, run: RunRef): Promise<DomainOutcomeCount[]> {
    const rows = await db.query<{ domain: string; status: DomainOutcomeCount['status']; code_class: 2 | 4 | 5 | null; n: number; error: string | null }>(
      `SELECT lower(regexp_replace(address, '^.*@', '')) AS domain, status,
              CASE WHEN last_code IS NULL THEN NULL WHEN last_code >= 500 THEN 5 WHEN last_code >= 400 THEN 4 ELSE 2 END AS code_class,
              count(*)::int AS n, max(last_error) AS error
         FROM send_ledger
        WHERE delivery_id = $1 AND occurrence = $2 AND status IN ('sent', 'bounced', 'in_doubt', 'retry', 'failed')
        GROUP BY 1, 2, 3`,
      [run.deliveryId, run.occurrence],
    );
    return rows.map((r) => ({ domain: r.domain, status: r.status, codeClass: r.code_class, count: r.n, error: r.error }));
  }

  /** Recipients of the run waiting for a retry become due now (the run was resumed: its cause is fixed). */
  async retryNow(tx: Queryable, run: RunRef): Promise<number> {
    const rows = await tx.query(
      `UPDATE send_ledger SET next_attempt_at = NULL
        WHERE delivery_id = $1 AND occurrence = $2 AND status = 'retry' AND next_attempt_at IS NOT NULL
        RETURNING 1`,
      [run.deliveryId, run.occurrence],
    );
    return rows.length;
  }

  /** Recipients by ledger status: of one run, or of every run of the delivery when `occurrence` is undefined. */
  async progress(db: Queryable, run: { deliveryId: string; occurrence?: number }): Promise<Progress> {
    const rows = await db.query<{ status: LedgerStatus; n: number }>(
      `SELECT status, count(*)::int AS n FROM send_ledger
        WHERE delivery_id = $1 AND ($2::int IS NULL OR occurrence = $2) GROUP BY status`,
      [run.deliveryId, run.occurrence ?? null],
    );
    const progress: Progress = { pending: 0, queued: 0, sending: 0, retry: 0, sent: 0, bounced: 0, failed: 0, in_doubt: 0, total: 0 };
    for (const row of rows) {
      progress[row.status] = row.n;
      progress.total += row.n;
    }
    return progress;
  }

  /** True when every recipient of the run is settled. */
  async isSettled(db: Queryable, run: RunRef): Promise<boolean> {
    const rows = await db.query(
      `SELECT 1 FROM send_ledger WHERE delivery_id = $1 AND occurrence = $2 AND status IN ('pending', 'queued', 'sending', 'retry') LIMIT 1`,
      [run.deliveryId, run.occurrence],
    );
    return rows.length === 0;
  }

  /** The earliest retry still to come (the planner sleeps until then). */
  async nextRetryAt(db: Queryable, run: RunRef): Promise<Date | null> {
    const [row] = await db.query<{ at: Date | null }>(
      `SELECT min(coalesce(next_attempt_at, send_after)) AS at FROM send_ledger
        WHERE delivery_id = $1 AND occurrence = $2 AND status IN ('pending', 'retry')`,
      [run.deliveryId, run.occurrence],
    );
    return row?.at ?? null;
  }

  /** The messages a profile was sent (or attempted), newest first. */
  async historyOf(db: Queryable, profileId: string, limit: number): Promise<ProfileMessage[]> {
    const rows = await db.query<{
      delivery_id: string;
      name: string;
      channel: 'email' | 'sms';
      occurrence: number;
      message_id: string | null;
      sent_at: Date | null;
      status: LedgerStatus;
      updated_at: Date;
    }>(
      `SELECT l.delivery_id, d.name, d.channel, l.occurrence, l.message_id, l.sent_at, l.status, l.updated_at
         FROM send_ledger l JOIN deliveries d ON d.id = l.delivery_id
        WHERE l.profile_id = $1 AND l.status NOT IN ('pending', 'queued')
        ORDER BY coalesce(l.sent_at, l.updated_at) DESC LIMIT $2`,
      [profileId, limit],
    );
    return rows.map((r) => ({
      deliveryId: r.delivery_id,
      deliveryName: r.name,
      channel: r.channel,
      occurrence: r.occurrence,
      messageId: r.message_id,
      sentAt: r.sent_at?.toISOString() ?? null,
      status: r.status,
      updatedAt: r.updated_at.toISOString(),
    }));
  }

  async saveLinks(tx: Queryable, deliveryId: string, links: string[]): Promise<void> {
    await tx.query('DELETE FROM tracked_links WHERE delivery_id = $1', [deliveryId]);
    if (links.length === 0) return;
    await tx.query('INSERT INTO tracked_links (delivery_id, idx, url) SELECT $1, i - 1, u FROM unnest($2::text[]) WITH ORDINALITY AS t(u, i)', [
      deliveryId,
      links,
    ]);
  }

  async link(db: Queryable, deliveryId: string, index: number): Promise<string | undefined> {
    const [row] = await db.query<{ url: string }>('SELECT url FROM tracked_links WHERE delivery_id = $1 AND idx = $2', [deliveryId, index]);
    return row?.url;
  }
}
