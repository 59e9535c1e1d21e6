// End to end on the embedded default (herald start: PGlite, in-process bus, engine, chDB): a
// delivery is sent, some messages are opened and clicked through their real tracking links,
// and the Deployment block matches what the test did, with rates moving only on Compute stats.
import { signWebhook } from '@herald/gateway';
import {
  type CaptureSink,
  call,
  eventually,
  hit,
  ledgerStatuses,
  messageLinks,
  type Platform,
  platformEnv,
  startPlatform,
  startSend,
  startTestSink,
  stopPlatform,
  waitForDeliveryState,
} from '@herald/testing';

const RECIPIENTS = 5_000;
const WEBHOOK_SECRET = 'deployment-webhook-secret-0123456789abcdef';

describe('Deployment KPIs through herald start', () => {
  let sink: CaptureSink;
  let platform: Platform;

  beforeAll(async () => {
    sink = await startTestSink({ files: true });
    platform = await startPlatform(await platformEnv('kpi', { SMTP_URL: sink.url, LOG_LEVEL: 'warn', HERALD_WEBHOOK_SECRET: WEBHOOK_SECRET }));
  });
  afterAll(async () => {
    await stopPlatform(platform, 'SIGTERM');
    await sink.close();
  });

  /** The Message-ID of a profile's message, as the recipient's MTA would report it. */
  async function ledgerMessageIds(profileId: string): Promise<string[]> {
    const history = (await call(platform, 'GET', `/v1/profiles/${profileId}/history`)).body.items as { messageId: string }[];
    return history.map((m) => m.messageId);
  }

  it('counts what was sent, opened, clicked and bounced; rates move on Compute stats', async () => {
    const id = await startSend(platform, {
      prefix: 'k',
      count: RECIPIENTS,
      html: '<p>Hi <a href="https://shop.example/a">a</a> <a href="https://shop.example/b">b</a></p>',
    });
    await waitForDeliveryState(platform, id, 'finished', 120_000);
    await eventually(async () => (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.delivered === RECIPIENTS, { what: 'live counters' });

    // Before any Compute stats, open 30 messages (pixel), click 10 of those, and click 5 others without a pixel hit.
    const links = sink.messages().map((m) => {
      const n = Number(/^k(\d+)@/.exec(m.to[0]!)![1]);
      return { profileId: `k${String(n).padStart(6, '0')}`, ...messageLinks(m.file!) };
    });
    const before = (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body;
    for (const link of links.slice(0, 30)) expect((await hit(link.pixel)).status).toBe(200);
    for (const link of links.slice(0, 10)) expect((await hit(link.click)).status).toBe(302);
    for (const link of links.slice(30, 35)) expect((await hit(link.click)).status).toBe(302);
    await hit(links[0]!.pixel); // a second open of the same message counts once
    // A link scanner fetches one more message's pixel: it counts, and is reported apart.
    expect((await fetch(links[50]!.pixel, { headers: { 'user-agent': 'Mimecast URL protection' } })).status).toBe(200);
    // Two messages bounce after delivery (the MTA's webhook): delivered falls, bounces rise, live.
    for (const link of links.slice(100, 102)) {
      const [row] = await ledgerMessageIds(link.profileId);
      const body = JSON.stringify({ messageId: row, type: 'hard', reason: '550 5.1.1 user unknown' });
      const answer = await fetch(`${platform.url}/v1/webhooks/bounces`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'herald-signature': signWebhook(WEBHOOK_SECRET, body) },
        body,
      });
      expect(answer.status).toBe(200);
    }
    await eventually(async () => (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body.kpis.bouncesAndErrors === 2, { what: 'the bounces' });

    // Rates do not move until Compute stats.
    const unchanged = (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body;
    expect(unchanged.kpis.openRate).toBe(before.kpis.openRate);
    expect(unchanged.ratesComputedAt).toBe(before.ratesComputedAt);

    await eventually(
      async () => {
        const fresh = (await call(platform, 'POST', `/v1/deliveries/${id}/compute-stats`)).body;
        return fresh.kpis.opens === 36 && fresh.kpis.clicks === 15;
      },
      { timeoutMs: 15_000, what: 'the opens and clicks to be counted' },
    );
    const deployment = (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body;
    expect(deployment).toMatchObject({
      state: 'finished',
      progress: { toSend: RECIPIENTS, sent: RECIPIENTS, pending: 0 },
      kpis: {
        toSend: RECIPIENTS,
        sent: RECIPIENTS,
        delivered: RECIPIENTS - 2,
        deliveredRate: (RECIPIENTS - 2) / RECIPIENTS,
        bouncesAndErrors: 2,
        bounceRate: 2 / RECIPIENTS,
        opens: 36,
        openRate: 36 / (RECIPIENTS - 2),
        clicks: 15,
        clickRate: 15 / (RECIPIENTS - 2),
        machineOpens: 1,
        machineClicks: 0,
      },
    });
    expect(Date.parse(deployment.ratesComputedAt)).toBeGreaterThan(0);
    // A one-off delivery has one run, occurrence 0: the same block; no other run exists.
    const run0 = (await call(platform, 'GET', `/v1/deliveries/${id}/deployment?occurrence=0`)).body;
    expect(run0).toMatchObject({ occurrence: 0, progress: deployment.progress, kpis: { ...deployment.kpis } });
    expect((await call(platform, 'GET', `/v1/deliveries/${id}/deployment?occurrence=3`)).status).toBe(404);
    expect((await call(platform, 'GET', `/v1/deliveries/${id}/deployment?occurrence=x`)).status).toBe(400);

    // The message is in each recipient's history, with when it was first opened and clicked.
    const history = (await call(platform, 'GET', `/v1/profiles/${links[0]!.profileId}/history`)).body.items;
    expect(history).toEqual([
      expect.objectContaining({ deliveryId: id, deliveryName: 'send k', channel: 'email', status: 'sent', messageId: expect.stringMatching(/^<.+>$/) }),
    ]);
    expect(Date.parse(history[0].sentAt)).toBeGreaterThan(0);
    expect(Date.parse(history[0].openedAt)).toBeGreaterThan(0);
    expect(Date.parse(history[0].clickedAt)).toBeGreaterThan(0);
    const untouched = (await call(platform, 'GET', `/v1/profiles/${links[RECIPIENTS - 1]!.profileId}/history`)).body.items;
    expect(untouched).toEqual([expect.objectContaining({ status: 'sent', openedAt: null, clickedAt: null })]);
    const bounced = (await call(platform, 'GET', `/v1/profiles/${links[100]!.profileId}/history`)).body.items;
    expect(bounced).toEqual([expect.objectContaining({ status: 'bounced' })]);
    expect((await call(platform, 'GET', `/v1/profiles/${links[100]!.profileId}`)).body.status).toBe('quarantined');
  });

  it('shows the recipients a stop left unsent as stopped, not pending, and no rate before anything was sent', async () => {
    const count = 300;
    const rows = Array.from({ length: count }, (_, i) => JSON.stringify({ id: `st${String(i).padStart(6, '0')}`, email: `st${i}@example.com`, attributes: { run: 'st' } }));
    await call(platform, 'POST', '/v1/profiles/import', rows.join('\n'), 'application/x-ndjson');
    const audience = await call(platform, 'POST', '/v1/audiences', { name: 'st', filter: { run: 'st' } });
    const created = await call(platform, 'POST', '/v1/deliveries', {
      name: 'stopped early',
      channel: 'email',
      audienceId: audience.body.id,
      content: { from: 'news@shop.example', subject: 'Hi', text: 'Hello' },
      // About 4 messages a second: the stop comes long before the end.
      throughput: { perHour: 14_400 },
    });
    const id = created.body.id as string;
    await call(platform, 'POST', `/v1/deliveries/${id}/prepare`);
    await call(platform, 'POST', `/v1/deliveries/${id}/approve`);

    // Nothing sent yet: every rate is null (no denominator), not 0%.
    const unsent = (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body;
    expect(unsent.kpis).toMatchObject({ sent: 0, delivered: 0, deliveredRate: null, bounceRate: null, openRate: null, clickRate: null });

    const confirm = await call(platform, 'POST', `/v1/deliveries/${id}/confirmations`);
    expect((await call(platform, 'POST', `/v1/deliveries/${id}/confirmations/${confirm.body.confirmationId}/ok`)).status).toBe(202);
    await eventually(async () => ((await ledgerStatuses(platform, id)).sent ?? 0) >= 4, { timeoutMs: 30_000, what: 'the first messages' });
    expect((await call(platform, 'POST', `/v1/deliveries/${id}/stop`)).body.state).toBe('stopped');

    // What was being sent settles; everything else is stopped, at once and for good.
    let statuses: Record<string, number> = {};
    await eventually(
      async () => {
        statuses = await ledgerStatuses(platform, id);
        return !statuses.sending && !statuses.queued && !statuses.pending && !statuses.retry;
      },
      { timeoutMs: 30_000, what: 'the messages in flight to settle' },
    );
    const sent = statuses.sent ?? 0;
    expect(statuses).toEqual({ sent, stopped: count - sent });
    expect(sent).toBeLessThan(count / 2);
    const deployment = (await call(platform, 'GET', `/v1/deliveries/${id}/deployment`)).body;
    expect(deployment).toMatchObject({ state: 'stopped', progress: { toSend: count, sent, pending: 0, stopped: count - sent } });
  });
});
