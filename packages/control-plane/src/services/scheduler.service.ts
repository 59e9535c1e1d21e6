// The scheduler: starts scheduled deliveries when due and creates the runs of recurring ones.
// One leader at a time (a PostgreSQL advisory lock), so several gateway replicas never fire twice.
// A schedule found more than the staleness past due (after downtime) is not sent silently:
// the delivery is paused with reason STALE_SCHEDULE for an operator to decide. Each tick also
// sends deliveries whose confirmations all expired without an OK back to approved. Runs waiting
// for a confirmation never pile up: past RECURRENCE_MAX_PENDING of them, the oldest expires
// (stopped, EXPIRED_UNCONFIRMED, audited; its recipients `stopped`).
import type { Queryable } from '../database.js';
import type { Delivery } from '../repositories/deliveries.repository.js';
import { nextRun } from '../time.js';
import type { ControlPlaneContext } from './context.js';
import type { DeliveriesService } from './deliveries.service.js';
import { SYSTEM_ACTOR, startedCommand } from './transitions.js';

const SCHEDULER_LOCK = 0x4845_5231; // "HER1"

export interface TickReport {
  leader: boolean;
  started: string[];
  paused: string[];
  occurrences: { deliveryId: string; n: number; state: string }[];
  /** Deliveries sent back to approved: their confirmations all expired without an OK. */
  expired: string[];
  /** Runs that waited for a confirmation while too many newer ones did (stopped, EXPIRED_UNCONFIRMED). */
  expiredOccurrences: { deliveryId: string; n: number }[];
}

/** How many runs of a recurring delivery may wait for a confirmation at once, by default. */
export const DEFAULT_RECURRENCE_MAX_PENDING = 5;

export class SchedulerService {
  constructor(
    private readonly ctx: ControlPlaneContext,
    private readonly deliveries: DeliveriesService,
  ) {}

  /** One pass over due deliveries; returns what it did (leader false when another replica leads). */
  async tick(): Promise<TickReport> {
    const report: TickReport = { leader: false, started: [], paused: [], occurrences: [], expired: [], expiredOccurrences: [] };
    await this.ctx.db.withAdvisoryLock(SCHEDULER_LOCK, async () => {
      report.leader = true;
      report.expired = await this.deliveries.expireConfirmations();
      for (const due of await this.ctx.deliveries.due(this.ctx.db, this.ctx.clock.now(), 100)) {
        await this.ctx.db.transaction(async (tx) => {
          const delivery = await this.ctx.deliveries.get(tx, due.id, true);
          const now = this.ctx.clock.now();
          if (delivery?.state !== 'scheduled' || !delivery.nextRunAt || new Date(delivery.nextRunAt) > now) return;
          const lateMs = now.getTime() - new Date(delivery.nextRunAt).getTime();
          if (lateMs > this.ctx.settings.scheduleStalenessMs) {
            await this.pauseStale(tx, delivery, lateMs);
            report.paused.push(delivery.id);
          } else if (delivery.recurrence) {
            report.occurrences.push(await this.createOccurrence(tx, delivery, now));
            for (const n of await this.expireUnconfirmed(tx, delivery, now)) report.expiredOccurrences.push({ deliveryId: delivery.id, n });
          } else {
            await this.start(tx, delivery, now);
            report.started.push(delivery.id);
          }
        });
      }
    });
    return report;
  }

  private async start(tx: Queryable, delivery: Delivery, now: Date): Promise<void> {
    await this.ctx.transitions.delivery(tx, delivery, 'sending', {
      actor: SYSTEM_ACTOR,
      action: 'schedule_due',
      changes: { startedAt: now, nextRunAt: null },
      details: { scheduledFor: delivery.nextRunAt },
      commands: [startedCommand(delivery, 0, delivery.preparation?.toSend ?? 0, SYSTEM_ACTOR)],
    });
  }

  private async pauseStale(tx: Queryable, delivery: Delivery, lateMs: number): Promise<void> {
    await this.ctx.transitions.delivery(tx, delivery, 'paused', {
      actor: SYSTEM_ACTOR,
      action: 'schedule_stale',
      reason: 'STALE_SCHEDULE',
      details: { scheduledFor: delivery.nextRunAt, lateMs },
    });
  }

  /** Expires the oldest runs waiting for a confirmation beyond the limit; returns their numbers. */
  private async expireUnconfirmed(tx: Queryable, delivery: Delivery, now: Date): Promise<number[]> {
    const maxPending = this.ctx.settings.recurrenceMaxPending ?? DEFAULT_RECURRENCE_MAX_PENDING;
    const expired = await this.ctx.deliveries.waitingBeyond(tx, delivery.id, maxPending);
    for (const n of expired) {
      const run = (await this.ctx.deliveries.getOccurrence(tx, delivery.id, n, true))!;
      await this.ctx.transitions.occurrence(tx, run, 'stopped', {
        actor: SYSTEM_ACTOR,
        action: 'occurrence_expired',
        reason: 'EXPIRED_UNCONFIRMED',
        details: { maxPending },
      });
      await this.ctx.confirmations.voidPending(tx, delivery.id, n);
      await this.ctx.sendQueue.stopUnsent(tx, { deliveryId: delivery.id, occurrence: n }, now);
    }
    return expired;
  }

  /** Freezes the recipients of the next run; it waits for a confirmation unless the recurrence says not to. */
  private async createOccurrence(tx: Queryable, delivery: Delivery, now: Date) {
    const recurrence = delivery.recurrence!;
    const n = delivery.occurrenceCount + 1;
    const audience = await this.ctx.audiences.get(tx, delivery.audienceId);
    const frozen = await this.ctx.ledger.freeze(tx, {
      deliveryId: delivery.id,
      occurrence: n,
      audienceId: delivery.audienceId,
      filter: audience?.filter ?? null,
      channel: delivery.channel,
    });
    const preparation = { ...frozen, preparedAt: now.toISOString() };
    const state = recurrence.requireConfirmation ? 'pending_confirmation' : 'sending';
    const scheduledFor = new Date(delivery.nextRunAt!);
    await this.ctx.deliveries.insertOccurrence(tx, { deliveryId: delivery.id, n, state, scheduledFor, preparation }, now);
    let next = nextRun(recurrence.every, scheduledFor, recurrence.timezone);
    while (next <= now) next = nextRun(recurrence.every, next, recurrence.timezone);
    await this.ctx.deliveries.update(tx, delivery.id, { occurrenceCount: n, nextRunAt: next, startedAt: delivery.startedAt ? undefined : now }, now);
    // A new run, born in its first state: recorded with its start command when it sends at once.
    await this.ctx.transitions.record(tx, {
      actor: SYSTEM_ACTOR,
      action: 'occurrence_created',
      deliveryId: delivery.id,
      occurrence: n,
      toState: state,
      details: { ...frozen, scheduledFor: scheduledFor.toISOString(), nextRunAt: next.toISOString() },
      commands: state === 'sending' ? [startedCommand(delivery, n, frozen.toSend, SYSTEM_ACTOR)] : [],
    });
    return { deliveryId: delivery.id, n, state };
  }
}
