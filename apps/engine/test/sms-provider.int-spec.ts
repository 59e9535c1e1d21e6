// The sms channel against a real HTTP provider on loopback that breaks its contract: every
// answer that does not match it is a per-message error with the raw answer in the sending logs,
// never a stuck run. And a channel no engine can send is refused at Confirm send.
import { describeEachStore, type SmsProvider, startSmsProvider } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

/** How the provider answers a batch of {id, to, text}: HTTP 200 with this body. */
type Answer = (messages: { id: string }[]) => string;

describeEachStore('sms provider', (kind) => {
  describe('answers that break the contract', () => {
    let h: EngineHarness;
    let provider: SmsProvider;
    let answer: Answer = () => '';
    let batch = 0;

    beforeAll(async () => {
      provider = await startSmsProvider((messages) => answer(messages));
      h = await startEngineHarness(kind, { workerOverrides: { httpProviderUrl: `${provider.url}?api_key=s3cret` } });
    });
    afterAll(async () => {
      await h?.close();
      await provider?.close();
    });

    /** An approved sms delivery to `count` numbers. */
    async function smsDelivery(count: number): Promise<string> {
      const prefix = `m${batch++}-`;
      const profiles = Array.from({ length: count }, (_, i) => ({ id: `${prefix}${i}`, phone: `+3361200${String(batch).padStart(2, '0')}${String(i).padStart(3, '0')}` }));
      await h.api('POST', '/v1/profiles/import', { body: profiles });
      const audience = await h.api('POST', '/v1/audiences', { body: { name: prefix, profileIds: profiles.map((p) => p.id) } });
      const created = await h.api('POST', '/v1/deliveries', {
        body: { name: prefix, channel: 'sms', audienceId: audience.body.id, content: { text: 'Flash sale' } },
      });
      const id = created.body.id;
      await h.api('POST', `/v1/deliveries/${id}/prepare`);
      await h.api('POST', `/v1/deliveries/${id}/approve`);
      return id;
    }

    async function logs(id: string): Promise<{ status: string; lastError: string | null }[]> {
      return (await h.api('GET', `/v1/deliveries/${id}/logs`)).body.items;
    }

    it('names the provider in the summary, its secrets redacted', async () => {
      const id = await smsDelivery(1);
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.status).toBe(201);
      expect(confirm.body.summary.provider).toEqual({ channel: 'sms', kind: 'http', url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/v1\/sms\?api_key=\*\*\*$/) });
      expect(JSON.stringify(confirm.body)).not.toContain('s3cret');
    });

    it.each<[string, Answer, RegExp]>([
      ['a code that is not a number', (ms) => JSON.stringify({ results: ms.map((m) => ({ id: m.id, status: 'rejected', code: 'E_UNKNOWN_NUMBER' })) }), /E_UNKNOWN_NUMBER/],
      ['a body that is not JSON', () => '<html><body>502 Bad Gateway</body></html>', /502 Bad Gateway/],
      ['no results at all', () => JSON.stringify({ ok: true }), /\{"ok":true\}/],
      ['a status outside the contract', (ms) => JSON.stringify({ results: ms.map((m) => ({ id: m.id, status: 'queued' })) }), /"status":"queued"/],
    ])('finishes the run with a per-message error on %s, the raw answer in the logs', async (_, malformed, raw) => {
      answer = malformed;
      const id = await smsDelivery(4);
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished', 30_000);
      const entries = await logs(id);
      expect(entries.map((e) => e.status)).toEqual(['in_doubt', 'in_doubt', 'in_doubt', 'in_doubt']);
      for (const entry of entries) expect(entry.lastError).toMatch(raw);
      expect(entries[0]!.lastError).toContain('does not match the contract');
    });

    it('takes the results it can read and errs on the messages it has no result for', async () => {
      answer = (ms) => JSON.stringify({ results: [{ id: ms[0]!.id, status: 'accepted' }] });
      const id = await smsDelivery(3);
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished', 30_000);
      expect((await logs(id)).map((e) => [e.status, e.lastError])).toEqual([
        ['sent', null],
        ['in_doubt', expect.stringContaining('no result for this message')],
        ['in_doubt', expect.stringContaining('no result for this message')],
      ]);
    });
  });

  describe('no provider configured', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind);
    });
    afterAll(async () => h?.close());

    async function smsDelivery(prefix: string): Promise<string> {
      await h.api('POST', '/v1/profiles/import', { body: [{ id: `${prefix}1`, phone: '+33612000001' }] });
      const audience = await h.api('POST', '/v1/audiences', { body: { name: prefix, profileIds: [`${prefix}1`] } });
      const created = await h.api('POST', '/v1/deliveries', { body: { name: prefix, channel: 'sms', audienceId: audience.body.id, content: { text: 'Hi' } } });
      const id = created.body.id;
      await h.api('POST', `/v1/deliveries/${id}/prepare`);
      await h.api('POST', `/v1/deliveries/${id}/approve`);
      return id;
    }

    it('refuses Confirm send of sms with 409 CHANNEL_NOT_CONFIGURED, and nothing changes', async () => {
      const id = await smsDelivery('nc');
      const before = await h.api('GET', `/v1/deliveries/${id}/audit`);
      const refused = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(refused.status).toBe(409);
      expect(refused.body).toMatchObject({ code: 'CHANNEL_NOT_CONFIGURED', channel: 'sms' });
      expect(refused.body.message).toContain('HTTP_PROVIDER_URL');
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body).toMatchObject({ state: 'approved', version: expect.any(Number) });
      expect((await h.api('GET', `/v1/deliveries/${id}/audit`)).body.items).toEqual(before.body.items);
      const [row] = await h.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM confirmations WHERE delivery_id = $1', [id]);
      expect(row!.n).toBe(0);
    });

    it('an engine that cannot send sms pauses the run with the reason, and sends nothing', async () => {
      const id = await smsDelivery('np');
      // Confirmed while no engine ran (a warning, not a refusal), then an engine without a provider starts.
      await h.engine.stop();
      const confirm = await h.api('POST', `/v1/deliveries/${id}/confirmations`);
      expect(confirm.body.summary.warnings.map((w: { code: string }) => w.code)).toContain('NO_ENGINE');
      expect((await h.api('POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);
      await h.restartEngine();
      await h.gateway.relay.drain();
      const paused = await h.waitForState(id, 'paused', 30_000);
      expect(paused.stateReason).toMatch(/^CHANNEL_NOT_CONFIGURED: .*sms.*HTTP_PROVIDER_URL/);
      expect(await h.ledger(id)).toEqual({ pending: 1 });
    });
  });
});
