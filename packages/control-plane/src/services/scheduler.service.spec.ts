// The scheduler over in-memory repositories: due sends start, stale ones pause, recurring
// deliveries get their runs (at most RECURRENCE_MAX_PENDING waiting), expired confirmations go
// back to approved; one leader at a time.
import type { TickReport } from './scheduler.service.js';
import { ALICE, approved, audienceOf, auditTrail, commands, inMemoryControlPlane, started } from '../../test/services.js';

describe('SchedulerService', () => {
  it('starts a scheduled send when it is due, with its command, and not before', async () => {
    const { cp, data, clock } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp), { schedule: { sendAt: '2026-12-01T09:00:00Z' } });
    expect((await cp.scheduler.tick()).started).toEqual([]);
    clock.set('2026-12-01T09:00:30Z');
    expect(await cp.scheduler.tick()).toMatchObject({ leader: true, started: [id] });
    expect(await cp.deliveries.get(id)).toMatchObject({ state: 'sending', nextRunAt: null, startedAt: '2026-12-01T09:00:30.000Z' });
    expect(commands(data)).toEqual(['DeliveryStarted:0']);
    expect(data.audit.at(-1)).toMatchObject({ actor: 'system:scheduler', action: 'schedule_due', details: { scheduledFor: '2026-12-01T09:00:00.000Z' } });
  });

  it('pauses a schedule found past its staleness (after downtime) for an operator to decide: nothing is sent', async () => {
    const { cp, data, clock } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp), { schedule: { sendAt: '2026-12-01T09:00:00Z' } });
    clock.set('2026-12-01T10:00:01Z');
    expect((await cp.scheduler.tick()).paused).toEqual([id]);
    expect(await cp.deliveries.get(id)).toMatchObject({ state: 'paused', stateReason: 'STALE_SCHEDULE' });
    expect(data.audit.at(-1)?.details).toEqual({ reason: 'STALE_SCHEDULE', scheduledFor: '2026-12-01T09:00:00.000Z', lateMs: 3_601_000 });
    expect(commands(data)).toEqual([]);
  });

  it("creates a recurring delivery's runs, each waiting for its confirmation; past the limit the oldest expires", async () => {
    const { cp, data, clock } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp), { recurrence: { every: '1h', requireConfirmation: true } });
    const ticks = [];
    for (let i = 0; i < 3; i++) {
      ticks.push(await cp.scheduler.tick());
      clock.advance(3_600_000);
    }
    expect(ticks.map((t) => t.occurrences)).toEqual([1, 2, 3].map((n) => [{ deliveryId: id, n, state: 'pending_confirmation' }]));
    expect(ticks[2]!.expiredOccurrences).toEqual([{ deliveryId: id, n: 1 }]);
    expect((await cp.deliveries.runs(id)).map((r) => [r.n, r.state, r.stateReason])).toEqual([
      [3, 'pending_confirmation', null],
      [2, 'pending_confirmation', null],
      [1, 'stopped', 'EXPIRED_UNCONFIRMED'],
    ]);
    expect(await cp.deliveries.get(id)).toMatchObject({ state: 'scheduled', occurrenceCount: 3, nextRunAt: '2026-12-01T11:00:00.000Z' });
    expect(await cp.logs.progress(id, 1)).toMatchObject({ stopped: 3 });
    expect(commands(data)).toEqual([]);
  });

  it('starts a run at once when the recurrence does not require confirmation; a missed slot is not run twice', async () => {
    const { cp, data, clock } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp), { recurrence: { every: '10m', requireConfirmation: false } });
    clock.advance(35 * 60_000); // three slots missed (within the staleness): one run now, the next after now
    expect((await cp.scheduler.tick()).occurrences).toEqual([{ deliveryId: id, n: 1, state: 'sending' }]);
    expect(commands(data)).toEqual(['DeliveryStarted:1']);
    expect((await cp.deliveries.get(id)).nextRunAt).toBe('2026-12-01T08:40:00.000Z');
    expect(auditTrail(data, id).at(-1)).toBe('#1 occurrence_created:->sending');
  });

  it('sends deliveries whose confirmations all expired back to approved', async () => {
    const { cp, clock } = inMemoryControlPlane();
    const delivery = await approved(cp, await audienceOf(cp));
    await cp.confirmations.confirm(delivery.id, ALICE);
    clock.advance(10 * 60_000);
    expect((await cp.scheduler.tick()).expired).toEqual([delivery.id]);
    expect((await cp.deliveries.get(delivery.id)).state).toBe('approved');
  });

  it('does nothing while another replica leads', async () => {
    const { cp, store, clock } = inMemoryControlPlane();
    const { id } = await started(cp, await audienceOf(cp), { schedule: { sendAt: '2026-12-01T09:00:00Z' } });
    clock.set('2026-12-01T09:00:30Z');
    let inner: TickReport | undefined;
    await store.withAdvisoryLock(0x4845_5231, async () => {
      inner = await cp.scheduler.tick();
    });
    expect(inner).toMatchObject({ leader: false, started: [] });
    expect((await cp.deliveries.get(id)).state).toBe('scheduled');
  });
});
