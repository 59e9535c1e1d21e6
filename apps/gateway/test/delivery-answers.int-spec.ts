// What the API answers about a delivery must be true: the actions it offers are exactly those it
// accepts, in every state; expired confirmations, replayed OKs, refused roles, bad queries and
// wrong-state errors say what really holds. On PGlite and PostgreSQL.
import { randomUUID } from 'node:crypto';
import { ENGINE_ACTOR } from '@herald/control-plane';
import { describeEachStore } from '@herald/testing';
import { approvedDelivery, deliveryBody, type Harness, startedCommands, startHarnessWithAudience } from './harness.js';

const ACTIONS = ['edit', 'prepare', 'approve', 'confirm', 'ok', 'pause', 'resume', 'stop'] as const;
type Action = (typeof ACTIONS)[number];

describeEachStore('delivery answers', (kind) => {
  let h: Harness;
  let audienceId: string;

  beforeAll(async () => {
    ({ h, audienceId } = await startHarnessWithAudience(kind, 4));
  });
  afterAll(async () => h?.close());

  const setState = (id: string, state: string) => h.database.db.query('UPDATE deliveries SET state = $2 WHERE id = $1', [id, state]);
  const get = async (id: string) => (await h.api('GET', `/v1/deliveries/${id}`)).body;

  async function created(extra: Record<string, unknown> = {}) {
    const res = await h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, extra) });
    expect(res.status).toBe(201);
    return res.body.id as string;
  }

  async function confirmed(extra: Record<string, unknown> = {}) {
    const id = await approvedDelivery(h, audienceId, extra);
    const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
    expect(confirm.status).toBe(201);
    return { id, confirmationId: confirm.body.confirmationId as string };
  }

  async function started(extra: Record<string, unknown> = {}) {
    const { id, confirmationId } = await confirmed(extra);
    expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirmationId}/ok`)).status).toBe(202);
    return id;
  }

  /** A delivery in each state (and the cases where facts beyond the state decide). */
  const SETUPS: { label: string; state: string; make(): Promise<{ id: string; confirmationId?: string }> }[] = [
    { label: 'draft', state: 'draft', make: async () => ({ id: await created() }) },
    {
      label: 'preparing (a preparation in progress)',
      state: 'preparing',
      make: async () => {
        const id = await created();
        await setState(id, 'preparing');
        return { id };
      },
    },
    {
      label: 'ready',
      state: 'ready',
      make: async () => {
        const id = await created();
        expect((await h.api('POST', `/v1/deliveries/${id}/prepare`)).status).toBe(200);
        return { id };
      },
    },
    { label: 'approved', state: 'approved', make: async () => ({ id: await approvedDelivery(h, audienceId) }) },
    { label: 'pending_ok', state: 'pending_ok', make: () => confirmed() },
    {
      label: 'pending_ok whose confirmation expired',
      state: 'approved',
      make: async () => {
        const result = await confirmed();
        h.clock.advance(10 * 60_000);
        return result;
      },
    },
    {
      label: 'scheduled',
      state: 'scheduled',
      make: async () => ({ id: await started({ schedule: { sendAt: new Date(h.clock.now().getTime() + 86_400_000).toISOString() } }) }),
    },
    {
      label: 'scheduled, recurring, with a run paused by the engine',
      state: 'scheduled',
      make: async () => {
        const sendAt = new Date(h.clock.now().getTime() + 60_000);
        const id = await started({ recurrence: { every: '1d', requireConfirmation: false }, schedule: { sendAt: sendAt.toISOString() } });
        h.clock.set(new Date(sendAt.getTime() + 1000));
        const report = await h.gateway.controlPlane.scheduler.tick();
        expect(report.occurrences).toContainEqual({ deliveryId: id, n: 1, state: 'sending' });
        expect(await h.gateway.controlPlane.deliveries.pauseRun(id, 1, ENGINE_ACTOR, 'CIRCUIT_BREAKER')).toBe(true);
        return { id };
      },
    },
    { label: 'sending', state: 'sending', make: async () => ({ id: await started() }) },
    {
      label: 'paused',
      state: 'paused',
      make: async () => {
        const id = await started();
        expect((await h.api('POST', `/v1/deliveries/${id}/pause`)).status).toBe(200);
        return { id };
      },
    },
    {
      label: 'stopped',
      state: 'stopped',
      make: async () => {
        const id = await started();
        expect((await h.api('POST', `/v1/deliveries/${id}/stop`)).status).toBe(200);
        return { id };
      },
    },
    {
      label: 'failed',
      state: 'failed',
      make: async () => {
        const id = await created();
        await setState(id, 'failed');
        return { id };
      },
    },
    {
      label: 'finished',
      state: 'finished',
      make: async () => {
        const id = await started();
        expect(await h.gateway.controlPlane.deliveries.finish(id, 0, ENGINE_ACTOR)).toBe(true);
        return { id };
      },
    },
  ];

  function attempt(action: Action, id: string, confirmationId: string | undefined) {
    const base = `/v1/deliveries/${id}`;
    switch (action) {
      case 'edit':
        return h.api('PATCH', base, { body: { name: 'Renamed' } });
      case 'confirm':
        return h.api('POST', `${base}/confirmations`);
      case 'ok':
        // With the delivery's live confirmation when it has one (else one that does not exist).
        return h.api('POST', `${base}/confirmations/${confirmationId ?? randomUUID()}/ok`);
      default:
        return h.api('POST', `${base}/${action}`);
    }
  }

  describe.each(SETUPS)('a delivery $label', (setup) => {
    it.each(ACTIONS)('offers %s exactly when the API accepts it', async (action) => {
      const { id, confirmationId } = await setup.make();
      const before = await get(id);
      expect(before.state).toBe(setup.state);
      const offered = (before.actions as string[]).includes(action);
      const answer = await attempt(action, id, confirmationId);
      const accepted = answer.status >= 200 && answer.status < 300;
      expect({ action, state: setup.state, offered, accepted, answer: accepted ? 'accepted' : answer.body }).toEqual({
        action,
        state: setup.state,
        offered: accepted,
        accepted,
        answer: accepted ? 'accepted' : expect.anything(),
      });
      if (answer.body.code === 'INVALID_STATE') {
        // A wrong-state refusal names the actions possible now, as the delivery offers them, and changes nothing.
        expect(answer.body.allowed).toEqual(before.actions);
        expect((await get(id)).version).toBe(before.version);
      }
    });
  });

  it('sends a delivery whose confirmations all expired back to approved, audited, with no OK offered', async () => {
    const { id, confirmationId } = await confirmed();
    expect((await get(id)).actions).toContain('ok');
    h.clock.advance(10 * 60_000);
    const read = await get(id);
    expect(read).toMatchObject({ state: 'approved' });
    expect(read.actions).not.toContain('ok');
    expect(read.banner).toBeUndefined();
    const audit = (await h.api('GET', `/v1/deliveries/${id}/audit`)).body.items;
    expect(audit.at(-1)).toMatchObject({ action: 'confirmation_expired', fromState: 'pending_ok', toState: 'approved', actor: 'system:scheduler' });
    expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirmationId}/ok`)).body.code).toBe('CONFIRMATION_EXPIRED');
    expect(await startedCommands(h, id)).toBe(0);
  });

  it("the scheduler's tick expires unconfirmed deliveries too, without anyone reading them", async () => {
    const { id } = await confirmed();
    h.clock.advance(10 * 60_000 + 1);
    const report = await h.gateway.controlPlane.scheduler.tick();
    expect(report.expired).toContain(id);
    const [row] = await h.database.db.query<{ state: string }>('SELECT state FROM deliveries WHERE id = $1', [id]);
    expect(row!.state).toBe('approved');
    expect((await h.gateway.controlPlane.scheduler.tick()).expired).not.toContain(id);
  });

  it('a second Confirm send voids the first: its OK answers 409 CONFIRMATION_STALE (VOIDED)', async () => {
    const { id, confirmationId: first } = await confirmed();
    const second = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
    expect(second.status).toBe(201);
    const stale = await h.api('POST', `/v1/deliveries/${id}/confirmations/${first}/ok`);
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ code: 'CONFIRMATION_STALE', reason: 'VOIDED' });
    expect(await startedCommands(h, id)).toBe(0);
    expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${second.body.confirmationId}/ok`)).status).toBe(202);
    expect(await startedCommands(h, id)).toBe(1);
  });

  it('an OK repeated after the send finished answers the state now and what it started, and starts nothing', async () => {
    const { id, confirmationId } = await confirmed();
    const path = `/v1/deliveries/${id}/confirmations/${confirmationId}/ok`;
    const first = await h.api('POST', path);
    expect(first.body).toMatchObject({ state: 'sending', startedAs: 'sending' });
    await h.gateway.controlPlane.deliveries.finish(id, 0, ENGINE_ACTOR);
    const again = await h.api('POST', path);
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ ...first.body, state: 'finished', startedAs: 'sending' });
    expect(await startedCommands(h, id)).toBe(1);
  });

  it.each([
    ['pause', 'pause'],
    ['resume', 'resume'],
    ['stop', 'stop'],
  ])('refuses %s without the Start deliveries role, naming the action', async (path, action) => {
    const id = await started();
    const viewer = await h.token('vera', ['delivery:view', 'delivery:prepare']);
    const denied = await h.api('POST', `/v1/deliveries/${id}/${path}`, { token: viewer });
    expect(denied.status).toBe(403);
    expect(denied.body).toEqual({
      code: 'MISSING_ROLE',
      message: `You need the 'Start deliveries' role (delivery:start) to ${action} this delivery.`,
      requiredRole: 'delivery:start',
      action,
    });
  });

  it('reports bad query parameters at query.<param>', async () => {
    const limit = await h.api('GET', '/v1/deliveries?limit=0');
    expect(limit.status).toBe(400);
    expect(limit.body.issues.map((i: { path: string }) => i.path)).toEqual(['query.limit']);
    const cursor = await h.api('GET', '/v1/deliveries?cursor=garbage');
    expect(cursor.body.issues.map((i: { path: string }) => i.path)).toEqual(['query.cursor']);
    const unknown = await h.api('GET', '/v1/deliveries?color=red');
    expect(unknown.body.issues).toEqual([{ path: 'query', message: expect.stringContaining('color') }]);
    const id = await created();
    const logs = await h.api('GET', `/v1/deliveries/${id}/logs?limit=abc`);
    expect(logs.body.issues.map((i: { path: string }) => i.path)).toEqual(['query.limit']);
  });

  it('a wrong-state error lists the actions possible now, not states', async () => {
    const id = await created();
    const refused = await h.api('POST', `/v1/deliveries/${id}/pause`);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'INVALID_STATE', state: 'draft', allowed: ['edit', 'prepare'] });
  });
});
