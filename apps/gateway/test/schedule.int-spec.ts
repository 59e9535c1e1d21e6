// Scheduled and recurring deliveries, driven by a manual clock and explicit scheduler ticks.
import { ENGINE_ACTOR } from '@herald/control-plane';
import { describeEachStore, eventually } from '@herald/testing';
import { approvedDelivery, type Harness, startedCommands, startHarnessWithAudience } from './harness.js';

describeEachStore('scheduling', (kind) => {
  describe('scheduler', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      ({ h, audienceId } = await startHarnessWithAudience(kind, 5));
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

    /** Row counts a refused Confirm send must leave as they were. */
    async function footprint(id: string) {
      const [row] = await h.database.db.query(
        `SELECT (SELECT count(*) FROM confirmations WHERE delivery_id = $1)::int AS confirmations,
                (SELECT count(*) FROM audit_log WHERE delivery_id = $1)::int AS audit,
                (SELECT version FROM deliveries WHERE id = $1) AS version, (SELECT state FROM deliveries WHERE id = $1) AS state`,
        [id],
      );
      return row;
    }

    it('refuses a sendAt already past at Confirm send (400 SEND_TIME_PAST, nothing changes) unless schedule.sendNow', async () => {
      h.clock.set('2026-12-07T10:00:00Z');
      const id = await approvedDelivery(h, audienceId, { schedule: { sendAt: '2026-12-07T09:30:00Z' } });
      const before = await footprint(id);
      const refused = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ code: 'SEND_TIME_PAST', sendAt: '2026-12-07T09:30:00.000Z' });
      expect(refused.body.message).toContain('sendNow');
      expect(await footprint(id)).toEqual(before);
      expect(await startedCommands(h, id)).toBe(0);

      const typo = await h.api('PATCH', `/v1/deliveries/${id}`, { body: { schedule: { sendAt: '2026-12-07T09:30:00Z', sendNow: 'yes' } } });
      expect(typo.status).toBe(400);
      expect(typo.body.issues.map((i: { path: string }) => i.path)).toContain('schedule.sendNow');

      expect((await h.api('PATCH', `/v1/deliveries/${id}`, { body: { schedule: { sendAt: '2026-12-07T09:30:00Z', sendNow: true } } })).status).toBe(200);
      await h.api('POST', `/v1/deliveries/${id}/prepare`);
      await h.api('POST', `/v1/deliveries/${id}/approve`);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.status).toBe(201);
      // What the user confirms is what happens: no send time, it starts at OK; and a warning says why.
      expect(confirm.body.summary.sendAt).toBeNull();
      expect(confirm.body.summary.warnings).toContainEqual({ code: 'SEND_TIME_PAST', message: expect.stringContaining('2026-12-07T09:30:00.000Z') });
      const ok = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect(ok.body.state).toBe('sending');
      expect(await startedCommands(h, id)).toBe(1);

      // A future sendAt needs no sendNow, and sendNow changes nothing for it.
      const later = await approvedDelivery(h, audienceId, { schedule: { sendAt: '2026-12-07T11:00:00Z', sendNow: true } });
      const scheduled = await h.api('POST', `/v1/deliveries/${later}/confirmations`);
      expect(scheduled.body.summary.sendAt).toBe('2026-12-07T11:00:00.000Z');
    });

    it('shows the send window of per-recipient time zones: first and last local send instants of the frozen recipients', async () => {
      h.clock.set('2026-12-08T08:00:00Z');
      const zones = { tokyo: 'Asia/Tokyo', paris: 'Europe/Paris', newyork: 'America/New_York', nowhere: null };
      const imported = await h.api('POST', '/v1/profiles/import', {
        body: Object.entries(zones).map(([name, timezone]) => ({ id: `tz-${name}`, email: `${name}@example.com`, timezone })),
      });
      expect(imported.body.imported).toBe(4);
      const audience = await h.api('POST', '/v1/audiences', { body: { name: 'zones', profileIds: Object.keys(zones).map((n) => `tz-${n}`) } });
      const id = await approvedDelivery(h, audience.body.id, { schedule: { recipientTimezone: true, localTime: '09:00', date: '2026-12-10' } });
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.status).toBe(201);
      // 09:00 in Tokyo (UTC+9) is the first, 09:00 in New York (UTC-5 in December) the last; no zone: UTC.
      expect(confirm.body.summary).toMatchObject({
        sendAt: null,
        recipientLocalTime: '09:00',
        sendWindow: { first: '2026-12-10T00:00:00.000Z', last: '2026-12-10T14:00:00.000Z' },
      });
      const ok = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect(ok.body.state).toBe('scheduled');
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.nextRunAt).toBe('2026-12-10T00:00:00.000Z');

      // A day already begun somewhere is a send time past for those recipients: refused unless sendNow.
      h.clock.set('2026-12-10T10:00:00Z');
      const late = await approvedDelivery(h, audience.body.id, { schedule: { recipientTimezone: true, localTime: '09:00', date: '2026-12-10' } });
      const refused = await h.api('POST', `/v1/deliveries/${late}/confirmations`);
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ code: 'SEND_TIME_PAST', sendWindow: { first: '2026-12-10T00:00:00.000Z', last: '2026-12-10T14:00:00.000Z' }, recipientsPast: 3 });
    });

    it('always answers projectedFinishAt: from throughput.perHour, or null with the reason when no rate is known', async () => {
      h.clock.set('2026-12-09T08:00:00Z');
      const capped = await approvedDelivery(h, audienceId, { throughput: { perHour: 3600 } });
      const withRate = await h.api('POST', `/v1/deliveries/${capped}/confirmations`);
      // 5 recipients at 3,600 an hour: 5 seconds.
      expect(withRate.body.summary).toMatchObject({
        projectedFinishAt: '2026-12-09T08:00:05.000Z',
        projectedFinishBasis: { source: 'throughput.perHour', perHour: 3600 },
      });
      const uncapped = await approvedDelivery(h, audienceId);
      const unknown = (await h.api('POST', `/v1/deliveries/${uncapped}/confirmations`)).body.summary;
      expect(unknown).toHaveProperty('projectedFinishAt', null);
      expect(unknown.projectedFinishBasis).toEqual({ source: null, perHour: null, reason: expect.stringContaining('no engine') });
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
  describe('unconfirmed runs of a recurring delivery', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      ({ h, audienceId } = await startHarnessWithAudience(kind, 3, { RECURRENCE_MAX_PENDING: '2' }));
    });
    afterAll(async () => h?.close());

    it('keeps at most RECURRENCE_MAX_PENDING runs waiting: the oldest expires, stopped with EXPIRED_UNCONFIRMED, audited', async () => {
      h.clock.set('2026-12-10T08:00:00Z');
      const id = await approvedDelivery(h, audienceId, { recurrence: { every: '1h' }, schedule: { sendAt: '2026-12-10T09:00:00Z' } });
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).body.state).toBe('scheduled');

      h.clock.set('2026-12-10T09:00:01Z');
      await h.gateway.controlPlane.scheduler.tick();
      // Someone opens a confirmation for run 1 and never clicks OK.
      const forgotten = await h.api('POST', `/v1/deliveries/${id}/occurrences/1/confirmations`);
      expect(forgotten.status).toBe(201);
      h.clock.set('2026-12-10T10:00:01Z');
      await h.gateway.controlPlane.scheduler.tick();
      h.clock.set('2026-12-10T11:00:01Z');
      const third = await h.gateway.controlPlane.scheduler.tick();
      expect(third.occurrences).toEqual([{ deliveryId: id, n: 3, state: 'pending_confirmation' }]);
      expect(third.expiredOccurrences).toEqual([{ deliveryId: id, n: 1 }]);

      const runs = (await h.api('GET', `/v1/deliveries/${id}/occurrences`)).body.items;
      expect(runs.map((r: { n: number; state: string; stateReason: string | null; actions: string[] }) => [r.n, r.state, r.stateReason, r.actions])).toEqual([
        [3, 'pending_confirmation', null, ['confirm']],
        [2, 'pending_confirmation', null, ['confirm']],
        [1, 'stopped', 'EXPIRED_UNCONFIRMED', []],
      ]);
      const audit = (await h.api('GET', `/v1/deliveries/${id}/audit`)).body.items.filter((e: { occurrence: number | null }) => e.occurrence === 1);
      expect(audit.at(-1)).toMatchObject({
        action: 'occurrence_expired',
        fromState: 'pending_confirmation',
        toState: 'stopped',
        actor: 'system:scheduler',
        details: expect.objectContaining({ reason: 'EXPIRED_UNCONFIRMED', maxPending: 2 }),
      });
      // Its recipients will never get this run; its confirmation died with it.
      const [ledger] = await h.database.db.query<{ statuses: string[] }>(
        'SELECT array_agg(DISTINCT status) AS statuses FROM send_ledger WHERE delivery_id = $1 AND occurrence = 1',
        [id],
      );
      expect(ledger!.statuses).toEqual(['stopped']);
      const late = await h.api('POST', `/v1/deliveries/${id}/occurrences/1/confirmations/${forgotten.body.confirmationId}/ok`);
      expect(late.status).toBe(409);
      expect(late.body).toMatchObject({ code: 'CONFIRMATION_STALE', reason: 'VOIDED' });
      const again = await h.api('POST', `/v1/deliveries/${id}/occurrences/1/confirmations`);
      expect(again.body).toMatchObject({ code: 'INVALID_STATE', state: 'stopped', allowed: [] });
      expect(await startedCommands(h, id)).toBe(0);

      // The waiting runs can still be confirmed and sent.
      const two = await h.api('POST', `/v1/deliveries/${id}/occurrences/2/confirmations`);
      const ok = await h.api('POST', `/v1/deliveries/${id}/occurrences/2/confirmations/${two.body.confirmationId}/ok`);
      expect(ok.body).toMatchObject({ state: 'sending', occurrence: 2 });
      expect((await h.api('GET', `/v1/deliveries/${id}/occurrences`)).body.items[1].actions).toEqual([]);
    });
  });
});
