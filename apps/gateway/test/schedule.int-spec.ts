// Scheduled and recurring deliveries, driven by a manual clock and explicit scheduler ticks.
import { ENGINE_ACTOR } from '@herald/control-plane';
import { describeEachStore, eventually } from '@herald/testing';
import { approvedDelivery, type Harness, seedAudience, startedCommands, startHarness } from './harness.js';

describeEachStore('scheduling', (kind) => {
  describe('scheduler', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      h = await startHarness(kind);
      audienceId = await seedAudience(h, 5);
    });
    afterAll(async () => h?.close());

    async function confirmAndOk(id: string, occurrence?: number) {
      const base = occurrence ? `/v1/deliveries/${id}/occurrences/${occurrence}` : `/v1/deliveries/${id}`;
      const confirm = await h.api('POST', `${base}/confirmations`);
      expect(confirm.status).toBe(201);
      return h.api('POST', `${base}/confirmations/${confirm.body.confirmationId}/ok`);
    }

    it('holds a send with a time zone until it is due, then starts it', async () => {
      h.clock.set('2026-12-01T08:00:00Z');
      // 10:00 in Paris (UTC+1 in December) is 09:00 UTC.
      const id = await approvedDelivery(h, audienceId, { schedule: { sendAt: '2026-12-01T10:00:00', timezone: 'Europe/Paris' } });
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.body.summary.sendAt).toBe('2026-12-01T09:00:00.000Z');
      const ok = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect(ok.body.state).toBe('scheduled');
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.nextRunAt).toBe('2026-12-01T09:00:00.000Z');

      h.clock.set('2026-12-01T08:59:59Z');
      expect((await h.gateway.controlPlane.scheduler.tick()).started).not.toContain(id);
      expect(await startedCommands(h, id)).toBe(0);

      h.clock.set('2026-12-01T09:00:30Z');
      const report = await h.gateway.controlPlane.scheduler.tick();
      expect(report.leader).toBe(true);
      expect(report.started).toContain(id);
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('sending');
      expect(await startedCommands(h, id)).toBe(1);
      // A second tick does nothing more.
      await h.gateway.controlPlane.scheduler.tick();
      expect(await startedCommands(h, id)).toBe(1);
    });

    it('pauses a schedule found more than the staleness past due, with STALE_SCHEDULE, and sends nothing', async () => {
      h.clock.set('2026-12-02T08:00:00Z');
      const id = await approvedDelivery(h, audienceId, { schedule: { sendAt: '2026-12-02T09:00:00Z' } });
      expect((await confirmAndOk(id)).body.state).toBe('scheduled');
      // The platform was down: the first tick comes 1 h 1 min after the due time.
      h.clock.set('2026-12-02T10:01:00Z');
      const report = await h.gateway.controlPlane.scheduler.tick();
      expect(report.paused).toContain(id);
      const paused = (await h.api('GET', `/v1/deliveries/${id}`)).body;
      expect(paused.state).toBe('paused');
      expect(paused.stateReason).toBe('STALE_SCHEDULE');
      expect(await startedCommands(h, id)).toBe(0);
      // An operator who still wants it sends it with resume.
      expect((await h.api('POST', `/v1/deliveries/${id}/resume`)).body.state).toBe('sending');
      expect(await startedCommands(h, id)).toBe(1);
    });

    it('sends a schedule that is late but within the staleness', async () => {
      h.clock.set('2026-12-03T08:00:00Z');
      const id = await approvedDelivery(h, audienceId, { schedule: { sendAt: '2026-12-03T09:00:00Z' } });
      await confirmAndOk(id);
      h.clock.set('2026-12-03T09:59:00Z');
      expect((await h.gateway.controlPlane.scheduler.tick()).started).toContain(id);
    });

    it('makes each run of a recurring delivery wait for its own confirmation', async () => {
      h.clock.set('2026-12-04T08:00:00Z');
      const id = await approvedDelivery(h, audienceId, { recurrence: { every: '1h' }, schedule: { sendAt: '2026-12-04T09:00:00Z' } });
      expect((await confirmAndOk(id)).body.state).toBe('scheduled');

      h.clock.set('2026-12-04T09:00:05Z');
      const report = await h.gateway.controlPlane.scheduler.tick();
      expect(report.occurrences).toEqual([{ deliveryId: id, n: 1, state: 'pending_confirmation' }]);
      const occurrences = await h.api('GET', `/v1/deliveries/${id}/occurrences`);
      expect(occurrences.body.items).toEqual([
        expect.objectContaining({ n: 1, state: 'pending_confirmation', preparation: expect.objectContaining({ toSend: 5 }) }),
      ]);
      expect(await startedCommands(h, id)).toBe(0);
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body).toMatchObject({ state: 'scheduled', nextRunAt: '2026-12-04T10:00:00.000Z' });

      // A user without Start deliveries cannot confirm the run.
      const preparer = await h.token('bob', ['delivery:prepare', 'delivery:view']);
      const denied = await h.api('POST', `/v1/deliveries/${id}/occurrences/1/confirmations`, { token: preparer });
      expect(denied.status).toBe(403);

      const ok = await confirmAndOk(id, 1);
      expect(ok.status).toBe(202);
      expect(ok.body).toMatchObject({ state: 'sending', occurrence: 1 });
      expect(await startedCommands(h, id)).toBe(1);
      const started = h.commands.find((m) => (m.value as { deliveryId: string }).deliveryId === id)!.value;
      expect(started).toMatchObject({ type: 'DeliveryStarted', occurrence: 1, toSend: 5 });
      expect((await h.api('POST', `/v1/deliveries/${id}/occurrences/1/confirmations`)).body.code).toBe('INVALID_STATE');

      // The next run comes an hour later, waiting again.
      h.clock.set('2026-12-04T10:00:01Z');
      expect((await h.gateway.controlPlane.scheduler.tick()).occurrences).toEqual([{ deliveryId: id, n: 2, state: 'pending_confirmation' }]);
    });

    it('pause, resume and stop of a recurring delivery reach the run sending now, with a command each', async () => {
      h.clock.set('2026-12-06T08:00:00Z');
      const id = await approvedDelivery(h, audienceId, { recurrence: { every: '1h', requireConfirmation: false }, schedule: { sendAt: '2026-12-06T09:00:00Z' } });
      await confirmAndOk(id);
      h.clock.set('2026-12-06T09:00:05Z');
      expect((await h.gateway.controlPlane.scheduler.tick()).occurrences).toEqual([{ deliveryId: id, n: 1, state: 'sending' }]);
      const run = async () => (await h.api('GET', `/v1/deliveries/${id}/occurrences`)).body.items[0];
      const commands = () => h.commands.map((m) => m.value as { type: string; deliveryId: string; occurrence: number }).filter((c) => c.deliveryId === id);
      /** The relay publishes the outbox; the observer then sees `type` for run 1. */
      const published = async (type: string) => {
        await h.gateway.relay.drain();
        await eventually(() => commands().some((c) => c.type === type && c.occurrence === 1), { what: `${type} for run 1` });
      };

      expect((await h.api('POST', `/v1/deliveries/${id}/pause`)).body.state).toBe('paused');
      expect(await run()).toMatchObject({ n: 1, state: 'paused', stateReason: 'PAUSED_BY_USER' });
      await published('DeliveryPaused');

      expect((await h.api('POST', `/v1/deliveries/${id}/resume`)).body.state).toBe('scheduled');
      expect(await run()).toMatchObject({ n: 1, state: 'sending', stateReason: null });
      await published('DeliveryResumed');

      // A run the engine paused (circuit breaker) while the schedule goes on: resume reaches it too.
      await h.gateway.controlPlane.deliveries.pauseRun(id, 1, ENGINE_ACTOR, 'CIRCUIT_BREAKER');
      expect((await h.api('POST', `/v1/deliveries/${id}/resume`)).body.state).toBe('scheduled');
      expect((await run()).state).toBe('sending');
      // With nothing paused, resume of a scheduled delivery is refused and changes nothing.
      expect((await h.api('POST', `/v1/deliveries/${id}/resume`)).status).toBe(409);

      expect((await h.api('POST', `/v1/deliveries/${id}/stop`)).body.state).toBe('stopped');
      expect(await run()).toMatchObject({ n: 1, state: 'stopped', stateReason: 'STOPPED_BY_USER' });
      await published('DeliveryStopped');
      const audit = (await h.api('GET', `/v1/deliveries/${id}/audit`)).body.items.filter((e: { occurrence: number | null }) => e.occurrence === 1);
      expect(audit.map((e: { action: string; toState: string }) => `${e.action}:${e.toState}`)).toEqual(
        expect.arrayContaining(['pause:paused', 'resume:sending', 'stop:stopped']),
      );
    });

    it('starts runs at once when the recurrence does not require confirmation', async () => {
      h.clock.set('2026-12-05T08:00:00Z');
      const id = await approvedDelivery(h, audienceId, { recurrence: { every: '0 9 * * *', requireConfirmation: false, timezone: 'UTC' } });
      const ok = await confirmAndOk(id);
      expect(ok.body.state).toBe('scheduled');
      const report = await h.gateway.controlPlane.scheduler.tick();
      expect(report.occurrences).toEqual([{ deliveryId: id, n: 1, state: 'sending' }]);
      expect(await startedCommands(h, id)).toBe(1);
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.nextRunAt).toBe('2026-12-05T09:00:00.000Z');
    });

    // PGlite is one session: there is nothing to elect between, so this runs on PostgreSQL only.
    const onPostgres = kind === 'postgres' ? [it] : [];
    for (const test of onPostgres) test('elects one scheduler leader at a time', async () => {
      const db = h.database.db;
      const held = db.withAdvisoryLock(0x4845_5231, async () => {
        const other = await h.gateway.controlPlane.scheduler.tick();
        return other.leader;
      });
      expect(await held).toBe(false);
    });
  });
});
