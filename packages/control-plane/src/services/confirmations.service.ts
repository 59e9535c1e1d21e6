// The two-step confirmation (*Confirm send*, then *OK*), for a delivery or one run of a
// recurring delivery. OK succeeds only for the user who confirmed, before expiry, with the
// delivery unchanged; it is idempotent and starts at most one send.
//
// NOTE: lock order is always delivery row, then confirmation row. Two users confirming at once
// then serialize on the delivery, and the loser finds its confirmation voided (no deadlock).
import { randomUUID } from 'node:crypto';
import { systemClock } from '../clock.js';
import type { Queryable } from '../database.js';
import { DomainError, notFound } from '../errors.js';
import { assertAction, availableOccurrenceActions, type DeliveryState } from '../lifecycle.js';
import type { Confirmation, ConfirmationSummary, ProjectedFinishBasis, SummaryWarning } from '../repositories/confirmations.repository.js';
import type { ChannelProvider, EngineInstance } from '../repositories/engine-instances.repository.js';
import { ENGINE_STALE_MS } from './engine-registry.service.js';
import type { Channel } from '../schemas.js';
import type { Delivery, Occurrence, Preparation } from '../repositories/deliveries.repository.js';
import { type ControlPlaneContext, stableHash } from './context.js';
import { scheduledInstant } from './deliveries.service.js';
import { type Actor, startedCommand } from './transitions.js';

export interface ConfirmationTicket {
  confirmationId: string;
  deliveryId: string;
  occurrence: number;
  expiresAt: string;
  summary: ConfirmationSummary;
  summaryHash: string;
}

export interface OkResult {
  /** The state of the delivery (or run) now. */
  state: string;
  /** What this OK started: `sending` or `scheduled`; the same on every repeat of the call. */
  startedAs: string;
  deliveryId: string;
  occurrence: number;
  confirmationId: string;
}

export class ConfirmationsService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  /**
   * Step 1, *Confirm send*: binds a confirmation to what the user sees now, exclusions included
   * (counted now over the frozen recipients, with what changed since preparation).
   */
  async confirm(deliveryId: string, actor: Actor, occurrence = 0): Promise<ConfirmationTicket> {
    return this.ctx.db.transaction(async (tx) => {
      const now = this.ctx.clock.now();
      const delivery = await this.lockDelivery(tx, deliveryId);
      let summary: ConfirmationSummary;
      let run: Occurrence | undefined;
      if (occurrence === 0) {
        const facts = (await this.ctx.deliveries.actionFacts(tx, [deliveryId], now)).get(deliveryId)!;
        assertAction(delivery.state, 'confirm', facts, `Confirm send needs a prepared and approved delivery; this one is '${delivery.state}'.`);
        // Before any change: a summary that cannot be confirmed (a send time past) changes nothing.
        summary = await this.summarize(tx, delivery, 0, delivery.preparation!, now);
      } else {
        run = await this.ctx.deliveries.getOccurrence(tx, deliveryId, occurrence, true);
        if (!run) throw notFound(`Occurrence ${occurrence} of delivery`, deliveryId);
        if (run.state !== 'pending_confirmation') {
          throw new DomainError('INVALID_STATE', `Occurrence ${occurrence} is '${run.state}', not waiting for a confirmation.`, {
            state: run.state,
            action: 'confirm',
            allowed: availableOccurrenceActions(run.state, { liveConfirmation: false }),
          });
        }
        summary = await this.summarize(tx, delivery, occurrence, run.preparation, now);
      }
      // The summary shown last is the one an OK may start: earlier Confirm sends die now.
      const voided = await this.ctx.confirmations.voidPending(tx, deliveryId, occurrence);
      const id = randomUUID();
      const summaryHash = stableHash(summary);
      const expiresAt = new Date(now.getTime() + this.ctx.settings.confirmationTtlMs);
      const step = {
        actor,
        action: 'confirm_send',
        summaryHash,
        details: { confirmationId: id, expiresAt: expiresAt.toISOString(), ...(voided.length > 0 ? { voided } : {}) },
      };
      // The confirmation is bound to the version the user saw: the delivery's once it awaits OK, or the run's.
      let subjectVersion: number;
      if (run) {
        await this.ctx.transitions.record(tx, { ...step, deliveryId, occurrence, fromState: run.state, toState: run.state });
        subjectVersion = run.version;
      } else if (delivery.state === 'pending_ok') {
        // Confirm send again while waiting for OK: a new confirmation, the state stays.
        await this.ctx.transitions.record(tx, { ...step, deliveryId, fromState: delivery.state, toState: delivery.state });
        subjectVersion = delivery.version;
      } else {
        subjectVersion = (await this.ctx.transitions.delivery(tx, delivery, 'pending_ok', step)).version;
      }
      await this.ctx.confirmations.insert(tx, { id, deliveryId, occurrence, userId: actor.id, subjectVersion, summary, summaryHash, expiresAt, createdAt: now });
      return { confirmationId: id, deliveryId, occurrence, expiresAt: expiresAt.toISOString(), summary, summaryHash };
    });
  }

  /** Step 2, *OK*: starts (or schedules) the send the user confirmed; the same call again answers the same. */
  async ok(deliveryId: string, confirmationId: string, actor: Actor, occurrence = 0): Promise<OkResult> {
    return this.ctx.db.transaction(async (tx) => {
      const now = this.ctx.clock.now();
      const delivery = await this.lockDelivery(tx, deliveryId);
      const confirmation = await this.ctx.confirmations.get(tx, confirmationId, true);
      if (!confirmation || confirmation.deliveryId !== deliveryId || confirmation.occurrence !== occurrence) {
        throw notFound('Confirmation', confirmationId);
      }
      if (confirmation.userId !== actor.id) {
        throw stale('This confirmation was opened by another user: click Confirm send yourself.', confirmation, { reason: 'OTHER_USER' });
      }
      const result = (state: string, startedAs: string): OkResult => ({ state, startedAs, deliveryId, occurrence, confirmationId });
      if (confirmation.status === 'accepted') {
        // A repeat: what this OK started, and where the delivery (or run) is now; nothing starts again.
        const current = occurrence === 0 ? delivery.state : (await this.ctx.deliveries.getOccurrence(tx, deliveryId, occurrence))?.state;
        return result(current ?? confirmation.result!.state, confirmation.result!.state);
      }
      if (confirmation.status === 'void') {
        throw stale('The delivery changed or was confirmed after Confirm send: review it and confirm again.', confirmation, {
          reason: 'VOIDED',
          state: delivery.state,
        });
      }
      if (now.getTime() >= confirmation.expiresAt.getTime()) {
        throw new DomainError('CONFIRMATION_EXPIRED', 'This confirmation has expired: click Confirm send again.', {
          expiresAt: confirmation.expiresAt.toISOString(),
        });
      }
      const state = occurrence === 0 ? await this.startDelivery(tx, delivery, confirmation, actor, now) : await this.startOccurrence(tx, delivery, confirmation, actor);
      await this.ctx.confirmations.accept(tx, confirmationId, { state }, now);
      await this.ctx.confirmations.voidPending(tx, deliveryId, occurrence);
      return result(state, state);
    });
  }

  private async startDelivery(tx: Queryable, delivery: Delivery, confirmation: Confirmation, actor: Actor, now: Date): Promise<DeliveryState> {
    if (delivery.state !== 'pending_ok' || delivery.version !== confirmation.subjectVersion) {
      throw stale('The delivery changed after Confirm send: review it and confirm again.', confirmation, {
        reason: 'CHANGED',
        state: delivery.state,
      });
    }
    const sendAt = scheduledInstant(delivery.schedule);
    let target: DeliveryState;
    let nextRunAt: Date | null = null;
    if (delivery.recurrence) {
      target = 'scheduled';
      nextRunAt = sendAt && sendAt > now ? sendAt : now;
    } else if (delivery.schedule && 'recipientTimezone' in delivery.schedule) {
      target = 'scheduled';
      nextRunAt =
        (await this.ctx.ledger.assignLocalSendTimes(tx, {
          deliveryId: delivery.id,
          occurrence: 0,
          localTime: delivery.schedule.localTime,
          date: delivery.schedule.date ?? null,
          now,
        })) ?? now;
    } else if (sendAt && sendAt > now) {
      target = 'scheduled';
      nextRunAt = sendAt;
    } else {
      target = 'sending';
    }
    await this.ctx.transitions.delivery(tx, delivery, target, {
      actor,
      action: 'ok',
      reason: null,
      changes: { nextRunAt, ...(target === 'sending' ? { startedAt: now } : {}) },
      summaryHash: confirmation.summaryHash,
      details: { confirmationId: confirmation.id, ...(nextRunAt ? { nextRunAt: nextRunAt.toISOString() } : {}) },
      commands: target === 'sending' ? [startedCommand(delivery, 0, delivery.preparation!.toSend, actor)] : [],
    });
    return target;
  }

  private async startOccurrence(tx: Queryable, delivery: Delivery, confirmation: Confirmation, actor: Actor): Promise<string> {
    const run = await this.ctx.deliveries.getOccurrence(tx, delivery.id, confirmation.occurrence, true);
    if (run?.state !== 'pending_confirmation' || run.version !== confirmation.subjectVersion) {
      throw stale('This run changed after Confirm send: review it and confirm again.', confirmation, {
        reason: 'CHANGED',
        state: run?.state,
      });
    }
    await this.ctx.transitions.occurrence(tx, run, 'sending', {
      actor,
      action: 'ok',
      reason: null,
      summaryHash: confirmation.summaryHash,
      details: { confirmationId: confirmation.id },
      commands: [startedCommand(delivery, run.n, run.preparation.toSend, actor)],
    });
    return 'sending';
  }

  /**
   * What the user confirms: recipients, exclusions, when the send starts (or the window of local
   * send times), when it should finish and from what rate, and warnings. A send time already past
   * is refused (SEND_TIME_PAST) unless the schedule says sendNow: then the send starts at OK.
   */
  private async summarize(tx: Queryable, delivery: Delivery, occurrence: number, preparation: Preparation, now: Date): Promise<ConfirmationSummary> {
    const warnings: SummaryWarning[] = [];
    const schedule = occurrence === 0 ? delivery.schedule : null;
    const sendNow = schedule?.sendNow === true;
    let sendAt = scheduledInstant(schedule);
    if (sendAt && sendAt <= now) {
      if (!sendNow) {
        throw new DomainError(
          'SEND_TIME_PAST',
          `The send time ${sendAt.toISOString()} is already past: pick a later one, or set schedule.sendNow to true to send at OK.`,
          { sendAt: sendAt.toISOString(), now: now.toISOString() },
        );
      }
      warnings.push({ code: 'SEND_TIME_PAST', message: `The send time ${sendAt.toISOString()} has passed: the send starts at OK (schedule.sendNow).` });
      sendAt = null;
    }
    let sendWindow: { first: Date; last: Date } | undefined;
    if (schedule && 'recipientTimezone' in schedule) {
      const window = await this.ctx.ledger.localSendWindow(tx, {
        deliveryId: delivery.id,
        occurrence,
        localTime: schedule.localTime,
        date: schedule.date ?? null,
        now,
      });
      // Only a fixed date can be past: without one, each recipient gets the next such local time.
      if (window && window.past > 0) {
        if (!sendNow) {
          throw new DomainError(
            'SEND_TIME_PAST',
            `${schedule.localTime} on ${schedule.date} is already past for ${window.past} recipients (their local time): pick a later date, or set schedule.sendNow to true to send to them at OK.`,
            { sendWindow: { first: window.first.toISOString(), last: window.last.toISOString() }, recipientsPast: window.past, now: now.toISOString() },
          );
        }
        warnings.push({ code: 'SEND_TIME_PAST', message: `${schedule.localTime} on ${schedule.date} is already past for ${window.past} recipients: they are sent to at OK (schedule.sendNow).` });
      }
      if (window) sendWindow = { first: window.first, last: window.last };
    }
    // NOTE: engines heartbeat on real time; the control plane's clock may be moved (tests, simulations).
    const engines = await this.ctx.engines.live(tx, ENGINE_STALE_MS, systemClock.now());
    const provider = providerFor(delivery.channel, engines, warnings);
    const start = [sendAt, sendWindow?.first].find((at): at is Date => !!at && at > now) ?? now;
    // The exclusions as of now, not as of preparation: the engine will not send to profiles
    // suppressed since (it checks again when it sends), so the user confirms that count.
    const since = await this.ctx.ledger.excludedNow(tx, delivery.id, occurrence);
    const excludedSince = Object.values(since).reduce((sum, n) => sum + n, 0);
    const excluded: Record<string, number> = { ...preparation.excluded };
    for (const [reason, n] of Object.entries(since)) excluded[reason] = (excluded[reason] ?? 0) + n;
    const toSend = preparation.toSend - excludedSince;
    const { finishAt, basis } = projectFinish(engines, start, sendWindow?.last ?? null, toSend, delivery.throughput?.perHour ?? null);
    return {
      toSend,
      excluded,
      exclusionsChangedSincePreparation: excludedSince > 0,
      exclusionsSincePreparation: since,
      sendAt: sendAt?.toISOString() ?? null,
      ...(sendWindow ? { sendWindow: { first: sendWindow.first.toISOString(), last: sendWindow.last.toISOString() } } : {}),
      ...(schedule && 'recipientTimezone' in schedule ? { recipientLocalTime: schedule.localTime } : {}),
      contentHash: delivery.contentHash!,
      projectedFinishAt: finishAt?.toISOString() ?? null,
      projectedFinishBasis: basis,
      provider,
      warnings,
    };
  }

  private async lockDelivery(tx: Queryable, id: string): Promise<Delivery> {
    const delivery = await this.ctx.deliveries.get(tx, id, true);
    if (!delivery) throw notFound('Delivery', id);
    return delivery;
  }
}

function stale(message: string, confirmation: Confirmation, details: Record<string, unknown>): DomainError {
  return new DomainError('CONFIRMATION_STALE', message, { confirmationId: confirmation.id, ...details });
}

/**
 * When the send should finish: at the delivery's own rate (throughput.perHour) when it has one,
 * else at the rate the live engines measured while sending (their sum); else unknown, with why.
 * A per-recipient time-zone send finishes no earlier than its last local send time.
 */
function projectFinish(
  engines: EngineInstance[],
  start: Date,
  notBefore: Date | null,
  toSend: number,
  perHour: number | null,
): { finishAt: Date | null; basis: ProjectedFinishBasis } {
  let basis: ProjectedFinishBasis;
  if (perHour) {
    basis = { source: 'throughput.perHour', perHour };
  } else {
    const measured = engines.reduce((sum, e) => sum + (Number(e.stats.measuredPerSecond) || 0), 0);
    if (measured > 0) basis = { source: 'engines', perHour: Math.round(measured * 3600) };
    else if (engines.length === 0) basis = { source: null, perHour: null, reason: 'no engine is running: the send rate is unknown' };
    else basis = { source: null, perHour: null, reason: 'the engines have not measured a send rate yet (they measure it while sending)' };
  }
  if (!basis.perHour) return { finishAt: null, basis };
  const end = start.getTime() + Math.ceil((toSend / basis.perHour) * 3_600_000);
  return { finishAt: new Date(Math.max(end, notBefore?.getTime() ?? 0)), basis };
}

/**
 * The provider the live engines will send `channel` through. No engine running: unknown, with a
 * NO_ENGINE warning (the send waits for one). Engines running and none can send the channel:
 * 409 CHANNEL_NOT_CONFIGURED. Engines that disagree: the first one's, with a PROVIDERS_DIFFER warning.
 */
function providerFor(channel: Channel, engines: EngineInstance[], warnings: SummaryWarning[]): ChannelProvider | null {
  if (engines.length === 0) {
    warnings.push({
      code: 'NO_ENGINE',
      message: `No engine is running: nothing is sent until one starts (herald start, or herald engine), and whether it can send ${channel} is not known yet.`,
    });
    return null;
  }
  const offers = engines.map((e) => (e.channels ?? []).find((c) => c.channel === channel));
  const providers = offers.filter((p): p is ChannelProvider => p !== undefined);
  if (providers.length === 0) {
    const setting = channel === 'sms' ? 'HTTP_PROVIDER_URL (the sms provider\'s batch endpoint)' : 'SMTP_URL';
    throw new DomainError(
      'CHANNEL_NOT_CONFIGURED',
      `No running engine can send ${channel}: set ${setting} on the engines and restart them, then Confirm send again.`,
      { channel, engines: engines.length },
    );
  }
  const distinct = new Set(offers.map((p) => JSON.stringify(p ?? null)));
  if (distinct.size > 1) {
    warnings.push({
      code: 'PROVIDERS_DIFFER',
      message: `The ${engines.length} running engines do not all send ${channel} the same way (${providers.length} of them can send it): messages may go through different providers, or fail on an engine without one.`,
    });
  }
  return providers[0]!;
}
