// The one way a delivery or a run changes state. A move is checked against the lifecycle table
// (TRANSITIONS, OCCURRENCE_TRANSITIONS: anything else is refused with INVALID_STATE), then the
// state is written with its other changes, its audit entry and its outbox commands, all in the
// caller's transaction: a state change is never seen without its audit entry or the commands
// the engines act on. The repositories' transition methods are called from here only; a step
// that changes no state (a delivery or run created, a Confirm send repeated) is recorded here too.
import { randomUUID } from 'node:crypto';
import { type DeliveryCommand, TOPICS } from '@herald/contracts';
import type { Clock } from '../clock.js';
import type { Queryable } from '../database.js';
import { DomainError } from '../errors.js';
import { assertOccurrenceTransition, assertTransition, type DeliveryState, type OccurrenceState } from '../lifecycle.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { Delivery, DeliveriesRepository, DeliveryChanges, Occurrence } from '../repositories/deliveries.repository.js';
import type { OutboxRepository } from '../repositories/outbox.repository.js';

export interface Actor {
  id: string;
  name?: string;
  roles: readonly string[];
}

/** The scheduler and other automatic moves act as this actor in the audit log. */
export const SYSTEM_ACTOR: Actor = { id: 'system:scheduler', roles: [] };
/** The send engine, in the audit log. */
export const ENGINE_ACTOR: Actor = { id: 'system:engine', roles: [] };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A delivery command before the outbox gives it its id and time. */
export type CommandDraft = DistributiveOmit<DeliveryCommand, 'commandId' | 'issuedAt'>;

/** What a move writes besides the state. */
export interface Move {
  actor: Actor;
  /** The audit entry's action (e.g. `pause`, `schedule_due`). */
  action: string;
  /** The new stateReason (also in the audit details when set); undefined leaves it as it is. */
  reason?: string | null;
  /** Other columns written with the state (a delivery's only). */
  changes?: DeliveryChanges;
  /** More audit details (after the reason). */
  details?: Record<string, unknown>;
  summaryHash?: string;
  /** Commands for the engines, in the outbox of the same transaction. */
  commands?: CommandDraft[];
}

/** An audited step that changes no state. */
export interface Step {
  actor: Actor;
  action: string;
  deliveryId: string;
  occurrence?: number;
  fromState?: string;
  toState: string;
  details?: Record<string, unknown>;
  summaryHash?: string;
  commands?: CommandDraft[];
}

/** The DeliveryStarted command of a run of `delivery`. */
export function startedCommand(delivery: Delivery, occurrence: number, toSend: number, actor: Actor): CommandDraft {
  return {
    type: 'DeliveryStarted',
    deliveryId: delivery.id,
    occurrence,
    issuedBy: actor.id,
    channel: delivery.channel,
    toSend,
    contentHash: delivery.contentHash ?? '',
    throughputPerHour: delivery.throughput?.perHour ?? null,
  };
}

export class Transitions {
  constructor(
    private readonly repositories: { deliveries: DeliveriesRepository; audit: AuditRepository; outbox: OutboxRepository },
    private readonly clock: Clock,
  ) {}

  /** Moves `delivery` (as read under its row lock) to `to`; refused with INVALID_STATE unless the lifecycle allows it. */
  async delivery(tx: Queryable, delivery: Delivery, to: DeliveryState, move: Move): Promise<Delivery> {
    assertTransition(delivery.state, to, move.action);
    const now = this.clock.now();
    const moved = await this.repositories.deliveries.transition(tx, delivery.id, { from: delivery.state, to, reason: move.reason, changes: move.changes ?? {} }, now);
    if (!moved) throw changedMeanwhile(delivery.state);
    await this.write(tx, now, { ...move, deliveryId: delivery.id, occurrence: 0, fromState: delivery.state, toState: to, details: detailsOf(move) });
    return moved;
  }

  /** Moves `run` of `delivery` (as read under its row lock) to `to`; refused with INVALID_STATE unless the lifecycle allows it. */
  async occurrence(tx: Queryable, run: Occurrence, to: OccurrenceState, move: Omit<Move, 'changes'>): Promise<Occurrence> {
    assertOccurrenceTransition(run.state, to, move.action);
    const now = this.clock.now();
    const reason = move.reason ?? null;
    const moved = await this.repositories.deliveries.transitionOccurrence(tx, run.deliveryId, run.n, { from: run.state, to, reason }, now);
    if (!moved) throw changedMeanwhile(run.state);
    await this.write(tx, now, { ...move, deliveryId: run.deliveryId, occurrence: run.n, fromState: run.state, toState: to, details: detailsOf(move) });
    return moved;
  }

  /** Records a step that changes no state, with its commands. */
  async record(tx: Queryable, step: Step): Promise<void> {
    await this.write(tx, this.clock.now(), step);
  }

  private async write(tx: Queryable, at: Date, step: Step): Promise<void> {
    for (const draft of step.commands ?? []) {
      const command = { ...draft, commandId: randomUUID(), issuedAt: at.toISOString() } as DeliveryCommand;
      await this.repositories.outbox.enqueue(tx, { commandId: command.commandId, topic: TOPICS.deliveryCommands, key: command.deliveryId, payload: command });
    }
    await this.repositories.audit.record(tx, {
      at,
      actor: step.actor.id,
      deliveryId: step.deliveryId,
      occurrence: step.occurrence ?? 0,
      action: step.action,
      fromState: step.fromState,
      toState: step.toState,
      summaryHash: step.summaryHash,
      ...(step.details ? { details: step.details } : {}),
    });
  }
}

/** The audit details of a move: its reason when it has one, then its other details; none when empty. */
function detailsOf(move: Pick<Move, 'reason' | 'details'>): Record<string, unknown> | undefined {
  const details = { ...(move.reason ? { reason: move.reason } : {}), ...move.details };
  return Object.keys(details).length > 0 ? details : undefined;
}

// NOTE: callers read the row under its lock before moving it, so this is a broken caller, not a race.
const changedMeanwhile = (state: string) =>
  new DomainError('INVALID_STATE', `The state changed from '${state}' before the move was written.`, { state });
