// Profile import (JSON array, NDJSON) and preparation: exclusions by reason, and the recipient
// list frozen into the send ledger.
import { describeEachStore } from '@herald/testing';
import { deliveryBody, type Harness, startHarness } from './harness.js';

describeEachStore('import and preparation', (kind) => {
  describe('profiles', () => {
    let h: Harness;

    beforeAll(async () => {
      h = await startHarness(kind, { IMPORT_BODY_LIMIT_BYTES: '200000' });
    });
    afterAll(async () => h?.close());

    it('imports NDJSON, reporting malformed and invalid lines by index and line, landing the good ones', async () => {
      const lines = [
        JSON.stringify({ id: 'n1', email: 'n1@example.com', firstName: 'Ann' }),
        '{"id": "n2", "email": ',
        '',
        JSON.stringify({ id: 'n3', email: 'n3@example.com', timezone: 'Europe/Paris', attributes: { plan: 'gold' } }),
        JSON.stringify({ id: 'n4', email: 42 }),
        JSON.stringify({ id: 'n5', firstName: 'Eve\r\nBcc: x@y.example' }),
        JSON.stringify({ id: 'n6', shoeSize: 44 }),
        JSON.stringify({ id: 'n7', email: 'n7@example.com', timezone: 'Nowhere/Land' }),
        JSON.stringify({ id: 'n8', email: 'n8@example.com' }),
      ];
      const res = await h.api('POST', '/v1/profiles/import', { raw: `${lines.join('\r\n')}\n`, contentType: 'application/x-ndjson' });
      expect(res.status).toBe(200);
      expect(res.body.imported).toBe(3);
      expect(res.body.rejectedCount).toBe(5);
      expect(res.body.rejected.map((r: { index: number; line: number; code: string }) => [r.index, r.line, r.code])).toEqual([
        [1, 2, 'MALFORMED_JSON'],
        [3, 5, 'INVALID_PROFILE'],
        [4, 6, 'INVALID_PROFILE'],
        [5, 7, 'INVALID_PROFILE'],
        [6, 8, 'INVALID_PROFILE'],
      ]);
      expect(res.body.rejected[3].message).toContain('shoeSize');
      expect((await h.api('GET', '/v1/profiles/n3')).body).toMatchObject({ email: 'n3@example.com', timezone: 'Europe/Paris', attributes: { plan: 'gold' }, status: 'active' });
      expect((await h.api('GET', '/v1/profiles/n4')).status).toBe(404);
    });

    it('imports a JSON array and upserts by id, keeping fields the row leaves out', async () => {
      const first = await h.api('POST', '/v1/profiles/import', {
        body: [
          { id: 'j1', email: 'j1@example.com', firstName: 'Jo', lastName: 'Smith' },
          { id: 'j2', email: 'not json-valid?' },
          'not an object',
        ],
      });
      expect(first.body).toMatchObject({ imported: 2, rejectedCount: 1, rejected: [{ index: 2, code: 'INVALID_PROFILE' }] });
      const second = await h.api('POST', '/v1/profiles/import', { body: [{ id: 'j1', firstName: 'Joanna' }] });
      expect(second.body.imported).toBe(1);
      expect((await h.api('GET', '/v1/profiles/j1')).body).toMatchObject({ firstName: 'Joanna', lastName: 'Smith', email: 'j1@example.com' });
    });

    it('refuses a body that is not an array, an unknown media type, and an oversize import', async () => {
      expect((await h.api('POST', '/v1/profiles/import', { body: { id: 'x' } })).body.code).toBe('INVALID_INPUT');
      const text = await h.api('POST', '/v1/profiles/import', { raw: 'id,email', contentType: 'text/csv' });
      expect(text.status).toBe(415);
      const big = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ id: `big${i}`, email: `big${i}@example.com`, firstName: 'x'.repeat(40) })).join('\n');
      const tooLarge = await h.api('POST', '/v1/profiles/import', { raw: big, contentType: 'application/x-ndjson' });
      expect(tooLarge.status).toBe(413);
      expect(tooLarge.body.code).toBe('PAYLOAD_TOO_LARGE');
    });

    it('prepares with exclusions by reason, logs them, and freezes the recipients', async () => {
      const profiles = [
        { id: 'x1', email: 'ok1@example.com' },
        { id: 'x2', email: 'OK1@example.com ' }, // duplicate address of x1 (case, spaces)
        { id: 'x3', email: 'not-an-address' },
        { id: 'x4' }, // no address
        { id: 'x5', email: 'quarantined@example.com' },
        { id: 'x6', email: 'unsub@example.com' },
        { id: 'x7', email: 'deny@example.com' },
        { id: 'x8', email: 'ok2@example.com' },
      ];
      await h.api('POST', '/v1/profiles/import', { body: profiles });
      for (const [id, status] of [
        ['x5', 'quarantined'],
        ['x6', 'unsubscribed'],
        ['x7', 'denylisted'],
      ]) {
        await h.database.db.query('UPDATE profiles SET status = $2 WHERE id = $1', [id, status]);
      }
      const audience = await h.api('POST', '/v1/audiences', { body: { name: 'mixed', profileIds: [...profiles.map((p) => p.id), 'ghost'] } });
      expect(audience.status).toBe(201);
      expect(audience.body.members).toEqual({ added: 8, rejected: [{ index: 8, code: 'UNKNOWN_PROFILE', message: "No profile has id 'ghost'." }] });
      expect(audience.body.size).toBe(8);

      const id = (await h.api('POST', '/v1/deliveries', { body: deliveryBody(audience.body.id) })).body.id;
      const prepared = await h.api('POST', `/v1/deliveries/${id}/prepare`);
      expect(prepared.body.state).toBe('ready');
      expect(prepared.body.preparation).toMatchObject({
        audienceCount: 8,
        toSend: 2,
        excluded: { quarantined: 1, unsubscribed: 1, denylisted: 1, invalid_address: 2, duplicate_address: 1 },
      });
      const exclusions = await h.api('GET', `/v1/deliveries/${id}/exclusions`);
      const atPreparation = { stage: 'preparation', excludedAt: expect.any(String) };
      expect(exclusions.body.items).toEqual([
        { profileId: 'x2', address: 'ok1@example.com', reason: 'duplicate_address', ...atPreparation },
        { profileId: 'x3', address: 'not-an-address', reason: 'invalid_address', ...atPreparation },
        { profileId: 'x4', address: null, reason: 'invalid_address', ...atPreparation },
        { profileId: 'x5', address: 'quarantined@example.com', reason: 'quarantined', ...atPreparation },
        { profileId: 'x6', address: 'unsub@example.com', reason: 'unsubscribed', ...atPreparation },
        { profileId: 'x7', address: 'deny@example.com', reason: 'denylisted', ...atPreparation },
      ]);
      const logs = await h.api('GET', `/v1/deliveries/${id}/logs`);
      expect(logs.body.items.map((e: { profileId: string; address: string; status: string }) => [e.profileId, e.address, e.status])).toEqual([
        ['x1', 'ok1@example.com', 'pending'],
        ['x8', 'ok2@example.com', 'pending'],
      ]);

      // A later import and membership change do not change what was prepared and confirmed.
      await h.api('POST', '/v1/profiles/import', { body: [{ id: 'x9', email: 'late@example.com' }, { id: 'x3', email: 'fixed@example.com' }] });
      await h.api('POST', `/v1/audiences/${audience.body.id}/members`, { body: { profileIds: ['x9'] } });
      await h.api('POST', `/v1/deliveries/${id}/approve`);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.body.summary.toSend).toBe(2);
      expect((await h.api('GET', `/v1/deliveries/${id}/logs`)).body.items).toHaveLength(2);
    });

    it('prepares a filter audience from attributes', async () => {
      await h.api('POST', '/v1/profiles/import', {
        body: [
          { id: 'f1', email: 'f1@example.com', attributes: { plan: 'gold', country: 'FR' } },
          { id: 'f2', email: 'f2@example.com', attributes: { plan: 'gold', country: 'DE' } },
          { id: 'f3', email: 'f3@example.com', attributes: { plan: 'free', country: 'FR' } },
        ],
      });
      const audience = await h.api('POST', '/v1/audiences', { body: { name: 'gold FR', filter: { plan: 'gold', country: 'FR' } } });
      expect(audience.body.size).toBe(1);
      const id = (await h.api('POST', '/v1/deliveries', { body: deliveryBody(audience.body.id) })).body.id;
      expect((await h.api('POST', `/v1/deliveries/${id}/prepare`)).body.preparation.toSend).toBe(1);
      const members = await h.api('POST', `/v1/audiences/${audience.body.id}/members`, { body: { profileIds: ['f2'] } });
      expect(members.body.code).toBe('INVALID_STATE');
    });

    it('prepares an sms delivery on phone numbers', async () => {
      await h.api('POST', '/v1/profiles/import', {
        body: [
          { id: 's1', phone: '+33 6 12 34 56 78' },
          { id: 's2', attributes: { phone: '+4915112345678' } },
          { id: 's3', phone: '0612' },
        ],
      });
      const audience = await h.api('POST', '/v1/audiences', { body: { name: 'sms', profileIds: ['s1', 's2', 's3'] } });
      const id = (await h.api('POST', '/v1/deliveries', { body: { ...deliveryBody(audience.body.id), channel: 'sms', content: { text: 'Sale today' } } })).body.id;
      const prepared = await h.api('POST', `/v1/deliveries/${id}/prepare`);
      expect(prepared.body.preparation).toMatchObject({ toSend: 2, excluded: { invalid_address: 1 } });
    });
  });
});
