// The delivery lifecycle service over in-memory repositories: what each step writes (state,
// preparation, ledger, links, confirmations, audit, outbox commands) and what it refuses.
import { ALICE, approved, audienceOf, auditTrail, commands, deliveryInput, footprint, inMemoryControlPlane, people, started } from '../../test/services.js';
import { DomainError } from '../errors.js';
import { ENGINE_ACTOR } from './transitions.js';

describe('DeliveriesService', () => {
  it('creates a draft, audited, offering edit and prepare', async () => {
    const { cp, data } = inMemoryControlPlane();
    const delivery = await cp.deliveries.create(deliveryInput(await audienceOf(cp)), ALICE);
    expect(delivery).toMatchObject({ state: 'draft', version: 1, createdBy: 'alice', preparation: null });
    expect((await cp.deliveries.view(delivery.id)).actions).toEqual(['edit', 'prepare']);
    expect(auditTrail(data, delivery.id)).toEqual(['create:->draft']);
  });

  it('refuses a delivery it cannot send (every issue at once, INVALID_INPUT), writing nothing', async () => {
    const { cp, data } = inMemoryControlPlane();
    await audienceOf(cp);
    const before = footprint(data);
    const error = await cp.deliveries
      .create({ ...deliveryInput('00000000-0000-4000-8000-00000000dead'), content: { subject: 'no sender' } }, ALICE)
      .catch((e: DomainError) => e);
    expect(error).toMatchObject({ code: 'INVALID_INPUT' });
    expect((error as DomainError).details.issues).toEqual([
      { path: 'content.from', message: 'is required for email' },
      { path: 'content', message: 'needs html or text' },
      { path: 'audienceId', message: "unknown audience '00000000-0000-4000-8000-00000000dead'" },
    ]);
    expect(footprint(data)).toBe(before);
  });

  it('prepares: freezes the recipients (exclusions counted), fixes the links, ready with a content hash', async () => {
    const { cp, data } = inMemoryControlPlane();
    const profiles = [...people(3), { id: 'p4', email: 'P1@example.com ' }, { id: 'p5', email: 'nope' }, { id: 'p6', email: 'q@example.com' }];
    const audienceId = await audienceOf(cp, profiles);
    // p6 unsubscribed before the preparation.
    data.profiles.get('p6')!.status = 'unsubscribed';
    const { id } = await cp.deliveries.create(deliveryInput(audienceId), ALICE);
    const ready = await cp.deliveries.prepare(id, ALICE);
    expect(ready).toMatchObject({
      state: 'ready',
      preparation: { audienceCount: 6, toSend: 3, excluded: { duplicate_address: 1, invalid_address: 1, unsubscribed: 1, quarantined: 0, denylisted: 0 } },
    });
    expect(ready.contentHash).toMatch(/^sha256:/);
    expect(await cp.logs.sendingLogs(id, { limit: 10 })).toHaveLength(3);
    expect((await cp.logs.exclusions(id, { limit: 10 })).map((e) => `${e.profileId}:${e.reason}`)).toEqual(['p4:duplicate_address', 'p5:invalid_address', 'p6:unsubscribed']);
    expect(data.links.get(id)).toEqual(['https://shop.example/sale', 'https://shop.example/u']);
    expect(auditTrail(data, id)).toEqual(['create:->draft', 'prepare:draft->preparing', 'prepared:preparing->ready']);
  });

  it('a preparation that fails leaves the delivery failed, with the reason, audited', async () => {
    const { cp, data } = inMemoryControlPlane();
    const { id } = await cp.deliveries.create(deliveryInput(await audienceOf(cp)), ALICE);
    data.audiences.clear(); // the audience is gone by the time it is frozen
    await expect(cp.deliveries.prepare(id, ALICE)).rejects.toMatchObject({ code: 'INVALID_STATE' });
    expect(await cp.deliveries.get(id)).toMatchObject({ state: 'failed', stateReason: 'INVALID_STATE' });
    expect(auditTrail(data, id).at(-1)).toBe('prepare_failed:preparing->failed');
    expect(data.audit.at(-1)?.details).toEqual({ reason: 'INVALID_STATE' });
  });

  it('an edit of a prepared delivery sends it back to draft: preparation, recipients and confirmations are gone', async () => {
    const { cp, data } = inMemoryControlPlane();
    const delivery = await approved(cp, await audienceOf(cp));
    const ticket = await cp.confirmations.confirm(delivery.id, ALICE);
    const edited = await cp.deliveries.update(delivery.id, { name: 'Winter sale, again' }, ALICE);
    expect(edited).toMatchObject({ state: 'draft', name: 'Winter sale, again', preparation: null, contentHash: null });
    expect(data.confirmations.get(ticket.confirmationId)?.status).toBe('void');
    expect(await cp.logs.sendingLogs(delivery.id, { limit: 10 })).toEqual([]);
    expect(data.audit.at(-1)).toMatchObject({ action: 'edit', fromState: 'pending_ok', toState: 'draft', details: { fields: ['name'] } });
    // An edit in draft changes the fields only, audited draft → draft.
    await cp.deliveries.update(delivery.id, { name: 'Third' }, ALICE);
    expect(auditTrail(data, delivery.id).at(-1)).toBe('edit:draft->draft');
  });

  it('pauses and resumes a send, each with its command for the engines; resume makes the retries due', async () => {
    const { cp, data } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp));
    expect(commands(data)).toEqual(['DeliveryStarted:0']);
    const row = data.ledger.values().next().value!;
    Object.assign(row, { status: 'retry', nextAttemptAt: new Date('2026-12-01T09:00:00Z') });
    expect(await cp.deliveries.pause(id, ALICE)).toMatchObject({ state: 'paused', stateReason: 'PAUSED_BY_USER' });
    expect(await cp.deliveries.resume(id, ALICE)).toMatchObject({ state: 'sending', stateReason: null });
    expect(row.nextAttemptAt).toBeNull();
    expect(commands(data)).toEqual(['DeliveryStarted:0', 'DeliveryPaused:0', 'DeliveryResumed:0']);
  });

  it('resuming a send paused before it started (a stale schedule) starts it', async () => {
    const { cp, data, clock } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp), { schedule: { sendAt: '2026-12-01T09:00:00Z' } });
    clock.set('2026-12-01T11:00:00Z');
    expect((await cp.scheduler.tick()).paused).toEqual([id]);
    const resumed = await cp.deliveries.resume(id, ALICE);
    expect(resumed).toMatchObject({ state: 'sending', startedAt: '2026-12-01T11:00:00.000Z', nextRunAt: null });
    expect(commands(data)).toEqual(['DeliveryStarted:0']);
  });

  it('stops: recipients not handed out are stopped, the engines told', async () => {
    const { cp, data } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp));
    expect(await cp.deliveries.stop(id, ALICE)).toMatchObject({ state: 'stopped', stateReason: 'STOPPED_BY_USER' });
    expect(await cp.logs.progress(id, 0)).toMatchObject({ stopped: 3, pending: 0 });
    expect(commands(data)).toEqual(['DeliveryStarted:0', 'DeliveryStopped:0']);
  });

  it("the engine finishes a run, or pauses it unless it was resumed since the epoch it judged", async () => {
    const { cp, data } = inMemoryControlPlane();
    const audienceId = await audienceOf(cp);
    const { id } = await started(cp, audienceId);
    const epoch = (await cp.sending.run(id, 0))!.epoch;
    await cp.deliveries.pause(id, ALICE);
    await cp.deliveries.resume(id, ALICE);
    expect(await cp.deliveries.pauseRun(id, 0, ENGINE_ACTOR, 'CIRCUIT_BREAKER', {}, epoch)).toBe(false);
    expect(await cp.deliveries.pauseRun(id, 0, ENGINE_ACTOR, 'CIRCUIT_BREAKER', { rate: 0.5 }, (await cp.sending.run(id, 0))!.epoch)).toBe(true);
    expect(data.audit.at(-1)).toMatchObject({ actor: 'system:engine', action: 'pause', toState: 'paused', details: { reason: 'CIRCUIT_BREAKER', rate: 0.5 } });
    const other = await started(cp, audienceId);
    expect(await cp.deliveries.finish(other.id, 0, ENGINE_ACTOR)).toBe(true);
    expect(await cp.deliveries.get(other.id)).toMatchObject({ state: 'finished', finishedAt: '2026-12-01T08:00:00.000Z' });
  });

  it('lists newest first in pages, a confirmation that expired sending its delivery back to approved', async () => {
    const { cp, clock } = inMemoryControlPlane();
    const audienceId = await audienceOf(cp);
    const first = await approved(cp, audienceId);
    clock.advance(1000);
    const second = await approved(cp, audienceId);
    await cp.confirmations.confirm(second.id, ALICE);
    clock.advance(11 * 60_000);
    const page = await cp.deliveries.list({ limit: 1 });
    expect(page.items.map((d) => [d.id, d.state])).toEqual([[second.id, 'approved']]);
    const next = await cp.deliveries.list({ limit: 1, cursor: page.nextCursor! });
    expect(next.items.map((d) => d.id)).toEqual([first.id]);
    expect(next.nextCursor).toBeNull();
    await expect(cp.deliveries.list({ limit: 1, cursor: 'bogus' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});
