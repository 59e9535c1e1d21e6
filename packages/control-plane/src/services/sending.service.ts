// What the send engine asks of the control plane, one use case a method: the runs to plan, the
// next batch of a run's frozen recipients (and the first wave, counted across every engine),
// claims with the send-time suppression check and the exclusions' events in one transaction,
// recipients given back, outcomes settled with their quarantines, soft-bounce counts and events
// in one transaction, the counts the planner paces itself by, and a run's end or pause (through
// the transition primitive, as the engine). Times are the engine's (`now`): its clock, not the
// control plane's, which tests may move.
import { randomUUID } from 'node:crypto';
import { type MessageEvent, TOPICS } from '@herald/contracts';
import type { Queryable } from '../database.js';
import type { Delivery } from '../repositories/deliveries.repository.js';
import type { SoftBounceRule } from '../repositories/profiles.repository.js';
import type { Claim, DomainOutcomeCount, ExcludedAtSend, Outcome, QueuedRecipient, RunRef } from '../repositories/send-queue.repository.js';
import { DEFAULT_SOFT_BOUNCE_RULE } from './bounces.service.js';
import type { ControlPlaneContext } from './context.js';
import type { DeliveriesService } from './deliveries.service.js';
import { ENGINE_LATE_MS } from './engine-registry.service.js';
import { ENGINE_ACTOR } from './transitions.js';

/** A run as the engine sees it: its state, delivery, recipients to send, and epoch. */
export interface RunSnapshot {
  deliveryId: string;
  occurrence: number;
  /** The delivery's state, or the occurrence's for a run of a recurring delivery. */
  state: string;
  delivery: Delivery;
  toSend: number;
  /** Changes each time the run enters `sending` again (a resume): the circuit breaker judges each epoch afresh. */
  epoch: number;
}

/** What a dispatcher settles for a batch, in one transaction. */
export interface Settlement {
  outcomes: Outcome[];
  /** Claimed recipients nothing was attempted for: pending again, their attempt not spent. */
  notAttempted: string[];
  /** Profiles whose address hard-bounced: quarantined. */
  hardBounced: string[];
  /** Profiles whose soft bounce was given up after the validity period: counted toward the soft-bounce quarantine. */
  softBouncedFinal: string[];
  /** The batch's message events (one outbox row; the relay publishes them one by one). */
  events: MessageEvent[];
}

export class SendingService {
  private readonly softBounces: SoftBounceRule;

  constructor(
    private readonly ctx: ControlPlaneContext,
    private readonly deliveries: DeliveriesService,
  ) {
    this.softBounces = ctx.settings.softBounces ?? DEFAULT_SOFT_BOUNCE_RULE;
  }

  /** Every run being sent now. */
  async sendingRuns(): Promise<RunRef[]> {
    return this.ctx.deliveries.sendingRuns(this.ctx.db);
  }

  /** A run as it is now; undefined when it does not exist. */
  async run(deliveryId: string, occurrence: number): Promise<RunSnapshot | undefined> {
    const { db } = this.ctx;
    const delivery = await this.ctx.deliveries.get(db, deliveryId);
    if (!delivery) return undefined;
    let state: string = delivery.state;
    let toSend = delivery.preparation?.toSend ?? 0;
    if (occurrence > 0) {
      const run = await this.ctx.deliveries.getOccurrence(db, deliveryId, occurrence);
      if (!run) return undefined;
      state = run.state;
      toSend = run.preparation.toSend;
    }
    const epoch = await this.ctx.audit.lastEntryInto(db, deliveryId, occurrence, 'sending');
    return { deliveryId, occurrence, state, delivery, toSend, epoch };
  }

  /** Whether the engine ever paused this run (its circuit breaker judged it already). */
  async pausedByEngine(run: RunRef): Promise<boolean> {
    return this.ctx.audit.pausedBy(this.ctx.db, run.deliveryId, run.occurrence, ENGINE_ACTOR.id);
  }

  /** Recipients of the run handed out and not settled yet by the engines whose heartbeat is on time. */
  async inFlightCount(run: RunRef, now: Date): Promise<number> {
    return this.ctx.sendQueue.inFlightCount(this.ctx.db, run, now, ENGINE_LATE_MS);
  }

  /** Queues the run's next `size` recipients due at `now` for engine `engineId`. */
  async queueNext(run: RunRef, size: number, now: Date, engineId: string): Promise<QueuedRecipient[]> {
    return this.ctx.db.transaction((tx) => this.ctx.sendQueue.queueNext(tx, run, size, now, engineId));
  }

  /**
   * Queues the run's next recipients within its first wave of `wave` recipients: the planners of
   * every engine count it one at a time (the run's row lock), so together they never hand out
   * more. 'wave out' when the whole wave is handed out; 'judged' when more than it was (another
   * planner judged it and went on).
   */
  async queueFirstWave(run: RunRef, batch: { size: number; wave: number }, now: Date, engineId: string): Promise<QueuedRecipient[] | 'wave out' | 'judged'> {
    return this.ctx.db.transaction(async (tx) => {
      await this.ctx.sendQueue.lockRun(tx, run);
      const handedOut = await this.ctx.sendQueue.handedOutCount(tx, run);
      if (handedOut < batch.wave) return this.ctx.sendQueue.queueNext(tx, run, Math.min(batch.size, batch.wave - handedOut), now, engineId);
      return handedOut > batch.wave ? 'judged' : 'wave out';
    });
  }

  /**
   * Claims queued recipients for sending, checking each one's suppression now: those suppressed
   * since preparation are settled as excluded, with the events `eventsOf` gives them, in the same
   * transaction (a crash cannot separate the two).
   */
  async claim(run: RunRef, profileIds: string[], now: Date, engineId: string, eventsOf: (excluded: ExcludedAtSend[]) => MessageEvent[]): Promise<Claim> {
    return this.ctx.db.transaction(async (tx) => {
      const claim = await this.ctx.sendQueue.claim(tx, run, profileIds, now, engineId);
      if (claim.excluded.length > 0) await this.publishEvents(tx, run, eventsOf(claim.excluded));
      return claim;
    });
  }

  /** Gives back claimed recipients nothing was sent to: pending again, due at `dueAt` (now when absent), no attempt spent. */
  async unclaim(run: RunRef, recipients: { profileId: string; dueAt?: Date }[], now: Date): Promise<number> {
    return this.ctx.sendQueue.unclaim(this.ctx.db, run, recipients, now);
  }

  /** Puts recipients of a batch not sent back to pending (or `stopped` when their run was stopped). */
  async release(run: RunRef, profileIds: string[], now: Date): Promise<number> {
    return this.ctx.sendQueue.release(this.ctx.db, run, profileIds, now);
  }

  /** Records a batch's outcomes, quarantines, soft-bounce counts and events in one transaction. */
  async settle(run: RunRef, settlement: Settlement, now: Date): Promise<void> {
    await this.ctx.db.transaction(async (tx) => {
      await this.ctx.sendQueue.settle(tx, run, settlement.outcomes, now);
      await this.ctx.sendQueue.unclaim(tx, run, settlement.notAttempted.map((profileId) => ({ profileId })), now);
      await this.ctx.profiles.quarantine(tx, settlement.hardBounced);
      await this.ctx.profiles.recordSoftBounces(tx, settlement.softBouncedFinal, now, this.softBounces);
      await this.publishEvents(tx, run, settlement.events);
    });
  }

  /** True when every recipient of the run is settled. */
  async isSettled(run: RunRef): Promise<boolean> {
    return this.ctx.sendQueue.isSettled(this.ctx.db, run);
  }

  /** True while some recipient of the run was not handed out yet, or waits in a batch. */
  async hasUnsent(run: RunRef): Promise<boolean> {
    return this.ctx.sendQueue.hasUnsent(this.ctx.db, run);
  }

  /** The earliest retry (or local send time) still to come. */
  async nextRetryAt(run: RunRef): Promise<Date | null> {
    return this.ctx.sendQueue.nextRetryAt(this.ctx.db, run);
  }

  /** The run's outcomes so far, by receiving domain (what the circuit breaker judges a first wave on). */
  async outcomesByDomain(run: RunRef): Promise<DomainOutcomeCount[]> {
    return this.ctx.sendQueue.outcomesByDomain(this.ctx.db, run);
  }

  /** Every recipient is settled: the run is finished (false when it is not sending any more). */
  async finish(run: RunRef): Promise<boolean> {
    return this.deliveries.finish(run.deliveryId, run.occurrence, ENGINE_ACTOR);
  }

  /**
   * The engine pauses a run by itself (the circuit breaker, a channel it cannot send), with the
   * reason users see; with `sendingSince` (the run's epoch as the engine saw it) a run resumed
   * since is left alone. False when nothing was paused.
   */
  async pause(run: RunRef, reason: string, details: Record<string, unknown> = {}, sendingSince?: number): Promise<boolean> {
    return this.deliveries.pauseRun(run.deliveryId, run.occurrence, ENGINE_ACTOR, reason, details, sendingSince);
  }

  private async publishEvents(tx: Queryable, run: RunRef, events: MessageEvent[]): Promise<void> {
    // The row's key names the delivery; the relay publishes each event under its message id.
    await this.ctx.outbox.enqueueFanout(tx, { commandId: randomUUID(), topic: TOPICS.messageEvents, key: run.deliveryId, payloads: events });
  }
}
