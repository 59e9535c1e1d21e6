// The delivery lifecycle outside the confirmation: create, edit, prepare, approve, pause,
// resume, stop, and the engine's finish and pause of a run. Every state change goes through the
// transition primitive (transitions.ts): checked against the lifecycle table, audited, and with
// the commands the engine must see in the outbox of the same transaction.
import { randomUUID } from 'node:crypto';
import { DomainError, notFound } from '../errors.js';
import {
  assertAction,
  availableActions,
  availableOccurrenceActions,
  type DeliveryAction,
  type OccurrenceAction,
  type DeliveryState,
  type OccurrenceState,
} from '../lifecycle.js';
import type { Queryable } from '../database.js';
import type { Delivery, Occurrence } from '../repositories/deliveries.repository.js';
import {
  contentProblems,
  type CreateDeliveryInput,
  type Schedule,
  type UpdateDeliveryInput,
} from '../schemas.js';
import { resolveSendAt } from '../time.js';
import { type ControlPlaneContext, stableHash } from './context.js';
import { type Actor, type CommandDraft, SYSTEM_ACTOR, startedCommand } from './transitions.js';

/** A delivery as the API shows it: with the actions possible now (the same rules the services apply). */
export type DeliveryView = Delivery & { actions: DeliveryAction[] };

/** A run of a recurring delivery with the actions possible on it now. */
export type OccurrenceView = Occurrence & { actions: OccurrenceAction[] };

export interface DeliveryPage {
  items: DeliveryView[];
  nextCursor: string | null;
}

/** The instant a one-off schedule names, or null (send at OK, or per recipient time zone). */
export function scheduledInstant(schedule: Schedule | null): Date | null {
  return schedule && 'sendAt' in schedule ? resolveSendAt(schedule.sendAt, schedule.timezone) : null;
}

export class DeliveriesService {
  constructor(
    private readonly ctx: ControlPlaneContext,
    /** The links of an HTML content (the channels' renderer knows them): a click token points to one by index. */
    private readonly extractLinks: (html: string) => string[],
  ) {}

  async create(input: CreateDeliveryInput, actor: Actor): Promise<Delivery> {
    await this.validate(this.ctx.db, input);
    const now = this.ctx.clock.now();
    const id = randomUUID();
    return this.ctx.db.transaction(async (tx) => {
      await this.ctx.deliveries.insert(
        tx,
        {
          id,
          name: input.name,
          channel: input.channel,
          audienceId: input.audienceId,
          content: input.content,
          schedule: input.schedule ?? null,
          recurrence: input.recurrence ?? null,
          throughput: input.throughput ?? null,
          state: 'draft',
          stateReason: null,
          preparation: null,
          contentHash: null,
          nextRunAt: null,
          createdBy: actor.id,
        },
        now,
      );
      await this.ctx.transitions.record(tx, { actor, action: 'create', deliveryId: id, toState: 'draft' });
      return (await this.ctx.deliveries.get(tx, id))!;
    });
  }

  /** One delivery, as of now: one waiting for an OK that can no longer come is back to approved first. */
  async get(id: string): Promise<Delivery> {
    let delivery = await this.ctx.deliveries.get(this.ctx.db, id);
    if (!delivery) throw notFound('Delivery', id);
    if (delivery.state === 'pending_ok' && (await this.expireConfirmations(id)).length > 0) {
      delivery = (await this.ctx.deliveries.get(this.ctx.db, id))!;
    }
    return delivery;
  }

  async view(id: string): Promise<DeliveryView> {
    return this.withActions(await this.get(id));
  }

  /** The delivery with the actions it offers now. */
  async withActions(delivery: Delivery): Promise<DeliveryView> {
    const [view] = await this.withActionsAll([delivery]);
    return view!;
  }

  private async withActionsAll(deliveries: Delivery[]): Promise<DeliveryView[]> {
    const facts = await this.ctx.deliveries.actionFacts(this.ctx.db, deliveries.map((d) => d.id), this.ctx.clock.now());
    return deliveries.map((d) => ({ ...d, actions: availableActions(d.state, facts.get(d.id) ?? { liveConfirmation: false, pausedRuns: false }) }));
  }

  /** The runs of a recurring delivery, newest first, each with the actions possible on it now. */
  async occurrences(id: string): Promise<OccurrenceView[]> {
    await this.get(id);
    const runs = await this.ctx.deliveries.listOccurrences(this.ctx.db, id);
    const awaitingOk = await this.ctx.deliveries.occurrencesAwaitingOk(this.ctx.db, id, this.ctx.clock.now());
    return runs.map((run) => ({ ...run, actions: availableOccurrenceActions(run.state, { liveConfirmation: awaitingOk.has(run.n) }) }));
  }

  /** The runs of a recurring delivery as they are, newest first (none for a one-off delivery). */
  async runs(id: string): Promise<Occurrence[]> {
    return this.ctx.deliveries.listOccurrences(this.ctx.db, id);
  }

  /**
   * Deliveries waiting for OK whose confirmations all expired go back to approved (audited as
   * `confirmation_expired`), so nobody is offered an OK that can only answer 410. Done when such
   * a delivery is read, and for all of them at each scheduler tick. Returns the ids moved.
   */
  async expireConfirmations(id?: string): Promise<string[]> {
    const now = this.ctx.clock.now();
    const moved: string[] = [];
    for (const candidate of await this.ctx.deliveries.awaitingExpiredOk(this.ctx.db, now, 100, id)) {
      await this.ctx.db.transaction(async (tx) => {
        const delivery = await this.locked(tx, candidate);
        // Checked again under the lock: an OK or a new Confirm send may have come meanwhile.
        if (delivery.state !== 'pending_ok' || (await this.ctx.deliveries.awaitingExpiredOk(tx, now, 1, candidate)).length === 0) return;
        await this.ctx.transitions.delivery(tx, delivery, 'approved', { actor: SYSTEM_ACTOR, action: 'confirmation_expired', reason: null });
        moved.push(candidate);
      });
    }
    return moved;
  }

  async list(query: { limit: number; cursor?: string; state?: string }): Promise<DeliveryPage> {
    let before: { createdAt: string; id: string } | undefined;
    if (query.cursor) {
      const [createdAt, id] = Buffer.from(query.cursor, 'base64url').toString().split('|');
      if (!createdAt || !id || Number.isNaN(Date.parse(createdAt)) || !/^[0-9a-f-]{36}$/.test(id)) {
        throw new DomainError('INVALID_INPUT', 'The cursor is not one this API gave.', { issues: [{ path: 'query.cursor', message: 'is invalid' }] });
      }
      before = { createdAt, id };
    }
    let items = await this.ctx.deliveries.list(this.ctx.db, { limit: query.limit + 1, state: query.state, before });
    const expired = new Set((await Promise.all(items.filter((d) => d.state === 'pending_ok').map((d) => this.expireConfirmations(d.id)))).flat());
    if (expired.size > 0) {
      items = await Promise.all(items.map(async (d) => (expired.has(d.id) ? (await this.ctx.deliveries.get(this.ctx.db, d.id))! : d)));
      // A page of pending_ok deliveries no longer lists those just sent back to approved.
      items = items.filter((d) => !query.state || d.state === query.state);
    }
    const page = items.slice(0, query.limit);
    const last = page.at(-1);
    const nextCursor = items.length > query.limit && last ? Buffer.from(`${last.createdAt}|${last.id}`).toString('base64url') : null;
    return { items: await this.withActionsAll(page), nextCursor };
  }

  /**
   * Edits a delivery. A prepared (or later, not yet sending) delivery goes back to draft: its
   * preparation and frozen recipients are dropped and its pending confirmations die.
   */
  async update(id: string, patch: UpdateDeliveryInput, actor: Actor): Promise<Delivery> {
    return this.ctx.db.transaction(async (tx) => {
      const current = await this.locked(tx, id);
      await this.assertCan(tx, current, 'edit', `A delivery in state '${current.state}' can no longer be edited.`);
      const merged = {
        name: patch.name ?? current.name,
        channel: patch.channel ?? current.channel,
        audienceId: patch.audienceId ?? current.audienceId,
        content: patch.content ?? current.content,
        schedule: patch.schedule === undefined ? current.schedule : patch.schedule,
        recurrence: patch.recurrence === undefined ? current.recurrence : patch.recurrence,
        throughput: patch.throughput === undefined ? current.throughput : patch.throughput,
      };
      await this.validate(tx, merged);
      const details = { fields: Object.keys(patch) };
      if (current.state === 'draft') {
        const updated = await this.ctx.deliveries.update(tx, id, merged, this.ctx.clock.now());
        await this.ctx.transitions.record(tx, { actor, action: 'edit', deliveryId: id, fromState: 'draft', toState: 'draft', details });
        return updated;
      }
      await this.unprepare(tx, current, actor);
      return this.ctx.transitions.delivery(tx, current, 'draft', {
        actor,
        action: 'edit',
        reason: null,
        changes: { ...merged, preparation: null, contentHash: null, nextRunAt: null },
        details,
      });
    });
  }

  /**
   * Counts the audience, applies the exclusions and freezes the recipients into the send ledger:
   * draft → preparing → ready (or failed, with the reason).
   */
  async prepare(id: string, actor: Actor): Promise<Delivery> {
    await this.transition(id, 'preparing', actor, 'prepare');
    try {
      return await this.ctx.db.transaction(async (tx) => {
        const delivery = await this.locked(tx, id);
        if (delivery.state !== 'preparing') throw new DomainError('INVALID_STATE', 'The delivery changed during preparation.');
        const audience = await this.ctx.audiences.get(tx, delivery.audienceId);
        if (!audience) throw new DomainError('INVALID_STATE', `The audience '${delivery.audienceId}' no longer exists.`);
        const frozen = await this.ctx.ledger.freeze(tx, {
          deliveryId: id,
          occurrence: 0,
          audienceId: audience.id,
          filter: audience.filter,
          channel: delivery.channel,
        });
        // The links a click token may point to, fixed with the content.
        await this.ctx.sendQueue.saveLinks(tx, id, delivery.channel === 'email' && delivery.content.html ? this.extractLinks(delivery.content.html) : []);
        const preparation = { ...frozen, preparedAt: this.ctx.clock.now().toISOString() };
        return this.ctx.transitions.delivery(tx, delivery, 'ready', {
          actor,
          action: 'prepared',
          changes: { preparation, contentHash: contentHash(delivery) },
          details: { ...frozen },
        });
      });
    } catch (error) {
      await this.fail(id, actor, error);
      throw error;
    }
  }

  async approve(id: string, actor: Actor): Promise<Delivery> {
    return this.transition(id, 'approved', actor, 'approve');
  }

  /** Pauses a send; on a recurring delivery, its schedule and the runs sending now. */
  async pause(id: string, actor: Actor, reason = 'PAUSED_BY_USER'): Promise<Delivery> {
    return this.ctx.db.transaction(async (tx) => {
      const delivery = await this.locked(tx, id);
      await this.assertCan(tx, delivery, 'pause');
      await this.moveOccurrences(tx, id, ['sending'], 'paused', actor, 'pause', reason);
      const commands: CommandDraft[] = delivery.state === 'sending' ? [{ type: 'DeliveryPaused', deliveryId: id, occurrence: 0, issuedBy: actor.id, reason }] : [];
      return this.ctx.transitions.delivery(tx, delivery, 'paused', { actor, action: 'pause', reason, commands });
    });
  }

  /**
   * Resumes a paused send. A recurring delivery resumes its schedule (a missed run happens now)
   * and its paused runs, also those the circuit breaker paused while the schedule went on.
   * Recipients waiting for a retry are retried at once: whoever resumes says the cause is fixed.
   */
  async resume(id: string, actor: Actor): Promise<Delivery> {
    return this.ctx.db.transaction(async (tx) => {
      const delivery = await this.locked(tx, id);
      const now = this.ctx.clock.now();
      await this.assertCan(tx, delivery, 'resume');
      if (delivery.recurrence && (delivery.state === 'paused' || delivery.state === 'scheduled')) {
        const resumed = await this.moveOccurrences(tx, id, ['paused'], 'sending', actor, 'resume', null);
        // On schedule: only its paused runs resume (assertCan saw at least one).
        if (delivery.state === 'scheduled' && resumed.length > 0) return delivery;
        const nextRunAt = delivery.nextRunAt && new Date(delivery.nextRunAt) > now ? new Date(delivery.nextRunAt) : now;
        return this.ctx.transitions.delivery(tx, delivery, 'scheduled', { actor, action: 'resume', reason: null, changes: { nextRunAt } });
      }
      if (delivery.startedAt) {
        await this.ctx.sendQueue.retryNow(tx, { deliveryId: id, occurrence: 0 });
        const commands: CommandDraft[] = [{ type: 'DeliveryResumed', deliveryId: id, occurrence: 0, issuedBy: actor.id }];
        return this.ctx.transitions.delivery(tx, delivery, 'sending', { actor, action: 'resume', reason: null, commands });
      }
      // Paused before it ever started (e.g. a stale schedule): resuming starts the send.
      return this.ctx.transitions.delivery(tx, delivery, 'sending', {
        actor,
        action: 'resume',
        reason: null,
        changes: { startedAt: now, nextRunAt: null },
        commands: [startedCommand(delivery, 0, delivery.preparation?.toSend ?? 0, actor)],
      });
    });
  }

  async stop(id: string, actor: Actor): Promise<Delivery> {
    return this.ctx.db.transaction(async (tx) => {
      const delivery = await this.locked(tx, id);
      await this.assertCan(tx, delivery, 'stop');
      await this.ctx.confirmations.voidPending(tx, id);
      await this.stopWaitingOccurrences(tx, id, actor, 'stop', 'DELIVERY_STOPPED');
      await this.moveOccurrences(tx, id, ['sending', 'paused'], 'stopped', actor, 'stop', 'STOPPED_BY_USER');
      // Every run of it is over: whoever was not handed to a worker yet is `stopped`, not pending.
      await this.ctx.sendQueue.stopUnsent(tx, { deliveryId: id }, this.ctx.clock.now());
      const commands: CommandDraft[] = delivery.startedAt ? [{ type: 'DeliveryStopped', deliveryId: id, occurrence: 0, issuedBy: actor.id }] : [];
      return this.ctx.transitions.delivery(tx, delivery, 'stopped', { actor, action: 'stop', reason: 'STOPPED_BY_USER', changes: { nextRunAt: null }, commands });
    });
  }

  /**
   * The engine settled every recipient of a run: the delivery (or occurrence) is finished.
   * Returns false when the run is not sending (paused or stopped meanwhile): it stays as it is.
   */
  async finish(id: string, occurrence: number, actor: Actor): Promise<boolean> {
    return this.ctx.db.transaction(async (tx) => {
      const delivery = await this.locked(tx, id);
      if (occurrence > 0) return this.moveSendingOccurrence(tx, id, occurrence, 'finished', { actor, action: 'finish', reason: null });
      if (delivery.state !== 'sending') return false;
      await this.ctx.transitions.delivery(tx, delivery, 'finished', { actor, action: 'finish', reason: null, changes: { finishedAt: this.ctx.clock.now() } });
      return true;
    });
  }

  /**
   * The engine stops a run by itself (e.g. the circuit breaker), with the reason shown to users.
   * With `sendingSince` (the audit entry id that last moved the run into `sending`, as the caller
   * saw it), a run resumed since is left alone: the caller judged what came before the resume.
   */
  async pauseRun(id: string, occurrence: number, actor: Actor, reason: string, details: Record<string, unknown> = {}, sendingSince?: number): Promise<boolean> {
    return this.ctx.db.transaction(async (tx) => {
      const delivery = await this.locked(tx, id);
      if (sendingSince !== undefined && (await this.ctx.audit.lastEntryInto(tx, id, occurrence, 'sending')) !== sendingSince) return false;
      const move = { actor, action: 'pause', reason, details };
      if (occurrence > 0) return this.moveSendingOccurrence(tx, id, occurrence, 'paused', move);
      if (delivery.state !== 'sending') return false;
      await this.ctx.transitions.delivery(tx, delivery, 'paused', { ...move, commands: [{ type: 'DeliveryPaused', deliveryId: id, occurrence: 0, issuedBy: actor.id, reason }] });
      return true;
    });
  }

  /**
   * A user's pause, resume or stop of a recurring delivery reaches its runs: those in `from` move
   * to `to`, each with its command for the engines and its audit entry. Returns their numbers.
   */
  private async moveOccurrences(
    tx: Queryable,
    id: string,
    from: OccurrenceState[],
    to: 'paused' | 'sending' | 'stopped',
    actor: Actor,
    action: 'pause' | 'resume' | 'stop',
    reason: string | null,
  ): Promise<number[]> {
    const runs = (await this.ctx.deliveries.listOccurrences(tx, id)).filter((run) => from.includes(run.state));
    for (const run of runs) {
      const base = { deliveryId: id, occurrence: run.n, issuedBy: actor.id };
      let command: CommandDraft;
      if (to === 'paused') command = { ...base, type: 'DeliveryPaused', reason: reason ?? 'PAUSED_BY_USER' };
      else if (to === 'sending') {
        await this.ctx.sendQueue.retryNow(tx, { deliveryId: id, occurrence: run.n });
        command = { ...base, type: 'DeliveryResumed' };
      } else command = { ...base, type: 'DeliveryStopped' };
      await this.ctx.transitions.occurrence(tx, run, to, { actor, action, reason, commands: [command] });
    }
    return runs.map((run) => run.n);
  }

  /** Stops the runs still waiting for a confirmation (the recurring delivery was edited or stopped). */
  private async stopWaitingOccurrences(tx: Queryable, id: string, actor: Actor, action: 'edit' | 'stop', reason: string): Promise<void> {
    for (const run of await this.ctx.deliveries.listOccurrences(tx, id)) {
      if (run.state === 'pending_confirmation') await this.ctx.transitions.occurrence(tx, run, 'stopped', { actor, action, reason });
    }
  }

  /** Moves a sending occurrence (an engine's decision); false when it is no longer sending. */
  private async moveSendingOccurrence(
    tx: Queryable,
    id: string,
    occurrence: number,
    to: 'finished' | 'paused',
    move: { actor: Actor; action: string; reason: string | null; details?: Record<string, unknown> },
  ): Promise<boolean> {
    const run = await this.ctx.deliveries.getOccurrence(tx, id, occurrence, true);
    if (run?.state !== 'sending') return false;
    await this.ctx.transitions.occurrence(tx, run, to, move);
    return true;
  }

  /** Checks references and channel rules that a schema cannot; throws INVALID_INPUT with every issue. */
  private async validate(db: Queryable, input: Pick<CreateDeliveryInput, 'channel' | 'content' | 'audienceId' | 'schedule' | 'recurrence'>) {
    const issues = contentProblems(input.channel, input.content).map(([path, message]) => ({ path, message }));
    if (input.recurrence && input.schedule && !('sendAt' in input.schedule)) {
      issues.push({ path: 'schedule', message: 'a recurring delivery takes a sendAt (its first run), not recipientTimezone' });
    }
    if (!(await this.ctx.audiences.exists(db, input.audienceId))) {
      issues.push({ path: 'audienceId', message: `unknown audience '${input.audienceId}'` });
    }
    if (issues.length > 0) throw new DomainError('INVALID_INPUT', 'The delivery is not valid.', { issues });
  }

  private async locked(tx: Queryable, id: string): Promise<Delivery> {
    const delivery = await this.ctx.deliveries.get(tx, id, true);
    if (!delivery) throw notFound('Delivery', id);
    return delivery;
  }

  private async transition(id: string, to: DeliveryState, actor: Actor, action: 'prepare' | 'approve'): Promise<Delivery> {
    return this.ctx.db.transaction(async (tx) => {
      const delivery = await this.locked(tx, id);
      await this.assertCan(tx, delivery, action);
      return this.ctx.transitions.delivery(tx, delivery, to, { actor, action, reason: null });
    });
  }

  /** Refuses an action the delivery does not offer now (409 INVALID_STATE with the actions it offers). */
  private async assertCan(tx: Queryable, delivery: Delivery, action: DeliveryAction, message?: string): Promise<void> {
    const facts = await this.ctx.deliveries.actionFacts(tx, [delivery.id], this.ctx.clock.now());
    assertAction(delivery.state, action, facts.get(delivery.id)!, message);
  }

  /** An edit undoes the preparation: pending confirmations die, waiting runs stop, the frozen recipients go. */
  private async unprepare(tx: Queryable, delivery: Delivery, actor: Actor): Promise<void> {
    await this.ctx.confirmations.voidPending(tx, delivery.id);
    await this.stopWaitingOccurrences(tx, delivery.id, actor, 'edit', 'DELIVERY_EDITED');
    await this.ctx.ledger.discard(tx, delivery.id, 0);
  }

  private async fail(id: string, actor: Actor, error: unknown): Promise<void> {
    const reason = error instanceof DomainError ? error.code : 'PREPARATION_FAILED';
    await this.ctx.db
      .transaction(async (tx) => {
        const delivery = await this.ctx.deliveries.get(tx, id, true);
        if (delivery?.state === 'preparing') await this.ctx.transitions.delivery(tx, delivery, 'failed', { actor, action: 'prepare_failed', reason });
      })
      .catch(() => undefined);
  }
}

/** What a confirmation is bound to: channel, content, audience, schedule, recurrence, throughput. */
export function contentHash(d: Pick<Delivery, 'channel' | 'content' | 'audienceId' | 'schedule' | 'recurrence' | 'throughput'>): string {
  return stableHash({
    channel: d.channel,
    content: d.content,
    audienceId: d.audienceId,
    schedule: d.schedule,
    recurrence: d.recurrence,
    throughput: d.throughput,
  });
}
