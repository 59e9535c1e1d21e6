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
  pending_ok: ['sending', 'scheduled', 'draft', 'stopped'],
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

export function assertOccurrenceTransition(from: OccurrenceState, to: OccurrenceState, action: string): void {
  if (!OCCURRENCE_TRANSITIONS[from].includes(to)) {
    throw new DomainError('INVALID_STATE', `Cannot ${action} an occurrence in state '${from}'.`, {
      state: from,
      allowed: OCCURRENCE_TRANSITIONS[from],
    });
  }
}
