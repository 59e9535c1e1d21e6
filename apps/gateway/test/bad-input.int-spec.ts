// Bad input gets a clear 4xx with a stable code and changes nothing.
import { describeEachStore } from '@herald/testing';
import { approvedDelivery, deliveryBody, type Harness, seedAudience, startHarness, startHarnessWithAudience } from './harness.js';

describeEachStore('bad input', (kind) => {
  describe('gateway', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      ({ h, audienceId } = await startHarnessWithAudience(kind, 3, { BODY_LIMIT_BYTES: '65536' }));
    });
    afterAll(async () => h?.close());

    /** Row counts of every table a bad request could touch. */
    async function snapshot() {
      const [row] = await h.database.db.query(
        `SELECT (SELECT count(*) FROM deliveries)::int AS deliveries, (SELECT count(*) FROM audit_log)::int AS audit,
                (SELECT count(*) FROM outbox)::int AS outbox, (SELECT count(*) FROM confirmations)::int AS confirmations,
                (SELECT count(*) FROM profiles)::int AS profiles, (SELECT count(*) FROM audiences)::int AS audiences,
                (SELECT max(updated_at) FROM deliveries) AS last_update`,
      );
      return row;
    }

    async function expectRefused(request: Promise<{ status: number; body: { code: string } }>, status: number, code: string) {
      const before = await snapshot();
      const response = await request;
      expect({ status: response.status, code: response.body.code }).toEqual({ status, code });
      expect(await snapshot()).toEqual(before);
      return response.body;
    }

    it('rejects unknown fields, naming them', async () => {
      const body = await expectRefused(h.api('POST', '/v1/deliveries', { body: { ...deliveryBody(audienceId), priority: 'high' } }), 400, 'INVALID_INPUT');
      expect(JSON.stringify(body)).toContain('priority');
      await expectRefused(
        h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { content: { from: 'a@b.example', subject: 's', text: 't', bcc: 'x@y.example' } }) }),
        400,
        'INVALID_INPUT',
      );
    });

    it('rejects wrong types with field paths', async () => {
      const body = await expectRefused(h.api('POST', '/v1/deliveries', { body: { ...deliveryBody(audienceId), name: 42, channel: 'fax' } }), 400, 'INVALID_INPUT');
      const paths = (body as unknown as { issues: { path: string }[] }).issues.map((i) => i.path);
      expect(paths).toEqual(expect.arrayContaining(['name', 'channel']));
    });

    it('rejects malformed JSON', async () => {
      await expectRefused(h.api('POST', '/v1/deliveries', { raw: '{"name": "x",' }), 400, 'INVALID_INPUT');
    });

    it('rejects an oversize body with 413', async () => {
      const big = deliveryBody(audienceId, { content: { from: 'a@b.example', subject: 's', html: 'x'.repeat(70_000) } });
      await expectRefused(h.api('POST', '/v1/deliveries', { body: big }), 413, 'PAYLOAD_TOO_LARGE');
    });

    it.each([
      ['subject', { from: 'a@b.example', subject: 'Hi\r\nBcc: victim@example.com', text: 't' }],
      ['from', { from: 'a@b.example\nBcc: victim@example.com', subject: 's', text: 't' }],
      ['replyTo', { from: 'a@b.example', replyTo: 'x@y.example\r\nX-Evil: 1', subject: 's', text: 't' }],
    ])('rejects CR/LF in %s (header injection)', async (field, content) => {
      const body = await expectRefused(h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { content }) }), 400, 'INVALID_INPUT');
      expect(JSON.stringify(body)).toContain(`content.${field}`);
      expect(JSON.stringify(body)).toContain('header injection');
    });

    it('rejects CR/LF in a header-bound field on edit too', async () => {
      const id = await approvedDelivery(h, audienceId);
      await expectRefused(h.api('PATCH', `/v1/deliveries/${id}`, { body: { content: { from: 'a@b.example', subject: 'x\ry', text: 't' } } }), 400, 'INVALID_INPUT');
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('approved');
    });

    it('rejects an unknown audience id', async () => {
      const body = await expectRefused(
        h.api('POST', '/v1/deliveries', { body: deliveryBody('00000000-0000-4000-8000-000000000000') }),
        400,
        'INVALID_INPUT',
      );
      expect(JSON.stringify(body)).toContain('audienceId');
      await expectRefused(h.api('POST', '/v1/deliveries', { body: deliveryBody('not-a-uuid') }), 400, 'INVALID_INPUT');
      await expectRefused(h.api('POST', '/v1/audiences/00000000-0000-4000-8000-000000000000/members', { body: { profileIds: ['p00000'] } }), 404, 'NOT_FOUND');
    });

    it('rejects content missing what the channel needs', async () => {
      await expectRefused(h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { content: { from: 'a@b.example', text: 't' } }) }), 400, 'INVALID_INPUT');
      await expectRefused(h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { channel: 'sms', content: { subject: 's' } }) }), 400, 'INVALID_INPUT');
    });

    it('rejects bad schedules and recurrences', async () => {
      await expectRefused(h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { schedule: { sendAt: 'tomorrow' } }) }), 400, 'INVALID_INPUT');
      await expectRefused(
        h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { schedule: { sendAt: '2026-12-01T09:00:00', timezone: 'Mars/Olympus' } }) }),
        400,
        'INVALID_INPUT',
      );
      await expectRefused(h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { recurrence: { every: 'often' } }) }), 400, 'INVALID_INPUT');
    });

    it.each([
      ['approve a draft', 'approve', 'draft'],
      ['confirm a draft', 'confirmations', 'draft'],
      ['pause a draft', 'pause', 'draft'],
      ['resume a draft', 'resume', 'draft'],
      ['prepare an approved delivery', 'prepare', 'approved'],
    ])('refuses to %s with 409 INVALID_STATE', async (_label, action, state) => {
      let id: string;
      if (state === 'draft') id = (await h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId) })).body.id;
      else id = await approvedDelivery(h, audienceId);
      const body = await expectRefused(h.api('POST', `/v1/deliveries/${id}/${action}`), 409, 'INVALID_STATE');
      expect(body).toMatchObject({ state });
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe(state);
    });

    it('rejects a body on action endpoints that take none', async () => {
      const id = await approvedDelivery(h, audienceId);
      await expectRefused(h.api('POST', `/v1/deliveries/${id}/confirmations`, { body: { force: true } }), 400, 'INVALID_INPUT');
    });

    it('answers 404 with a code for unknown ids and routes', async () => {
      expect((await h.api('GET', '/v1/deliveries/00000000-0000-4000-8000-000000000000')).body.code).toBe('NOT_FOUND');
      expect((await h.api('GET', '/v1/profiles/nobody')).body.code).toBe('NOT_FOUND');
      expect((await h.api('GET', '/v1/nothing-here')).status).toBe(404);
    });

    it('lists deliveries newest first, in pages', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        h.clock.advance(1000);
        ids.push((await h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId, { name: `page ${i}` }) })).body.id);
      }
      const first = await h.api('GET', '/v1/deliveries?limit=2');
      expect(first.body.items.map((d: { id: string }) => d.id)).toEqual([ids[2], ids[1]]);
      const second = await h.api('GET', `/v1/deliveries?limit=2&cursor=${first.body.nextCursor}`);
      expect(second.body.items[0].id).toBe(ids[0]);
      const drafts = await h.api('GET', '/v1/deliveries?state=draft&limit=500');
      expect(drafts.body.items.every((d: { state: string }) => d.state === 'draft')).toBe(true);
    });

    it('rejects bad list queries', async () => {
      await expectRefused(h.api('GET', '/v1/deliveries?limit=0'), 400, 'INVALID_INPUT');
      await expectRefused(h.api('GET', '/v1/deliveries?cursor=garbage'), 400, 'INVALID_INPUT');
      await expectRefused(h.api('GET', '/v1/deliveries?color=red'), 400, 'INVALID_INPUT');
    });
  });

  describe('rate limit', () => {
    let h: Harness;
    let audienceId: string;

    beforeAll(async () => {
      h = await startHarness(kind, { API_RATE_LIMIT: '5' });
    });
    afterAll(async () => h?.close());

    const deliveries = async () => (await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM deliveries'))[0]!.n;
    /** A GET whose body is read (an unread body, like the OpenAPI document's, holds the connection and the gateway's close). */
    const get = async (path: string, token?: string) => {
      const response = await fetch(h.gateway.url + path, token ? { headers: { authorization: `Bearer ${token}` } } : {});
      await response.arrayBuffer();
      return response;
    };

    it('answers 429 RATE_LIMITED with Retry-After past the limit, per token, and the refused request changes nothing', async () => {
      const alice = await h.token('alice');
      // The seed's two requests (import, audience) are alice's too: 3 more reach the limit of 5.
      audienceId = await seedAudience(h, 2);
      const remaining: (string | null)[] = [];
      for (let i = 0; i < 3; i++) {
        const answer = await get('/v1/deliveries', alice);
        expect(answer.status).toBe(200);
        expect(answer.headers.get('x-ratelimit-limit')).toBe('5');
        remaining.push(answer.headers.get('x-ratelimit-remaining'));
      }
      expect(remaining).toEqual(['2', '1', '0']);
      const before = await deliveries();
      const refused = await h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId) });
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ code: 'RATE_LIMITED', limitPerMinute: 5 });
      expect(refused.body.message).toContain('5 requests in a minute');
      expect(refused.body.retryAfterSeconds).toBeGreaterThan(0);
      expect(refused.body.retryAfterSeconds).toBeLessThanOrEqual(60);
      expect(await deliveries()).toBe(before);
      const limited = await get('/v1/deliveries', alice);
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);

      // Another token has its own allowance.
      const bob = await h.token('bob');
      expect((await get('/v1/deliveries', bob)).status).toBe(200);
      expect((await h.api('POST', '/v1/deliveries', { token: bob, body: deliveryBody(audienceId) })).status).toBe(201);
      expect(await deliveries()).toBe(before + 1);
    });

    it('limits requests without a token by address, and leaves health, docs, tracking and the bounce webhook alone', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await get('/v1/deliveries')).status);
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
      for (let i = 0; i < 8; i++) {
        expect((await get('/health/live')).status).toBe(200);
        expect((await get('/openapi.json')).status).toBe(200);
        expect((await get('/t/o/forged-token')).status).toBe(404);
        const webhook = await fetch(`${h.gateway.url}/v1/webhooks/bounces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        await webhook.arrayBuffer();
        expect(webhook.status).toBe(401);
      }
    });

    it('is 60,000 a minute by default, and API_RATE_LIMIT=0 turns it off', async () => {
      const byDefault = await startHarness(kind);
      const off = await startHarness(kind, { API_RATE_LIMIT: '0' });
      try {
        const headers = { authorization: `Bearer ${await byDefault.token('alice')}` };
        expect((await fetch(`${byDefault.gateway.url}/v1/deliveries`, { headers })).headers.get('x-ratelimit-limit')).toBe('60000');
        const answer = await fetch(`${off.gateway.url}/v1/deliveries`, { headers: { authorization: `Bearer ${await off.token('alice')}` } });
        expect(answer.status).toBe(200);
        expect(answer.headers.get('x-ratelimit-limit')).toBeNull();
      } finally {
        await byDefault.close();
        await off.close();
      }
    });
  });
});
