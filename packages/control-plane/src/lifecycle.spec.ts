import { DomainError } from './errors.js';
import {
  assertAction,
  assertOccurrenceTransition,
  assertTransition,
  availableActions,
  canTransition,
  DELIVERY_STATES,
  OCCURRENCE_STATES,
  OCCURRENCE_TRANSITIONS,
  type DeliveryState,
} from './lifecycle.js';

// The expected table is written out again on purpose: a change to TRANSITIONS must change this test too.
const ALLOWED: [DeliveryState, DeliveryState][] = [
  ['draft', 'preparing'],
  ['preparing', 'ready'],
  ['preparing', 'failed'],
  ['ready', 'approved'],
  ['ready', 'draft'],
  ['ready', 'stopped'],
  ['approved', 'pending_ok'],
  ['approved', 'draft'],
  ['approved', 'stopped'],
  ['pending_ok', 'sending'],
  ['pending_ok', 'scheduled'],
  ['pending_ok', 'approved'],
  ['pending_ok', 'draft'],
  ['pending_ok', 'stopped'],
  ['scheduled', 'sending'],
  ['scheduled', 'paused'],
  ['scheduled', 'draft'],
  ['scheduled', 'stopped'],
  ['sending', 'paused'],
  ['sending', 'stopped'],
  ['sending', 'finished'],
  ['sending', 'failed'],
  ['paused', 'sending'],
  ['paused', 'scheduled'],
  ['paused', 'stopped'],
  ['failed', 'draft'],
];

const allowed = new Set(ALLOWED.map(([from, to]) => `${from}->${to}`));
const everyPair = DELIVERY_STATES.flatMap((from) => DELIVERY_STATES.map((to) => [from, to] as [DeliveryState, DeliveryState]));

describe('delivery state machine', () => {
  it.each(ALLOWED)('allows %s -> %s', (from, to) => {
    expect(canTransition(from, to)).toBe(true);
    expect(() => assertTransition(from, to, 'move')).not.toThrow();
  });

  it.each(everyPair.filter(([from, to]) => !allowed.has(`${from}->${to}`)))('forbids %s -> %s', (from, to) => {
    expect(canTransition(from, to)).toBe(false);
    try {
      assertTransition(from, to, 'move');
      throw new Error('expected INVALID_STATE');
    } catch (error) {
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).code).toBe('INVALID_STATE');
      expect((error as DomainError).status).toBe(409);
    }
  });

  it('never lets a sent delivery go back to editing', () => {
    for (const state of ['sending', 'paused', 'finished', 'stopped'] as const) expect(canTransition(state, 'draft')).toBe(false);
  });

  it('reaches sending only through OK or the scheduler, never straight from approval', () => {
    const into = DELIVERY_STATES.filter((from) => canTransition(from, 'sending'));
    expect(into.sort()).toEqual(['paused', 'pending_ok', 'scheduled']);
  });
});

describe('delivery actions', () => {
  const none = { liveConfirmation: false, pausedRuns: false };

  it('offers OK only while a confirmation is live', () => {
    expect(availableActions('pending_ok', { ...none, liveConfirmation: true })).toEqual(['edit', 'confirm', 'ok', 'stop']);
    expect(availableActions('pending_ok', none)).toEqual(['edit', 'confirm', 'stop']);
  });

  it('offers resume on a scheduled delivery only while one of its runs is paused', () => {
    expect(availableActions('scheduled', none)).toEqual(['edit', 'pause', 'stop']);
    expect(availableActions('scheduled', { ...none, pausedRuns: true })).toEqual(['edit', 'pause', 'resume', 'stop']);
  });

  it('refuses an action not offered with the actions that are, never states', () => {
    try {
      assertAction('draft', 'pause', none);
      throw new Error('expected INVALID_STATE');
    } catch (error) {
      expect((error as DomainError).details).toEqual({ state: 'draft', action: 'pause', allowed: ['edit', 'prepare'] });
    }
  });

  it('offers nothing on a delivery that is over', () => {
    for (const state of ['stopped', 'finished', 'preparing'] as const) expect(availableActions(state, { liveConfirmation: true, pausedRuns: true })).toEqual([]);
  });
});

describe('occurrence state machine', () => {
  const pairs = OCCURRENCE_STATES.flatMap((from) => OCCURRENCE_STATES.map((to) => [from, to] as const));
  it.each(pairs)('%s -> %s follows the table', (from, to) => {
    const ok = OCCURRENCE_TRANSITIONS[from].includes(to);
    if (ok) expect(() => assertOccurrenceTransition(from, to, 'move')).not.toThrow();
    else expect(() => assertOccurrenceTransition(from, to, 'move')).toThrow(DomainError);
  });

  it('an occurrence waiting for confirmation can only be confirmed or stopped', () => {
    expect(OCCURRENCE_TRANSITIONS.pending_confirmation).toEqual(['sending', 'stopped']);
  });
});
