// The two-step confirmation through HTTP, on PGlite and on PostgreSQL.
import { describeEachStore } from '@herald/testing';
import { approvedDelivery, type Harness, startedCommands, startHarnessWithAudience } from './harness.js';

describeEachStore('two-step confirmation', (kind) => {
  describe('flow', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      ({ h, audienceId } = await startHarnessWithAudience(kind, 20));
    });
    afterAll(async () => h?.close());

    it('walks draft → prepare → approve → Confirm send → OK → sending, and publishes one DeliveryStarted', async () => {
      const created = await h.api('POST', '/v1/deliveries', {
        body: {
          name: 'Welcome',
          channel: 'email',
          audienceId,
          content: { from: 'news@shop.example', subject: 'Welcome {{profile.firstName}}', text: 'Hello' },
        },
      });
      expect(created.status).toBe(201);
      expect(created.body.state).toBe('draft');
      const id = created.body.id;

      const prepared = await h.api('POST', `/v1/deliveries/${id}/prepare`);
      expect(prepared.status).toBe(200);
      expect(prepared.body.state).toBe('ready');
      expect(prepared.body.preparation).toMatchObject({ audienceCount: 20, toSend: 20 });

      const tooEarly = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(tooEarly.status).toBe(409);
      expect(tooEarly.body.code).toBe('INVALID_STATE');

      expect((await h.api('POST', `/v1/deliveries/${id}/approve`)).body.state).toBe('approved');

      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.status).toBe(201);
      expect(confirm.body.confirmationId).toMatch(/^[0-9a-f-]{36}$/);
      expect(new Date(confirm.body.expiresAt).getTime() - h.clock.now().getTime()).toBe(10 * 60_000);
      expect(confirm.body.summary).toMatchObject({ toSend: 20, sendAt: null, contentHash: prepared.body.contentHash });
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('pending_ok');

      const ok = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect(ok.status).toBe(202);
      expect(ok.body.state).toBe('sending');
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('sending');
      expect(await startedCommands(h, id)).toBe(1);
      const command = h.commands.find((m) => (m.value as { deliveryId: string }).deliveryId === id)!.value;
      expect(command).toMatchObject({ type: 'DeliveryStarted', toSend: 20, occurrence: 0, issuedBy: 'alice', contentHash: prepared.body.contentHash });

      const audit = await h.api('GET', `/v1/deliveries/${id}/audit`);
      expect(audit.body.items.map((e: { action: string; fromState: string; toState: string }) => `${e.action}:${e.fromState}->${e.toState}`)).toEqual([
        'create:null->draft',
        'prepare:draft->preparing',
        'prepared:preparing->ready',
        'approve:ready->approved',
        'confirm_send:approved->pending_ok',
        'ok:pending_ok->sending',
      ]);
      const okEntry = audit.body.items.at(-1);
      expect(okEntry.actor).toBe('alice');
      expect(okEntry.summaryHash).toBe(confirm.body.summaryHash);
    });

    it('warns when no engine is running, without refusing: nothing is known of the providers', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.status).toBe(201);
      expect(confirm.body.summary.provider).toBeNull();
      expect(confirm.body.summary.warnings).toContainEqual({ code: 'NO_ENGINE', message: expect.stringContaining('No engine is running') });
    });

    it('answers a replayed OK the same and never starts a second send', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const path = `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`;
      const first = await h.api('POST', path);
      const second = await h.api('POST', path);
      expect(first).toEqual({ status: 202, body: expect.objectContaining({ state: 'sending' }) });
      expect(second).toEqual(first);
      expect(await startedCommands(h, id)).toBe(1);
    });

    it('refuses a user without Start deliveries, naming the role, and changes nothing', async () => {
      const id = await approvedDelivery(h, audienceId);
      const preparer = await h.token('bob', ['delivery:prepare', 'delivery:approve', 'delivery:view']);
      const before = await h.api('GET', `/v1/deliveries/${id}/audit`);
      const denied = await h.api('POST', `/v1/deliveries/${id}/confirmations`, { token: preparer });
      expect(denied.status).toBe(403);
      expect(denied.body).toEqual({
        code: 'MISSING_ROLE',
        message: "You need the 'Start deliveries' role (delivery:start) to confirm this send.",
        requiredRole: 'delivery:start',
        action: 'confirm',
      });
      // Nor can they OK someone else's confirmation.
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const deniedOk = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`, { token: preparer });
      expect(deniedOk.status).toBe(403);
      expect(deniedOk.body.code).toBe('MISSING_ROLE');
      const after = await h.api('GET', `/v1/deliveries/${id}/audit`);
      expect(after.body.items.length).toBe(before.body.items.length + 1); // only alice's Confirm send
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('pending_ok');
      expect(await startedCommands(h, id)).toBe(0);
    });

    it('answers 401 without a valid token', async () => {
      const res = await h.api('GET', '/v1/deliveries', { token: 'not-a-token' });
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('UNAUTHORIZED');
    });

    it('expires a confirmation after the TTL: 410, and a new Confirm send works', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      h.clock.advance(10 * 60_000);
      const expired = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect(expired.status).toBe(410);
      expect(expired.body.code).toBe('CONFIRMATION_EXPIRED');
      // Nothing can be OKed any more: the delivery is back to approved, Confirm send offered again.
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body).toMatchObject({ state: 'approved', actions: ['edit', 'confirm', 'stop'] });
      const again = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const ok = await h.api('POST', `/v1/deliveries/${id}/confirmations/${again.body.confirmationId}/ok`);
      expect(ok.status).toBe(202);
      expect(await startedCommands(h, id)).toBe(1);
    });

    it('voids a confirmation when the delivery is edited: 409 CONFIRMATION_STALE, back to draft', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const edited = await h.api('PATCH', `/v1/deliveries/${id}`, { body: { content: { from: 'news@shop.example', subject: 'Changed', text: 'x' } } });
      expect(edited.status).toBe(200);
      expect(edited.body.state).toBe('draft');
      expect(edited.body.preparation).toBeNull();
      const stale = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect(stale.status).toBe(409);
      expect(stale.body.code).toBe('CONFIRMATION_STALE');
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('draft');
      expect(await startedCommands(h, id)).toBe(0);
    });

    it("refuses another user's confirmation", async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const carol = await h.token('carol');
      const res = await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`, { token: carol });
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({ code: 'CONFIRMATION_STALE', reason: 'OTHER_USER' });
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('pending_ok');
    });

    it('answers 404 for an unknown confirmation or delivery', async () => {
      const id = await approvedDelivery(h, audienceId);
      expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/00000000-0000-4000-8000-000000000000/ok`)).status).toBe(404);
      expect((await h.api('POST', '/v1/deliveries/00000000-0000-4000-8000-000000000000/confirmations')).status).toBe(404);
      expect((await h.api('POST', '/v1/deliveries/not-a-uuid/confirmations')).body.code).toBe('NOT_FOUND');
    });

    it('starts exactly one send for 50 concurrent OKs', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      const path = `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`;
      const results = await Promise.all(Array.from({ length: 50 }, () => h.api('POST', path)));
      expect(results.map((r) => r.status)).toEqual(Array(50).fill(202));
      expect(new Set(results.map((r) => r.body.state))).toEqual(new Set(['sending']));
      expect(await startedCommands(h, id)).toBe(1);
      const [outbox] = await h.database.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM outbox WHERE payload->>'deliveryId' = $1 AND payload->>'type' = 'DeliveryStarted'`,
        [id],
      );
      expect(outbox!.n).toBe(1);
    });

    it('starts exactly one send when two users confirm at once', async () => {
      const id = await approvedDelivery(h, audienceId);
      const dave = await h.token('dave');
      const [a, b] = await Promise.all([h.api('POST', `/v1/deliveries/${id}/confirmations`), h.api('POST', `/v1/deliveries/${id}/confirmations`, { token: dave })]);
      expect([a.status, b.status]).toEqual([201, 201]);
      const [okA, okB] = await Promise.all([
        h.api('POST', `/v1/deliveries/${id}/confirmations/${a.body.confirmationId}/ok`),
        h.api('POST', `/v1/deliveries/${id}/confirmations/${b.body.confirmationId}/ok`, { token: dave }),
      ]);
      expect([okA.status, okB.status].sort()).toEqual([202, 409]);
      expect([okA, okB].find((r) => r.status === 409)!.body.code).toBe('CONFIRMATION_STALE');
      expect(await startedCommands(h, id)).toBe(1);
      const audit = await h.api('GET', `/v1/deliveries/${id}/audit`);
      const confirms = audit.body.items.filter((e: { action: string }) => e.action === 'confirm_send');
      expect(confirms.map((e: { fromState: string }) => e.fromState).sort()).toEqual(['approved', 'pending_ok']);
      expect(audit.body.items.filter((e: { action: string }) => e.action === 'ok')).toHaveLength(1);
    });

    it('pauses, resumes and stops a send through the state machine', async () => {
      const id = await approvedDelivery(h, audienceId);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`);
      expect((await h.api('POST', `/v1/deliveries/${id}/pause`)).body.state).toBe('paused');
      expect((await h.api('POST', `/v1/deliveries/${id}/pause`)).body.code).toBe('INVALID_STATE');
      expect((await h.api('POST', `/v1/deliveries/${id}/resume`)).body.state).toBe('sending');
      expect((await h.api('POST', `/v1/deliveries/${id}/stop`)).body.state).toBe('stopped');
      expect((await h.api('POST', `/v1/deliveries/${id}/resume`)).status).toBe(409);
      const edit = await h.api('PATCH', `/v1/deliveries/${id}`, { body: { name: 'too late' } });
      expect(edit.status).toBe(409);
      expect(edit.body.code).toBe('INVALID_STATE');
      await h.gateway.relay.drain();
      const types = h.commands.filter((m) => (m.value as { deliveryId: string }).deliveryId === id).map((m) => (m.value as { type: string }).type);
      expect(types).toEqual(['DeliveryStarted', 'DeliveryPaused', 'DeliveryResumed', 'DeliveryStopped']);
    });
  });
});
