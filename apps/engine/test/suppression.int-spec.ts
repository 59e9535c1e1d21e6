// Suppression is checked again when the engine sends: profiles that unsubscribed (their one-click
// link), complained (denylisted through the bounce webhook) or were quarantined (a hard bounce
// through the webhook) after the delivery was prepared get nothing. Confirm send counts them as
// excluded now and says the exclusions changed since preparation; the sending logs, the exclusion
// log and the Deployment block show them excluded at send time, neither sent nor pending.
// `herald start` as a process (its KPIs in chDB) on PGlite and on PostgreSQL, a real SMTP server
// on loopback, everything over HTTP.
import { readFileSync } from 'node:fs';
import { signWebhook } from '@herald/gateway';
import {
  type CaptureSink,
  call,
  createTestDatabase,
  describeEachStore,
  eventually,
  kpiEventCounts,
  ledgerStatuses,
  type Platform,
  platformEnv,
  startPlatform,
  startTestSink,
  stopPlatform,
  type TestDatabase,
  waitForDeliveryState,
} from '@herald/testing';

const WEBHOOK_SECRET = 'suppression-webhook-secret-0123456789abcdef';
const COUNT = 6;

describeEachStore('suppression at send time', (kind) => {
  let sink: CaptureSink;
  let database: TestDatabase | undefined;
  let platform: Platform;
  let home: string;

  beforeAll(async () => {
    sink = await startTestSink({ files: true });
    if (kind === 'postgres') database = await createTestDatabase('postgres');
    const env = await platformEnv('suppression', {
      SMTP_URL: sink.url,
      LOG_LEVEL: 'warn',
      HERALD_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ...(database ? { DATABASE_URL: database.url! } : {}),
    });
    home = env.HERALD_HOME!;
    platform = await startPlatform(env);
  });
  afterAll(async () => {
    if (platform?.child.exitCode === null) await stopPlatform(platform, 'SIGTERM');
    await sink?.close();
    await database?.drop();
  });

  const profile = (n: number) => `sx${String(n).padStart(6, '0')}`;
  const address = (n: number) => `sx${n}@example.com`;
  const mailTo = (n: number) => sink.messages().filter((m) => m.to.includes(address(n)));

  async function webhook(body: Record<string, unknown>) {
    const raw = JSON.stringify(body);
    const response = await fetch(`${platform.url}/v1/webhooks/bounces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'herald-signature': signWebhook(WEBHOOK_SECRET, raw) },
      body: raw,
    });
    return { status: response.status, body: await response.json() };
  }

  async function delivery(audienceId: string, name: string): Promise<string> {
    const created = await call(platform, 'POST', '/v1/deliveries', {
      name,
      channel: 'email',
      audienceId,
      content: { from: 'news@shop.example', subject: `${name} {{profile.firstName}}`, html: '<p>Hi <a href="https://shop.example/x">x</a></p>' },
    });
    const id = created.body.id as string;
    expect((await call(platform, 'POST', `/v1/deliveries/${id}/prepare`)).body.preparation).toMatchObject({ toSend: COUNT });
    expect((await call(platform, 'POST', `/v1/deliveries/${id}/approve`)).status).toBe(200);
    return id;
  }

  async function confirmAndOk(id: string): Promise<Record<string, unknown>> {
    const confirm = await call(platform, 'POST', `/v1/deliveries/${id}/confirmations`);
    expect(confirm.status).toBe(201);
    expect((await call(platform, 'POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);
    await waitForDeliveryState(platform, id, 'finished', 60_000);
    return confirm.body.summary;
  }

  it('does not send to profiles suppressed after preparation, and says so everywhere', async () => {
    const rows = Array.from({ length: COUNT }, (_, n) => JSON.stringify({ id: profile(n), email: address(n), firstName: `N${n}`, attributes: { run: 'sx' } }));
    expect((await call(platform, 'POST', '/v1/profiles/import', rows.join('\n'), 'application/x-ndjson')).body.imported).toBe(COUNT);
    const audienceId = (await call(platform, 'POST', '/v1/audiences', { name: 'sx', filter: { run: 'sx' } })).body.id as string;
    // An earlier delivery gives every recipient a real message: its unsubscribe link, its Message-ID.
    const earlier = await delivery(audienceId, 'Earlier');
    await confirmAndOk(earlier);
    const messageIdOf = async (n: number) => (await call(platform, 'GET', `/v1/profiles/${profile(n)}/history`)).body.items[0].messageId as string;

    const id = await delivery(audienceId, 'Later');
    const before = await call(platform, 'POST', `/v1/deliveries/${id}/confirmations`);
    expect(before.body.summary).toMatchObject({ toSend: COUNT, exclusionsChangedSincePreparation: false, exclusionsSincePreparation: {} });

    // After preparation: #0 unsubscribes with the one-click link of the message it got, #1
    // complains and #2 hard-bounces (both through the signed bounce webhook).
    const unsubscribe = /https?:\/\/[^/\s>]+\/u\/([\w.-]+)/.exec(readFileSync(mailTo(0)[0]!.file!, 'utf8'));
    expect(unsubscribe).not.toBeNull();
    const oneClick = await fetch(`${platform.url}/u/${unsubscribe![1]}`, { method: 'POST', body: 'List-Unsubscribe=One-Click' });
    expect(oneClick.status).toBe(200);
    expect(await webhook({ messageId: await messageIdOf(1), type: 'complaint' })).toMatchObject({ status: 200, body: { profileStatus: 'denylisted' } });
    expect(await webhook({ messageId: await messageIdOf(2), type: 'hard', reason: '550 5.1.1 user unknown' })).toMatchObject({
      status: 200,
      body: { profileStatus: 'quarantined' },
    });

    // Confirm send again: the exclusions as of now, and the change flagged. Then OK.
    const summary = await confirmAndOk(id);
    expect(summary).toMatchObject({
      toSend: 3,
      excluded: { unsubscribed: 1, denylisted: 1, quarantined: 1 },
      exclusionsChangedSincePreparation: true,
      exclusionsSincePreparation: { unsubscribed: 1, denylisted: 1, quarantined: 1 },
    });

    // The SMTP server got the later message only for #3..#5.
    for (const n of [0, 1, 2]) expect(mailTo(n)).toHaveLength(1);
    for (const n of [3, 4, 5]) expect(mailTo(n)).toHaveLength(2);

    // Sending logs: a status of its own, with the reason.
    const logs = (await call(platform, 'GET', `/v1/deliveries/${id}/logs`)).body.items as { profileId: string; status: string; reason: string | null }[];
    expect(logs.map((r) => [r.profileId, r.status, r.reason])).toEqual([
      [profile(0), 'excluded_at_send', 'unsubscribed'],
      [profile(1), 'excluded_at_send', 'denylisted'],
      [profile(2), 'excluded_at_send', 'quarantined'],
      [profile(3), 'sent', null],
      [profile(4), 'sent', null],
      [profile(5), 'sent', null],
    ]);
    expect(await ledgerStatuses(platform, id)).toEqual({ excluded_at_send: 3, sent: 3 });
    // The exclusion log lists them, marked as excluded at send time.
    const exclusions = (await call(platform, 'GET', `/v1/deliveries/${id}/exclusions`)).body.items;
    expect(exclusions).toEqual([
      { profileId: profile(0), address: address(0), reason: 'unsubscribed', stage: 'send', excludedAt: expect.any(String) },
      { profileId: profile(1), address: address(1), reason: 'denylisted', stage: 'send', excludedAt: expect.any(String) },
      { profileId: profile(2), address: address(2), reason: 'quarantined', stage: 'send', excludedAt: expect.any(String) },
    ]);
    // The profile's history lists what it was sent, not what it was spared.
    expect((await call(platform, 'GET', `/v1/profiles/${profile(0)}/history`)).body.items.map((m: { deliveryId: string }) => m.deliveryId)).toEqual([earlier]);

    // Deployment: neither sent nor pending; the KPIs count the three sent only.
    await eventually(async () => (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.sent === 3, { what: 'the KPIs to count the messages sent' });
    const deployment = (await call(platform, 'POST', `/v1/deliveries/${id}/compute-stats`)).body;
    expect(deployment.progress).toEqual({ toSend: COUNT, sent: 3, excludedAtSend: 3, pending: 0, stopped: 0 });
    expect(deployment.kpis).toMatchObject({ toSend: COUNT, sent: 3, delivered: 3, deliveredRate: 1, bouncesAndErrors: 0 });

    // BI counts them as 'excluded' events (read from the stopped platform's chDB).
    await stopPlatform(platform, 'SIGTERM');
    expect((await kpiEventCounts(home, id)).byType).toEqual({ sent: 3, delivered: 3, excluded: 3 });
  });
});
