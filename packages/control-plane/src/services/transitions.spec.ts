// The transition primitive, and every service that changes a delivery's or a run's state: a move
// the lifecycle table does not allow is refused (INVALID_STATE) and leaves no state, audit entry
// or outbox command behind; every state written goes through the primitive, audited.
import { ALICE, approved, audienceOf, auditTrail, commands, footprint, inMemoryControlPlane, started, type TestControlPlane } from '../../test/services.js';
import { DomainError } from '../errors.js';
import { DELIVERY_STATES, type DeliveryState, OCCURRENCE_STATES, OCCURRENCE_TRANSITIONS, type OccurrenceState, TRANSITIONS } from '../lifecycle.js';
import { inMemoryRepositories } from '../../test/in-memory.js';
import { ENGINE_ACTOR, Transitions } from './transitions.js';

const rejectsWith = async (promise: Promise<unknown>, code: string) => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  expect((error as DomainError).code).toBe(code);
};

/** Puts a delivery (and, with `run`, its run 1) in the given states, as if it got there. */
async function deliveryIn(t: TestControlPlane, state: DeliveryState, run?: OccurrenceState) {
  const audienceId = await audienceOf(t.cp);
  const { id } = await t.cp.deliveries.create({ name: 'x', channel: 'sms', audienceId, content: { text: 'hi' } }, ALICE);
  Object.assign(t.data.deliveries.get(id)!, { state, preparation: { audienceCount: 0, toSend: 0, excluded: {}, preparedAt: '2026-12-01T08:00:00.000Z' } });
  if (run) {
    const preparation = { audienceCount: 0, toSend: 0, excluded: {}, preparedAt: '2026-12-01T08:00:00.000Z' };
    t.data.occurrences.set([id, 1].join('\u0000'), { deliveryId: id, n: 1, state: run, stateReason: null, version: 1, scheduledFor: '2026-12-01T08:00:00.000Z', preparation, createdAt: '', updatedAt: '' });
  }
  return id;
}

describe('the transition primitive', () => {
  const forbidden = DELIVERY_STATES.flatMap((from) => DELIVERY_STATES.filter((to) => !TRANSITIONS[from].includes(to)).map((to) => [from, to] as const));
  const allowed = DELIVERY_STATES.flatMap((from) => TRANSITIONS[from].map((to) => [from, to] as const));

  it.each(forbidden)('refuses %s → %s with INVALID_STATE, writing nothing', async (from, to) => {
    const t = inMemoryControlPlane();
    const id = await deliveryIn(t, from);
    const transitions = new Transitions(inMemoryRepositories(t.data), t.clock);
    const before = footprint(t.data);
    // As read under the row lock (not through deliveries.get, which expires a pending_ok first).
    const move = t.store.transaction(async (tx) =>
      transitions.delivery(tx, structuredClone(t.data.deliveries.get(id)!), to, {
        actor: ALICE,
        action: 'test',
        reason: 'WHY',
        commands: [{ type: 'DeliveryStopped', deliveryId: id, occurrence: 0, issuedBy: ALICE.id }],
      }),
    );
    await rejectsWith(move, 'INVALID_STATE');
    expect(footprint(t.data)).toBe(before);
  });

  it.each(allowed)('writes %s → %s with its audit entry and commands, in one transaction', async (from, to) => {
    const t = inMemoryControlPlane();
    const id = await deliveryIn(t, from);
    const transitions = new Transitions(inMemoryRepositories(t.data), t.clock);
    const delivery = t.data.deliveries.get(id)!;
    const moved = await t.store.transaction((tx) =>
      transitions.delivery(tx, structuredClone(delivery), to, {
        actor: ALICE,
        action: 'test',
        reason: 'WHY',
        details: { more: 1 },
        changes: { nextRunAt: null },
        commands: [{ type: 'DeliveryStopped', deliveryId: id, occurrence: 0, issuedBy: ALICE.id }],
      }),
    );
    expect(moved).toMatchObject({ state: to, stateReason: 'WHY', version: delivery.version });
    expect(t.data.audit.at(-1)).toMatchObject({ action: 'test', actor: 'alice', fromState: from, toState: to, details: { reason: 'WHY', more: 1 } });
    expect(commands(t.data)).toEqual(['DeliveryStopped:0']);
  });

  const forbiddenRuns = OCCURRENCE_STATES.flatMap((from) => OCCURRENCE_STATES.filter((to) => !OCCURRENCE_TRANSITIONS[from].includes(to)).map((to) => [from, to] as const));

  it.each(forbiddenRuns)('refuses a run %s → %s with INVALID_STATE, writing nothing', async (from, to) => {
    const t = inMemoryControlPlane();
    const id = await deliveryIn(t, 'scheduled', from);
    const transitions = new Transitions(inMemoryRepositories(t.data), t.clock);
    const before = footprint(t.data);
    const run = (await t.cp.deliveries.runs(id))[0]!;
    const move = t.store.transaction((tx) => transitions.occurrence(tx, run, to, { actor: ALICE, action: 'test', commands: [{ type: 'DeliveryStopped', deliveryId: id, occurrence: 1, issuedBy: 'alice' }] }));
    await rejectsWith(move, 'INVALID_STATE');
    expect(footprint(t.data)).toBe(before);
  });

  it('refuses a move computed on a state that changed meanwhile, writing nothing', async () => {
    const t = inMemoryControlPlane();
    const id = await deliveryIn(t, 'scheduled');
    const transitions = new Transitions(inMemoryRepositories(t.data), t.clock);
    const seen = structuredClone(t.data.deliveries.get(id)!);
    t.data.deliveries.get(id)!.state = 'stopped';
    const before = footprint(t.data);
    await rejectsWith(t.store.transaction((tx) => transitions.delivery(tx, seen, 'sending', { actor: ALICE, action: 'test' })), 'INVALID_STATE');
    expect(footprint(t.data)).toBe(before);
  });
});

describe('a forbidden move through each service that changes state changes nothing', () => {
  // Each: a delivery in a state where the call is not allowed, the call, and what it answers.
  const refusals: [string, DeliveryState, (t: TestControlPlane, id: string) => Promise<unknown>, string | false][] = [
    ['deliveries.update', 'sending', (t, id) => t.cp.deliveries.update(id, { name: 'new' }, ALICE), 'INVALID_STATE'],
    ['deliveries.prepare', 'ready', (t, id) => t.cp.deliveries.prepare(id, ALICE), 'INVALID_STATE'],
    ['deliveries.approve', 'draft', (t, id) => t.cp.deliveries.approve(id, ALICE), 'INVALID_STATE'],
    ['deliveries.pause', 'approved', (t, id) => t.cp.deliveries.pause(id, ALICE), 'INVALID_STATE'],
    ['deliveries.resume', 'sending', (t, id) => t.cp.deliveries.resume(id, ALICE), 'INVALID_STATE'],
    ['deliveries.stop', 'finished', (t, id) => t.cp.deliveries.stop(id, ALICE), 'INVALID_STATE'],
    ['confirmations.confirm', 'draft', (t, id) => t.cp.confirmations.confirm(id, ALICE), 'INVALID_STATE'],
    ['confirmations.confirm (a run)', 'scheduled', (t, id) => t.cp.confirmations.confirm(id, ALICE, 1), 'INVALID_STATE'],
    // The engine's moves are no-ops on a run that is not sending (paused or stopped meanwhile): false.
    ['deliveries.finish', 'paused', (t, id) => t.cp.deliveries.finish(id, 0, ENGINE_ACTOR), false],
    ['deliveries.pauseRun', 'stopped', (t, id) => t.cp.deliveries.pauseRun(id, 0, ENGINE_ACTOR, 'CIRCUIT_BREAKER'), false],
    ['sending.finish', 'stopped', (t, id) => t.cp.sending.finish({ deliveryId: id, occurrence: 0 }), false],
    ['sending.pause', 'finished', (t, id) => t.cp.sending.pause({ deliveryId: id, occurrence: 0 }, 'CIRCUIT_BREAKER'), false],
  ];

  it.each(refusals)('%s on a delivery in %s', async (_name, state, call, code) => {
    const t = inMemoryControlPlane();
    const id = await deliveryIn(t, state, 'finished');
    const before = footprint(t.data);
    if (code) await rejectsWith(call(t, id), code);
    else expect(await call(t, id)).toBe(false);
    expect(footprint(t.data)).toBe(before);
  });

  it('confirmations.ok on a delivery stopped after Confirm send: CONFIRMATION_STALE, nothing starts', async () => {
    const t = inMemoryControlPlane();
    const delivery = await approved(t.cp, await audienceOf(t.cp));
    const ticket = await t.cp.confirmations.confirm(delivery.id, ALICE);
    await t.cp.deliveries.stop(delivery.id, ALICE);
    const before = footprint(t.data);
    await rejectsWith(t.cp.confirmations.ok(delivery.id, ticket.confirmationId, ALICE), 'CONFIRMATION_STALE');
    expect(footprint(t.data)).toBe(before);
  });

  it('the scheduler leaves a delivery alone that is no longer scheduled when it is due', async () => {
    const t = inMemoryControlPlane();
    const id = await deliveryIn(t, 'paused');
    t.data.deliveries.get(id)!.nextRunAt = '2026-12-01T07:59:00.000Z';
    const before = footprint(t.data);
    expect(await t.cp.scheduler.tick()).toMatchObject({ leader: true, started: [], paused: [], occurrences: [], expired: [] });
    expect(footprint(t.data)).toBe(before);
  });
});

describe('every state written goes through the primitive, audited', () => {
  it('over a one-off delivery and a recurring one, from creation to their end', async () => {
    const t = inMemoryControlPlane();
    const audienceId = await audienceOf(t.cp);
    const oneOff = await started(t.cp, audienceId);
    await t.cp.deliveries.pause(oneOff.id, ALICE);
    await t.cp.deliveries.resume(oneOff.id, ALICE);
    await t.cp.sending.finish({ deliveryId: oneOff.id, occurrence: 0 });
    const recurring = await started(t.cp, audienceId, { recurrence: { every: '1h', requireConfirmation: true } });
    for (let hour = 0; hour < 4; hour++) {
      await t.cp.scheduler.tick();
      t.clock.advance(3_600_000);
    }
    const ticket = await t.cp.confirmations.confirm(recurring.id, ALICE, 4);
    await t.cp.confirmations.ok(recurring.id, ticket.confirmationId, ALICE, 4);
    await t.cp.deliveries.pause(recurring.id, ALICE);
    await t.cp.deliveries.stop(recurring.id, ALICE);

    expect(t.data.stateWrites.length).toBeGreaterThan(10);
    for (const write of t.data.stateWrites) {
      const table: Record<string, readonly string[]> = write.occurrence === 0 ? TRANSITIONS : OCCURRENCE_TRANSITIONS;
      expect(table[write.from]).toContain(write.to);
      expect(t.data.audit).toContainEqual(expect.objectContaining({ deliveryId: write.deliveryId, occurrence: write.occurrence, fromState: write.from, toState: write.to }));
    }
    expect(auditTrail(t.data, oneOff.id)).toEqual([
      'create:->draft',
      'prepare:draft->preparing',
      'prepared:preparing->ready',
      'approve:ready->approved',
      'confirm_send:approved->pending_ok',
      'ok:pending_ok->sending',
      'pause:sending->paused',
      'resume:paused->sending',
      'finish:sending->finished',
    ]);
    // The runs: 1 and 2 expired (at most 2 wait), 3 stopped with the delivery while it waited, 4 OK'd, paused, stopped.
    expect(auditTrail(t.data, recurring.id).filter((e) => e.startsWith('#'))).toEqual([
      '#1 occurrence_created:->pending_confirmation',
      '#2 occurrence_created:->pending_confirmation',
      '#3 occurrence_created:->pending_confirmation',
      '#1 occurrence_expired:pending_confirmation->stopped',
      '#4 occurrence_created:->pending_confirmation',
      '#2 occurrence_expired:pending_confirmation->stopped',
      '#4 confirm_send:pending_confirmation->pending_confirmation',
      '#4 ok:pending_confirmation->sending',
      '#4 pause:sending->paused',
      '#3 stop:pending_confirmation->stopped',
      '#4 stop:paused->stopped',
    ]);
  });
});
