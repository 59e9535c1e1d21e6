// The delivery state machine of DESIGN.md ("Delivery lifecycle"), as plain data and functions.
// Reference codes (Adobe Campaign): Editing 0, Ready to be delivered 45, Start pending 51,
// In progress 55, Paused 75, Stopped 85, Failed 87, Finished 95.
import { DomainError } from './errors.js';

export const DELIVERY_STATES = [
  'draft',
  'preparing',
  'ready',
  'approved',
  'pending_ok',
  'scheduled',
  'sending',
  'paused',
  'stopped',
  'failed',
  'finished',
] as const;

export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** Every allowed move; anything else is refused with INVALID_STATE. */
export const TRANSITIONS: Readonly<Record<DeliveryState, readonly DeliveryState[]>> = {
  draft: ['preparing'],
  preparing: ['ready', 'failed'],
  // Editing a prepared delivery sends it back to draft (re-prepare), voiding confirmations.
  ready: ['approved', 'draft', 'stopped'],
  approved: ['pending_ok', 'draft', 'stopped'],
  // Back to approved when every confirmation expired without an OK.
  pending_ok: ['sending', 'scheduled', 'approved', 'draft', 'stopped'],
  scheduled: ['sending', 'paused', 'draft', 'stopped'],
  sending: ['paused', 'stopped', 'finished', 'failed'],
  // A paused recurring delivery resumes to scheduled; a paused send resumes to sending.
  paused: ['sending', 'scheduled', 'stopped'],
  stopped: [],
  failed: ['draft'],
  finished: [],
};

/** States in which content, audience or schedule may still be edited. */
export const EDITABLE_STATES: readonly DeliveryState[] = ['draft', 'ready', 'approved', 'pending_ok', 'scheduled', 'failed'];

export function canTransition(from: DeliveryState, to: DeliveryState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** What a user may ask of a delivery, one API call each. */
export const DELIVERY_ACTIONS = ['edit', 'prepare', 'approve', 'confirm', 'ok', 'pause', 'resume', 'stop'] as const;
export type DeliveryAction = (typeof DELIVERY_ACTIONS)[number];

/** Facts beyond the state that decide whether an action is possible. */
export interface ActionFacts {
  /** A confirmation of the delivery waits for its OK and has not expired. */
  liveConfirmation: boolean;
  /** A run of this recurring delivery is paused (resume reaches it while the schedule goes on). */
  pausedRuns: boolean;
}

// NOTE: the one source of both the `actions` a delivery offers and what the services accept:
// a test tries every action in every state over HTTP and checks offered ⇔ accepted.
const ACTION_RULES: Readonly<Record<DeliveryAction, (state: DeliveryState, facts: ActionFacts) => boolean>> = {
  edit: (state) => EDITABLE_STATES.includes(state),
  prepare: (state) => canTransition(state, 'preparing'),
  // NOTE: not canTransition(state, 'approved'): pending_ok goes back to approved by expiry, not by approving.
  approve: (state) => state === 'ready',
  // Confirm send again while waiting for OK opens a new confirmation (the earlier one dies).
  confirm: (state) => canTransition(state, 'pending_ok') || state === 'pending_ok',
  ok: (state, facts) => state === 'pending_ok' && facts.liveConfirmation,
  pause: (state) => canTransition(state, 'paused'),
  resume: (state, facts) => state === 'paused' || (state === 'scheduled' && facts.pausedRuns),
  stop: (state) => canTransition(state, 'stopped'),
};

/** The actions possible on a delivery in `state`, in the order the console shows them. */
export function availableActions(state: DeliveryState, facts: ActionFacts): DeliveryAction[] {
  return DELIVERY_ACTIONS.filter((action) => ACTION_RULES[action](state, facts));
}

/** Refuses an action the delivery does not offer now: 409 INVALID_STATE naming the actions it does offer. */
export function assertAction(state: DeliveryState, action: DeliveryAction, facts: ActionFacts, message?: string): void {
  if (!ACTION_RULES[action](state, facts)) {
    throw new DomainError('INVALID_STATE', message ?? `Cannot ${action} a delivery in state '${state}'.`, {
      state,
      action,
      allowed: availableActions(state, facts),
    });
  }
}

export function assertTransition(from: DeliveryState, to: DeliveryState, action: string): void {
  if (!canTransition(from, to)) {
    throw new DomainError('INVALID_STATE', `Cannot ${action} a delivery in state '${from}'.`, {
      state: from,
      allowed: TRANSITIONS[from],
    });
  }
}

/** Occurrences of a recurring delivery: each run waits for its own confirmation when required. */
export const OCCURRENCE_STATES = ['pending_confirmation', 'sending', 'paused', 'stopped', 'finished', 'failed'] as const;
export type OccurrenceState = (typeof OCCURRENCE_STATES)[number];

export const OCCURRENCE_TRANSITIONS: Readonly<Record<OccurrenceState, readonly OccurrenceState[]>> = {
  pending_confirmation: ['sending', 'stopped'],
  sending: ['paused', 'stopped', 'finished', 'failed'],
  paused: ['sending', 'stopped'],
  stopped: [],
  finished: [],
  failed: [],
};

/** What a user may ask of one run (pause, resume and stop act through its delivery). */
export const OCCURRENCE_ACTIONS = ['confirm', 'ok'] as const;
export type OccurrenceAction = (typeof OCCURRENCE_ACTIONS)[number];

export function availableOccurrenceActions(state: OccurrenceState, facts: Pick<ActionFacts, 'liveConfirmation'>): OccurrenceAction[] {
  if (state !== 'pending_confirmation') return [];
  return facts.liveConfirmation ? ['confirm', 'ok'] : ['confirm'];
}

export function assertOccurrenceTransition(from: OccurrenceState, to: OccurrenceState, action: string): void {
  if (!OCCURRENCE_TRANSITIONS[from].includes(to)) {
    throw new DomainError('INVALID_STATE', `Cannot ${action} an occurrence in state '${from}'.`, {
      state: from,
      allowed: OCCURRENCE_TRANSITIONS[from],
    });
  }
}
