// The bounce webhook after a real send: asynchronous hard, soft and ignored bounces and complaints
// move messages in the sending logs, quarantine or denylist profiles by the reference's rules, and
// emit the events the KPIs follow; unsigned, forged or stale calls change nothing. PGlite and PostgreSQL.
import { signWebhook } from '@herald/gateway';
import { describeEachStore } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

const SECRET = 'webhook-secret-webhook-secret-0123456789';

describeEachStore('bounce webhook', (kind) => {
  let h: EngineHarness;
  let id: string;
  /** Message-ID of each recipient, by profile id. */
  let messageIds: Map<string, string>;

  beforeAll(async () => {
    h = await startEngineHarness(kind, { env: { HERALD_WEBHOOK_SECRET: SECRET, QUARANTINE_SOFT_BOUNCES: '2' } });
    id = await h.deliveryFor(6, {}, 'wb-');
    await h.confirmAndOk(id);
    await h.waitForState(id, 'finished');
    const rows = await h.database.db.query<{ profile_id: string; message_id: string }>(
      'SELECT profile_id, message_id FROM send_ledger WHERE delivery_id = $1',
      [id],
    );
    messageIds = new Map(rows.map((r) => [r.profile_id, r.message_id]));
  });
  afterAll(async () => h?.close());

  async function post(body: unknown, signature?: string) {
    const raw = JSON.stringify(body);
    const response = await fetch(`${h.gateway.url}/v1/webhooks/bounces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(signature !== '' ? { 'herald-signature': signature ?? signWebhook(SECRET, raw) } : {}) },
      body: raw,
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  const message = (n: number) => messageIds.get(`wb-00000${n}`)!;

  async function ledgerOf(n: number) {
    const [row] = await h.database.db.query<{ status: string; bounce_type: string | null; last_error: string | null }>(
      'SELECT status, bounce_type, last_error FROM send_ledger WHERE message_id = $1',
      [message(n)],
    );
    return row;
  }

  async function webhookEvents() {
    return h.database.db.query<{ type: string; bounce_type: string | null; supersedes: string | null; profile: string }>(
      `SELECT payload->>'type' AS type, payload->>'bounceType' AS bounce_type, payload->>'supersedes' AS supersedes,
              payload->>'profileId' AS profile
         FROM outbox_messages WHERE topic = 'herald.message-events' AND payload->>'deliveryId' = $1
          AND payload->>'type' NOT IN ('sent', 'delivered') ORDER BY id, idx`,
      [id],
    );
  }

  it('refuses unsigned, forged, stale and malformed signatures with 401 and changes nothing', async () => {
    const body = { messageId: message(1), type: 'hard', reason: '550 5.1.1 user unknown' };
    const raw = JSON.stringify(body);
    const forged = signWebhook('another-secret-another-secret-0123456789', raw);
    const stale = signWebhook(SECRET, raw, new Date(Date.now() - 10 * 60_000));
    for (const [signature, problem] of [
      ['', 'missing'],
      [forged, 'mismatch'],
      [stale, 'expired'],
      ['t=abc,v1=zz', 'malformed'],
    ] as const) {
      const answer = await post(body, signature);
      expect(answer).toMatchObject({ status: 401, body: { code: 'WEBHOOK_SIGNATURE_INVALID', problem } });
    }
    // Signed for another body: the signature covers the exact bytes.
    const other = await fetch(`${h.gateway.url}/v1/webhooks/bounces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'herald-signature': signWebhook(SECRET, raw) },
      body: JSON.stringify({ ...body, type: 'soft' }),
    });
    expect(other.status).toBe(401);
    expect(await ledgerOf(1)).toMatchObject({ status: 'sent', bounce_type: null });
    expect(await webhookEvents()).toEqual([]);
  });

  it('answers 400 for a bad report and 404 for a Message-ID Herald never sent, changing nothing', async () => {
    expect(await post({ messageId: message(1), type: 'bounced' })).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
    expect(await post({ messageId: message(1), type: 'hard', extra: 1 })).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
    expect(await post({ messageId: '<nobody@shop.example>', type: 'hard' })).toMatchObject({ status: 404, body: { code: 'NOT_FOUND' } });
    expect(await webhookEvents()).toEqual([]);
  });

  it('a hard bounce moves the message from delivered to bounced and quarantines the address at once', async () => {
    // Without angle brackets, as some providers send it.
    const answer = await post({ messageId: message(1).slice(1, -1), type: 'hard', reason: '550 5.1.1 user unknown' });
    expect(answer).toMatchObject({ status: 200, body: { applied: true, status: 'bounced', profileStatus: 'quarantined', deliveryId: id } });
    expect(await ledgerOf(1)).toEqual({ status: 'bounced', bounce_type: 'hard', last_error: '550 5.1.1 user unknown' });
    expect((await h.api('GET', '/v1/profiles/wb-000001')).body.status).toBe('quarantined');
    // The MTA reports it again: nothing changes, nothing is counted twice.
    expect(await post({ messageId: message(1), type: 'hard' })).toMatchObject({ status: 200, body: { applied: false, status: 'bounced' } });
    expect(await webhookEvents()).toEqual([{ type: 'bounced', bounce_type: 'hard', supersedes: 'delivered', profile: 'wb-000001' }]);
  });

  it('soft bounces quarantine only at the threshold of consecutive soft bounces; ignored ones never', async () => {
    expect(await post({ messageId: message(2), type: 'soft', reason: '452 mailbox full' })).toMatchObject({
      status: 200,
      body: { applied: true, profileStatus: 'active' },
    });
    expect(await post({ messageId: message(3), type: 'ignored', reason: 'out of office' })).toMatchObject({
      status: 200,
      body: { applied: true, status: 'bounced', profileStatus: 'active' },
    });
    // A second soft bounce of wb-000002, on a message of another delivery: threshold 2 reached.
    const audience = await h.api('POST', '/v1/audiences', { body: { name: 'wb2', profileIds: ['wb-000002'] } });
    const second = await h.api('POST', '/v1/deliveries', {
      body: { name: 'Second', channel: 'email', audienceId: audience.body.id, content: { from: 'news@shop.example', subject: 'Hi', text: 'Hi' } },
    });
    await h.api('POST', `/v1/deliveries/${second.body.id}/prepare`);
    await h.api('POST', `/v1/deliveries/${second.body.id}/approve`);
    await h.confirmAndOk(second.body.id);
    await h.waitForState(second.body.id, 'finished');
    const [row] = await h.database.db.query<{ message_id: string }>('SELECT message_id FROM send_ledger WHERE delivery_id = $1', [second.body.id]);
    expect(await post({ messageId: row!.message_id, type: 'soft' })).toMatchObject({ status: 200, body: { profileStatus: 'quarantined' } });
    const [counts] = await h.database.db.query<{ soft_bounce_count: number }>("SELECT soft_bounce_count FROM profiles WHERE id = 'wb-000002'");
    expect(counts!.soft_bounce_count).toBe(2);
    expect((await h.api('GET', '/v1/profiles/wb-000003')).body.status).toBe('active');
  });

  it('a complaint denylists the profile once; the message stays delivered', async () => {
    expect(await post({ messageId: message(4), type: 'complaint', reason: 'abuse report' })).toMatchObject({
      status: 200,
      body: { applied: true, status: 'sent', profileStatus: 'denylisted' },
    });
    expect(await post({ messageId: message(4), type: 'complaint' })).toMatchObject({ status: 200, body: { applied: false } });
    expect((await h.api('GET', '/v1/profiles/wb-000004')).body.status).toBe('denylisted');
    expect((await webhookEvents()).filter((e) => e.type === 'complained')).toEqual([
      { type: 'complained', bounce_type: null, supersedes: null, profile: 'wb-000004' },
    ]);
  });

  it('shows the bounce in the sending logs and excludes quarantined and denylisted profiles at the next preparation', async () => {
    const logs = await h.api('GET', `/v1/deliveries/${id}/logs`);
    expect(logs.body.items.find((r: { profileId: string }) => r.profileId === 'wb-000001')).toMatchObject({ status: 'bounced' });
    const next = await h.api('POST', '/v1/deliveries', {
      body: { name: 'Again', channel: 'email', audienceId: (await h.api('GET', `/v1/deliveries/${id}`)).body.audienceId, content: { from: 'news@shop.example', subject: 'Again', text: 'Hi' } },
    });
    const prepared = await h.api('POST', `/v1/deliveries/${next.body.id}/prepare`);
    expect(prepared.body.preparation.excluded).toMatchObject({ quarantined: 2, denylisted: 1 });
  });
});
