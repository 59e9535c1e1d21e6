// The KPI store and the KPI consumer on chDB, in a temp dir. chDB binds one data directory per
// process and Jest may run several files in one process: every in-process chDB test of the repo
// lives in THIS file, on one chDB connection opened once (end-to-end tests run herald as a child).
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { busFromEnv } from '@herald/bus';
import { type MessageEvent, TOPICS } from '@herald/contracts';
import { deliveryBody, seedAudience, startHarness } from '@herald/gateway/testing';
import { type ClientConnection, chdbConnection, type KpiStore, openKpiStore, splitSql } from '@herald/kpi-store';
import { eventually, tempDir } from '@herald/testing';
import { pino } from 'pino';
import { KpiConsumer } from './kpi-consumer.js';
import { recoverPublishedEvents, repairAfterRestart } from './recovery.js';

const D1 = '11111111-1111-4111-8111-111111111111';
const D2 = '22222222-2222-4222-8222-222222222222';
const D3 = '33333333-3333-4333-8333-333333333333';
const D4 = '44444444-4444-4444-8444-444444444444';
const D5 = '55555555-5555-4555-8555-555555555555';
const D6 = '66666666-6666-4666-8666-666666666666';
const D7 = '77777777-7777-4777-8777-777777777777';
const D8 = '88888888-8888-4888-8888-888888888888';
const D9 = '99999999-9999-4999-8999-999999999999';

let minute = 0;
function ev(
  deliveryId: string,
  type: MessageEvent['type'],
  messageId: string,
  extra: Partial<MessageEvent> = {},
): MessageEvent {
  minute += 1;
  return {
    eventId: randomUUID(),
    type,
    deliveryId,
    occurrence: 0,
    messageId,
    profileId: `p-${messageId}`,
    channel: 'email',
    occurredAt: new Date(Date.UTC(2025, 5, 1, 10, minute)).toISOString(),
    ...extra,
  };
}

// Delivery D1, occurrence 0: ten messages m1..m10.
//   delivered m1..m6 (6); bounced m7 hard, m8 soft, m9 ignored (3); failed m10 (1) → sent 10
//   opened m1 twice, m2, m3 (4 open events); clicked m2 (after a pixel hit), m4 twice (no pixel)
//   → 3 click events; unique opens {m1,m2,m3,m4} = 4 → 4/6; unique clicks {m2,m4} = 2 → 2/6
//   unsubscribed m3
// Delivery D1, occurrence 1: m11 delivered and clicked (no pixel) → occurrence-1 open rate 1/1.
// Delivery D2 (noise that must not leak into D1): 2 delivered, 1 opened.
const fixture: MessageEvent[] = [
  ...['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'm10'].map((m) => ev(D1, 'sent', m)),
  ...['m1', 'm2', 'm3', 'm4', 'm5', 'm6'].map((m) => ev(D1, 'delivered', m)),
  ev(D1, 'bounced', 'm7', { bounceType: 'hard', reason: 'user unknown' }),
  ev(D1, 'bounced', 'm8', { bounceType: 'soft', reason: 'mailbox full' }),
  ev(D1, 'bounced', 'm9', { bounceType: 'ignored' }),
  ev(D1, 'failed', 'm10', { reason: 'quarantined address' }),
  ev(D1, 'opened', 'm1'),
  ev(D1, 'opened', 'm1', { machine: true }),
  ev(D1, 'opened', 'm2'),
  ev(D1, 'opened', 'm3'),
  ev(D1, 'clicked', 'm2', { url: 'https://example.com/a' }),
  ev(D1, 'clicked', 'm4', { url: 'https://example.com/a' }),
  ev(D1, 'clicked', 'm4', { url: 'https://example.com/b' }),
  ev(D1, 'unsubscribed', 'm3'),
  ev(D1, 'delivered', 'm11', { occurrence: 1 }),
  ev(D1, 'clicked', 'm11', { occurrence: 1, url: 'https://example.com/a' }),
  ev(D2, 'delivered', 'x1'),
  ev(D2, 'delivered', 'x2'),
  ev(D2, 'opened', 'x1'),
];

let dir: string;
let connection: ClientConnection;
let store: KpiStore;
const silent = pino({ level: 'silent' });

/** The chDB connection, failing every insert while `failing` is set (a broken link to ClickHouse). */
function flakyConnection(base: ClientConnection) {
  const control = { failing: false, failedInserts: 0 };
  const wrapped = new Proxy(base, {
    get(target, property, receiver) {
      if (property === 'insert') {
        return (params: unknown) => {
          if (control.failing) {
            control.failedInserts++;
            return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' }));
          }
          return (target.insert as (p: unknown) => Promise<unknown>).call(target, params);
        };
      }
      // The store's close() must not close the connection the other stores share.
      if (property === 'close') return async () => undefined;
      const value = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { connection: wrapped, control };
}

/** '2025-06-01 10:01:00.000' (ClickHouse, UTC) → ISO. */
const isoOf = (value: unknown) => `${String(value).replace(' ', 'T')}Z`;

async function rows<T>(query: string): Promise<T[]> {
  const rs = await store.client.query({ query, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } });
  return rs.json<T>();
}

/**
 * The runner the KPI store had before @herald/migrations, as it was: a chDB store it migrated is
 * what an existing HERALD_HOME has.
 */
async function migrateAsBefore(client: KpiStore['client'], migrationsDir: string): Promise<void> {
  await client.command({ query: 'CREATE DATABASE IF NOT EXISTS herald ENGINE = Atomic' });
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS herald.schema_migrations
      (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
      ENGINE = MergeTree ORDER BY version`,
  });
  const done = await (await client.query({ query: 'SELECT version FROM herald.schema_migrations', format: 'JSONEachRow' })).json<{ version: number }>();
  const applied = new Set(done.map((r) => Number(r.version)));
  const files = readdirSync(migrationsDir)
    .filter((f) => /^\d+_.*\.sql$/.test(f))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  for (const file of files) {
    const version = Number.parseInt(file, 10);
    if (applied.has(version)) continue;
    const sql = readFileSync(join(migrationsDir, file), 'utf8');
    for (const statement of splitSql(sql)) {
      await client.command({ query: statement, clickhouse_settings: { insert_deduplication_token: '' } });
    }
    await client.insert({
      table: 'herald.schema_migrations',
      values: [{ version, name: file }],
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `migration-${version}-${Date.now()}` },
    });
  }
}

/** What each step of the migration history in beforeAll applied. */
const migrationSteps: { upTo002: string[]; all: string[] } = { upTo002: [], all: [] };

beforeAll(async () => {
  dir = tempDir('kpi');
  connection = chdbConnection(dir);
  // The store's history: migration 001 by the runner of an older release, with events in it (so
  // 002's backfills are exercised on real rows); 002 by this runner from a folder that stops
  // there (an older release's); then everything this release has.
  const migrations = fileURLToPath(new URL('../../../packages/kpi-store/migrations/', import.meta.url));
  const only001 = tempDir('kpi-001');
  const upTo002 = tempDir('kpi-002');
  mkdirSync(only001, { recursive: true });
  copyFileSync(join(migrations, '001_events.sql'), join(only001, '001_events.sql'));
  for (const file of ['001_events.sql', '002_bounces_series_history.sql']) copyFileSync(join(migrations, file), join(upTo002, file));
  const old = openKpiStore({ connection: flakyConnection(connection).connection, migrationsDir: upTo002 });
  await migrateAsBefore(old.client, only001);
  await old.insertEvents(
    [ev(D6, 'delivered', 'h1'), ev(D6, 'opened', 'h1'), ev(D6, 'clicked', 'h1', { url: 'https://example.com/old' })],
    { dedupToken: 'before-002' },
  );
  migrationSteps.upTo002 = (await old.migrate()).applied;
  rmSync(only001, { recursive: true, force: true });
  rmSync(upTo002, { recursive: true, force: true });
  store = openKpiStore({ connection });
  migrationSteps.all = (await store.migrate()).applied;
  // Settle the refresh that creating the view starts, so later rates move only on refreshRates().
  await store.refreshRates();
});

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('KpiStore on chDB', () => {
  it('runs on chDB with the herald database as Atomic, and migrates once', async () => {
    expect(store.backend).toBe('chdb');
    const rs = await store.client.query({
      query: "SELECT engine FROM system.databases WHERE name = 'herald'",
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toEqual([{ engine: 'Atomic' }]);
    expect(await store.migrate()).toEqual({ applied: [] });
    const versions = await store.client.query({
      query: 'SELECT version, name FROM herald.schema_migrations ORDER BY version',
      format: 'JSONEachRow',
    });
    expect(await versions.json()).toEqual([
      { version: 1, name: '001_events.sql' },
      { version: 2, name: '002_bounces_series_history.sql' },
      { version: 3, name: '003_excluded_and_repairs.sql' },
      { version: 4, name: '004_rates_of_active_runs.sql' },
    ]);
  });

  it("applies only what a store migrated by an older release's runner lacks", async () => {
    // 001 by the previous runner, 002 by this one from an older release's folder, 003 at last:
    // the "migrates once" case above finds each of them recorded once.
    expect(migrationSteps).toEqual({ upTo002: ['002_bounces_series_history.sql'], all: ['003_excluded_and_repairs.sql', '004_rates_of_active_runs.sql'] });
  });

  it('has no rates for a delivery before a refresh has seen it', async () => {
    await store.insertEvents(fixture, { dedupToken: 'fixture-1' });
    expect(await store.deliveryRates(D1)).toBeUndefined();
  });

  it('counts live: sent = delivered + bounces + errors, with the delivered and bounce+error rates', async () => {
    expect(await store.deliveryCounters(D1, { occurrence: 0 })).toEqual({
      deliveryId: D1,
      sent: 10,
      delivered: 6,
      hardBounces: 1,
      softBounces: 1,
      ignoredBounces: 1,
      bounces: 3,
      errors: 1,
      opens: 4,
      clicks: 3,
      unsubscribed: 1,
      complaints: 0,
      excluded: 0,
      sentEvents: 10,
      deliveredRate: 0.6,
      bounceErrorRate: 0.4,
    });
    const all = await store.deliveryCounters(D1);
    expect([all.sent, all.delivered, all.clicks]).toEqual([11, 7, 4]);
    const d2 = await store.deliveryCounters(D2);
    expect([d2.sent, d2.delivered, d2.opens, d2.clicks]).toEqual([2, 2, 1, 0]);
  });

  it('computes open rate (a click without a pixel counts as an open) and CTR on refresh', async () => {
    await store.refreshRates();
    const r0 = await store.deliveryRates(D1, { occurrence: 0 });
    // m1's second open came from a scanner: counted in the KPI, and reported apart.
    expect(r0).toMatchObject({ delivered: 6, uniqueOpens: 4, uniqueClicks: 2, machineOpens: 1, machineClicks: 0 });
    expect(r0?.openRate).toBeCloseTo(4 / 6, 12);
    expect(r0?.clickRate).toBeCloseTo(2 / 6, 12);
    expect(r0?.computedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const r1 = await store.deliveryRates(D1, { occurrence: 1 });
    expect(r1).toMatchObject({ delivered: 1, uniqueOpens: 1, uniqueClicks: 1, openRate: 1, clickRate: 1 });
    const all = await store.deliveryRates(D1);
    expect(all).toMatchObject({ delivered: 7, uniqueOpens: 5, uniqueClicks: 3 });
    expect(all?.openRate).toBeCloseTo(5 / 7, 12);
    expect(await store.deliveryRates(D2)).toMatchObject({ delivered: 2, uniqueOpens: 1, uniqueClicks: 0, openRate: 0.5 });
  });

  it('keeps rates still between refreshes while counters move live', async () => {
    const before = await store.deliveryRates(D1, { occurrence: 0 });
    await store.insertEvents([ev(D1, 'opened', 'm5'), ev(D1, 'clicked', 'm6')], { dedupToken: 'late-1' });
    expect((await store.deliveryCounters(D1, { occurrence: 0 })).opens).toBe(5);
    expect(await store.deliveryRates(D1, { occurrence: 0 })).toEqual(before);

    await store.refreshRates();
    const after = await store.deliveryRates(D1, { occurrence: 0 });
    expect(after).toMatchObject({ delivered: 6, uniqueOpens: 6, uniqueClicks: 3, openRate: 1, clickRate: 0.5 });
    expect((after?.computedAt ?? '') >= (before?.computedAt ?? '')).toBe(true);
  });

  it('refreshes the rates every hour, on a schedule read back from the engine', async () => {
    const ddl = await store.client.query({ query: 'SHOW CREATE TABLE herald.delivery_rates', format: 'JSONEachRow' });
    const [{ statement }] = (await ddl.json<{ statement: string }>()) as [{ statement: string }];
    expect(statement).toMatch(/REFRESH EVERY 1 HOUR/);
    const rs = await store.client.query({
      query: `SELECT status, exception, toUnixTimestamp(next_refresh_time) - toUnixTimestamp(now()) AS next_in_s
              FROM system.view_refreshes WHERE database = 'herald' AND view = 'delivery_rates'`,
      format: 'JSONEachRow',
    });
    const [state] = await rs.json<{ status: string; exception: string; next_in_s: number }>();
    expect(state).toMatchObject({ status: 'Scheduled', exception: '' });
    // EVERY 1 HOUR is aligned to the hour: the next run is within the coming hour.
    expect(state!.next_in_s).toBeGreaterThan(0);
    expect(state!.next_in_s).toBeLessThanOrEqual(3600);
  });

  it('counts a batch inserted twice with the same dedup token once', async () => {
    const batch = [ev(D2, 'delivered', 'x3'), ev(D2, 'opened', 'x3'), ev(D2, 'clicked', 'x3')];
    await store.insertEvents(batch, { dedupToken: 'offsets-42-44' });
    await store.insertEvents(batch, { dedupToken: 'offsets-42-44' });
    const c = await store.deliveryCounters(D2);
    expect([c.delivered, c.opens, c.clicks]).toEqual([3, 2, 1]);
    const raw = await store.client.query({
      query: `SELECT count() AS n FROM herald.message_events WHERE delivery_id = '${D2}'`,
      format: 'JSONEachRow',
    });
    // chDB leaves 64-bit integers unquoted in JSON by default, a server quotes them: compare as numbers.
    expect((await raw.json<{ n: string | number }>()).map((r) => Number(r.n))).toEqual([6]);
  });

  it('does not let a token stick to later inserts (chDB applies settings to its session)', async () => {
    await store.insertEvents([ev(D2, 'delivered', 'x4')], { dedupToken: 'sticky' });
    await store.insertEvents([ev(D2, 'delivered', 'x5')]);
    await store.insertEvents([ev(D2, 'delivered', 'x6')], { dedupToken: 'other' });
    expect((await store.deliveryCounters(D2)).delivered).toBe(6);
  });

  it('exposes the KPIs to BI through the delivery_summary view', async () => {
    const rs = await store.client.query({
      query: `SELECT sent, delivered, hard_bounces, soft_bounces, ignored_bounces, errors, delivered_rate,
                     bounce_error_rate, unique_opens, unique_clicks, open_rate, click_rate
              FROM herald.delivery_summary WHERE delivery_id = {d:UUID} AND occurrence = 0`,
      query_params: { d: D1 },
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
    });
    expect(await rs.json()).toEqual([
      {
        sent: 10,
        delivered: 6,
        hard_bounces: 1,
        soft_bounces: 1,
        ignored_bounces: 1,
        errors: 1,
        delivered_rate: 0.6,
        bounce_error_rate: 0.4,
        unique_opens: 6,
        unique_clicks: 3,
        open_rate: 1,
        click_rate: 0.5,
      },
    ]);
  });

  it('ingests 100k events in one insert and answers a delivery quickly', async () => {
    const n = 100_000;
    const types: MessageEvent['type'][] = ['sent', 'delivered', 'opened', 'clicked', 'bounced'];
    const base = Date.UTC(2025, 6, 1);
    const events: MessageEvent[] = Array.from({ length: n }, (_, i) => {
      const type = types[i % types.length]!;
      return {
        eventId: randomUUID(),
        type,
        deliveryId: D3,
        occurrence: 0,
        messageId: `b${Math.floor(i / types.length)}`,
        profileId: `p${i}`,
        channel: 'email',
        occurredAt: new Date(base + i * 1000).toISOString(),
        ...(type === 'bounced' ? { bounceType: 'soft' as const } : {}),
      };
    });
    let t = performance.now();
    await store.insertEvents(events, { dedupToken: 'bench-100k' });
    const insertMs = performance.now() - t;

    t = performance.now();
    const c = await store.deliveryCounters(D3);
    const countersMs = performance.now() - t;
    t = performance.now();
    await store.refreshRates();
    const refreshMs = performance.now() - t;
    t = performance.now();
    const r = await store.deliveryRates(D3);
    const ratesMs = performance.now() - t;

    expect([c.sentEvents, c.delivered, c.opens, c.clicks, c.softBounces, c.sent]).toEqual([
      20_000, 20_000, 20_000, 20_000, 20_000, 40_000,
    ]);
    expect(r).toMatchObject({ delivered: 20_000, uniqueOpens: 20_000, uniqueClicks: 20_000 });
    console.info(
      `kpi-store chDB timings: insert ${n} events ${insertMs.toFixed(0)} ms; deliveryCounters ${countersMs.toFixed(1)} ms; ` +
        `refreshRates ${refreshMs.toFixed(0)} ms; deliveryRates ${ratesMs.toFixed(1)} ms`,
    );
  });

  it('backfilled the rows written before migration 002 into the hourly series and the profile history', async () => {
    expect(await store.hourlySeries(D6)).toEqual([
      expect.objectContaining({ delivered: 1, opens: 1, clicks: 1, uniqueOpens: 1, uniqueClicks: 1 }),
    ]);
    expect((await store.engagementOf('p-h1')).get('h1')).toMatchObject({ openedAt: expect.any(String), clickedAt: expect.any(String) });
  });

  it('moves an asynchronously bounced message out of delivered (or errors), and counts complaints apart', async () => {
    // m1..m3 handed to the MTA (delivered), m4 in doubt (an error); then the webhook: m1 hard,
    // m4 soft (supersedes the error), m2 complaint (stays delivered).
    await store.insertEvents(
      [
        ...['m1', 'm2', 'm3'].flatMap((m) => [ev(D4, 'sent', m), ev(D4, 'delivered', m)]),
        ev(D4, 'failed', 'm4', { reason: 'in doubt: timeout after DATA' }),
        ev(D4, 'opened', 'm3'),
      ],
      { dedupToken: 'd4-send' },
    );
    let c = await store.deliveryCounters(D4);
    expect([c.sent, c.delivered, c.bounces, c.errors, c.deliveredRate]).toEqual([4, 3, 0, 1, 0.75]);
    await store.insertEvents(
      [
        ev(D4, 'bounced', 'm1', { bounceType: 'hard', reason: '550 user unknown', supersedes: 'delivered' }),
        ev(D4, 'bounced', 'm4', { bounceType: 'soft', reason: '452 mailbox full', supersedes: 'failed' }),
        ev(D4, 'complained', 'm2'),
      ],
      { dedupToken: 'd4-webhook' },
    );
    c = await store.deliveryCounters(D4);
    expect(c).toMatchObject({ sent: 4, delivered: 2, bounces: 2, hardBounces: 1, softBounces: 1, errors: 0, complaints: 1 });
    expect([c.deliveredRate, c.bounceErrorRate]).toEqual([0.5, 0.5]);
    await store.refreshRates();
    // Open rate over the 2 still delivered: m3 opened → 1/2.
    expect(await store.deliveryRates(D4)).toMatchObject({ delivered: 2, uniqueOpens: 1, openRate: 0.5 });
    const [summary] = await rows<Record<string, number>>(
      `SELECT sent, delivered, bounces, errors, complaints, delivered_rate FROM herald.delivery_summary WHERE delivery_id = '${D4}'`,
    );
    expect(summary).toEqual({ sent: 4, delivered: 2, bounces: 2, errors: 0, complaints: 1, delivered_rate: 0.5 });
    const [history] = await rows<{ status: string; complained: boolean }>(
      `SELECT status, complained FROM herald.profile_history WHERE profile_id = 'p-m1' AND delivery_id = '${D4}'`,
    );
    expect(history).toEqual({ status: 'bounced', complained: false });
  });

  it('keeps hourly series per delivery, with per-hour unique opens and clicks (delivery_hourly)', async () => {
    const at = (h: number, m: number) => new Date(Date.UTC(2025, 7, 1, h, m)).toISOString();
    await store.insertEvents(
      [
        ...['a', 'b', 'c'].map((m) => ({ ...ev(D5, 'delivered', m), occurredAt: at(9, 5) })),
        { ...ev(D5, 'opened', 'a'), occurredAt: at(9, 10) },
        { ...ev(D5, 'opened', 'a'), occurredAt: at(9, 20) },
        { ...ev(D5, 'clicked', 'b'), occurredAt: at(9, 30) },
        { ...ev(D5, 'opened', 'a'), occurredAt: at(10, 1) },
        { ...ev(D5, 'clicked', 'c'), occurredAt: at(10, 2) },
        { ...ev(D5, 'clicked', 'c'), occurredAt: at(10, 3) },
      ],
      { dedupToken: 'd5' },
    );
    expect(await store.hourlySeries(D5)).toEqual([
      { hour: '2025-08-01T09:00:00Z', delivered: 3, bounces: 0, opens: 2, clicks: 1, uniqueOpens: 2, uniqueClicks: 1 },
      { hour: '2025-08-01T10:00:00Z', delivered: 0, bounces: 0, opens: 1, clicks: 2, uniqueOpens: 2, uniqueClicks: 1 },
    ]);
    const bi = await rows<Record<string, unknown>>(
      `SELECT hour, opens, unique_opens, clicks, unique_clicks FROM herald.delivery_hourly WHERE delivery_id = '${D5}' ORDER BY hour`,
    );
    expect(bi).toEqual([
      { hour: '2025-08-01 09:00:00', opens: 2, unique_opens: 2, clicks: 1, unique_clicks: 1 },
      { hour: '2025-08-01 10:00:00', opens: 1, unique_opens: 2, clicks: 2, unique_clicks: 1 },
    ]);
  });

  it("keeps each profile's events ordered by profile: first open (a click counts) and first click per message", async () => {
    const engagement = await store.engagementOf('p-m4');
    // m4 was clicked twice and never loaded the pixel: opened when first clicked.
    const firstClick = fixture.find((e) => e.messageId === 'm4' && e.type === 'clicked')!;
    expect(engagement.get('m4')).toEqual({ openedAt: firstClick.occurredAt, clickedAt: firstClick.occurredAt });
    const ddl = await rows<{ sorting_key: string }>("SELECT sorting_key FROM system.tables WHERE database = 'herald' AND name = 'profile_events'");
    expect(ddl[0]!.sorting_key).toMatch(/^profile_id/);
  });

  it('counts a recipient excluded at send time apart from sent, and leaves it out of the profile history', async () => {
    await store.insertEvents([ev(D8, 'sent', 'e1'), ev(D8, 'delivered', 'e1'), ev(D8, 'excluded', 'e2', { reason: 'unsubscribed' })], {
      dedupToken: 'excluded-at-send',
    });
    expect(await store.deliveryCounters(D8)).toMatchObject({ sent: 1, delivered: 1, excluded: 1 });
    expect(await rows(`SELECT message_id, status FROM herald.profile_history WHERE delivery_id = '${D8}'`)).toEqual([{ message_id: 'e1', status: 'delivered' }]);
    expect(await rows(`SELECT sent, excluded FROM herald.delivery_summary WHERE delivery_id = '${D8}'`)).toEqual([{ sent: 1, excluded: 1 }]);
  });

  it('backs off while the ClickHouse connection fails, then catches up with nothing lost or doubled', async () => {
    const { connection: flaky, control } = flakyConnection(connection);
    const flakyStore = openKpiStore({ connection: flaky });
    const bus = busFromEnv({}, { inProcess: { partitions: 4 } }); // the in-process bus (no KAFKA_BROKERS)
    const consumer = new KpiConsumer(bus, flakyStore, silent, { maxWaitMs: 20, retryDelayMs: 10, maxRetryDelayMs: 100, fetchSize: 500 });
    await consumer.start();
    control.failing = true;
    const events = Array.from({ length: 5_000 }, (_, i) => ev(D7, i % 2 ? 'delivered' : 'sent', `f${Math.floor(i / 2)}`));
    await bus.publish(TOPICS.messageEvents, events.map((e) => ({ key: e.deliveryId + e.messageId, value: e })));
    // On a timeout the assertion below says how many failed.
    await eventually(() => control.failedInserts >= 5, { timeoutMs: 10_000, intervalMs: 10, what: 'five failed inserts' }).catch(() => undefined);
    expect(control.failedInserts).toBeGreaterThanOrEqual(5);
    expect((await store.deliveryCounters(D7)).sentEvents).toBe(0);
    // Bounded: one bus batch per partition in hand, the rest still on the bus.
    expect(consumer.stats.buffered).toBeLessThanOrEqual(4 * 500);
    control.failing = false;
    await eventually(() => consumer.stats.inserted >= 5_000, { timeoutMs: 20_000, intervalMs: 10, what: 'the 5,000 events inserted' }).catch(() => undefined);
    await consumer.stop();
    const c = await store.deliveryCounters(D7);
    expect([c.sentEvents, c.delivered]).toEqual([2_500, 2_500]);
    const [raw] = await rows<{ n: number; distinct: number }>(
      `SELECT count() AS n, uniqExact(event_id) AS distinct FROM herald.message_events WHERE delivery_id = '${D7}'`,
    );
    expect(raw).toEqual({ n: 5_000, distinct: 5_000 });
    await flakyStore.close();
    await bus.close();
  });

  it('recovers published events the bus lost, and inserts nothing ClickHouse already has', async () => {
    const kept = [ev(D7, 'opened', 'f1'), ev(D7, 'opened', 'f2')];
    const lost = [ev(D7, 'clicked', 'f1', { url: 'https://example.com/x' }), ev(D7, 'opened', 'f3')];
    await store.insertEvents(kept, { dedupToken: 'kept' });
    // Two outbox rows of two events each; pages of 3 end inside the second row.
    const outbox = [...kept, ...lost].map((payload, i) => ({ id: 1 + Math.floor(i / 2), idx: 1 + (i % 2), payload }));
    const source = {
      publishedSince: async (_since: Date, after: { id: number; idx: number } | null, limit: number) =>
        outbox.filter((r) => !after || r.id > after.id || (r.id === after.id && r.idx > after.idx)).slice(0, limit),
    };
    expect(await recoverPublishedEvents(store, source, silent, { pageSize: 3 })).toMatchObject({ checked: 4, recovered: 2 });
    expect(await recoverPublishedEvents(store, source, silent)).toMatchObject({ checked: 4, recovered: 0 });
    const c = await store.deliveryCounters(D7);
    expect([c.opens, c.clicks]).toEqual([3, 1]);
    expect(await store.missingEventIds([...kept, ...lost].map((e) => e.eventId), new Date(0))).toEqual(new Set());
    expect((await store.lastIngestedAt())?.getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  /**
   * A crash between the commit of message_events' part and its views' parts (chDB killed in
   * between): the events are in the raw table, the views never saw them.
   */
  async function insertWithoutViews(events: MessageEvent[], token: string) {
    const views = ['delivery_counters_mv', 'delivery_hourly_series_mv', 'profile_events_mv'];
    for (const view of views) await store.client.command({ query: `DETACH TABLE herald.${view}` });
    try {
      await store.insertEvents(events, { dedupToken: token });
    } finally {
      for (const view of views) await store.client.command({ query: `ATTACH TABLE herald.${view}` });
    }
  }

  /** The hourly series as the raw events say it and as the live table holds it. */
  async function hourly(deliveryId: string) {
    const raw = await rows<Record<string, number | string>>(
      `SELECT toStartOfHour(occurred_at) AS hour, countIf(type = 'delivered') AS delivered, countIf(type = 'bounced') AS bounces,
              countIf(type = 'opened') AS opens, countIf(type = 'clicked') AS clicks,
              uniqExactIf(message_id, type IN ('opened', 'clicked')) AS uniqueOpens, uniqExactIf(message_id, type = 'clicked') AS uniqueClicks
         FROM (SELECT * FROM herald.message_events WHERE delivery_id = '${deliveryId}' AND type IN ('delivered', 'bounced', 'opened', 'clicked'))
        GROUP BY hour ORDER BY hour`,
    );
    const live = await store.hourlySeries(deliveryId);
    return { raw: raw.map((r) => ({ ...r, hour: `${String(r.hour).replace(' ', 'T')}Z` })), live };
  }

  it('Compute stats repairs the counters a crash left short, and a block counted twice, from the raw events', async () => {
    const h = await startHarness('pglite', {}, { kpi: store });
    try {
      const audienceId = await seedAudience(h, 1, 'cs');
      const id = (await h.api('POST', '/v1/deliveries', { body: deliveryBody(audienceId) })).body.id as string;
      const messages = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `c${from + i}`);
      // Counted as they should be: 200 delivered, 10 hard bounces.
      await store.insertEvents(
        [
          ...messages(0, 200).flatMap((m) => [ev(id, 'sent', m), ev(id, 'delivered', m)]),
          ...messages(200, 210).map((m) => ev(id, 'bounced', m, { bounceType: 'hard' })),
        ],
        { dedupToken: 'cs-counted' },
      );
      // Lost by the views in a crash: 290 delivered, 10 soft bounces, opens and clicks.
      await insertWithoutViews(
        [
          ...messages(210, 500).flatMap((m) => [ev(id, 'sent', m), ev(id, 'delivered', m)]),
          ...messages(500, 510).map((m) => ev(id, 'bounced', m, { bounceType: 'soft' })),
          ...messages(0, 5).map((m) => ev(id, 'opened', m)),
          ...messages(3, 6).map((m) => ev(id, 'clicked', m, { url: 'https://example.com/a' })),
        ],
        'cs-lost',
      );
      // And a block counted twice (the views written, the raw part not, then inserted again).
      await store.client.insert({
        table: 'herald.delivery_counters',
        values: [{ delivery_id: id, occurrence: 0, sent_events: 50, delivered: 50 }],
        format: 'JSONEachRow',
        clickhouse_settings: { insert_deduplication_token: 'cs-twice' },
      });
      const broken = (await h.api('GET', `/v1/deliveries/${id}/deployment`)).body.kpis;
      expect(broken).toMatchObject({ sent: 260, delivered: 250, bouncesAndErrors: 10 });

      const repaired = await h.api('POST', `/v1/deliveries/${id}/compute-stats`);
      expect(repaired.status).toBe(200);
      const expected = { sent: 510, delivered: 490, bouncesAndErrors: 20, opens: 6, clicks: 3 };
      expect(repaired.body.kpis).toMatchObject(expected);
      expect(await store.deliveryCounters(id)).toMatchObject({ sentEvents: 490, hardBounces: 10, softBounces: 10, opens: 5, clicks: 3 });
      // The hourly series (BI) is repaired too, unique opens and clicks included.
      const series = await hourly(id);
      expect(series.live).toEqual(series.raw);
      // Nothing left to repair: a second Compute stats changes nothing.
      expect((await h.api('POST', `/v1/deliveries/${id}/compute-stats`)).body.kpis).toMatchObject(expected);
      expect(await store.reconcile([id])).toEqual({ counters: [], hours: 0 });
    } finally {
      await h.close();
    }
  });

  it('repairs at start what a crash left the views without: counters, hourly series and profile events', async () => {
    const since = new Date(Date.now() - 1000);
    await insertWithoutViews([ev(D9, 'sent', 'r1'), ev(D9, 'delivered', 'r1'), ev(D9, 'opened', 'r1'), ev(D9, 'clicked', 'r1', { url: 'https://example.com/r' })], 'r-lost');
    expect((await store.deliveryCounters(D9)).sent).toBe(0);
    expect((await store.engagementOf('p-r1')).size).toBe(0);

    const repair = await repairAfterRestart(store, since, silent);
    expect(repair.deliveries).toBeGreaterThanOrEqual(1);
    expect(repair.counters).toEqual(
      expect.arrayContaining([{ deliveryId: D9, occurrence: 0, corrections: { sent_events: 1, delivered: 1, opens: 1, clicks: 1 } }]),
    );
    // D9's four events, and any other event of the window its view lost (an earlier case's).
    expect(repair.profileEvents).toBeGreaterThanOrEqual(4);
    expect(await rows(`SELECT count() AS n FROM herald.profile_events WHERE delivery_id = '${D9}'`)).toEqual([{ n: 4 }]);
    expect(await store.deliveryCounters(D9)).toMatchObject({ sent: 1, delivered: 1, opens: 1, clicks: 1 });
    expect((await store.engagementOf('p-r1')).get('r1')?.clickedAt).not.toBeNull();
    const series = await hourly(D9);
    expect(series.live).toEqual(series.raw);
    // Idempotent: nothing more to repair.
    expect(await repairAfterRestart(store, since, silent)).toMatchObject({ counters: [], hours: 0, profileEvents: 0 });
  });

  it('refreshes only the runs with rate events since their last computation, each exactly', async () => {
    const [inactive, active, crashed] = [randomUUID(), randomUUID(), randomUUID()];
    const rateRow = async (id: string) => (await rows<Record<string, unknown>>(`SELECT * FROM herald.delivery_rates WHERE delivery_id = '${id}' ORDER BY occurrence`))[0];
    // History: a run whose events all arrived before the last refresh (4 delivered, 2 opened, 1 clicked).
    await store.insertEvents(
      [
        ...['a1', 'a2', 'a3', 'a4'].map((m) => ev(inactive, 'delivered', m)),
        ev(inactive, 'opened', 'a1'),
        ev(inactive, 'opened', 'a1'),
        ev(inactive, 'clicked', 'a2', { url: 'https://example.com/a' }),
      ],
      { dedupToken: 'inactive-history' },
    );
    await store.insertEvents([ev(crashed, 'delivered', 'c1'), ev(crashed, 'delivered', 'c2')], { dedupToken: 'crashed-sent' });
    await store.refreshRates();
    const settled = await rateRow(inactive);
    expect(settled).toMatchObject({ delivered_messages: 4, unique_opens: 2, unique_clicks: 1, rated_events: 7 });

    // New events for another run only: the refresh recomputes it, and leaves the inactive row as it was.
    await store.insertEvents(
      [
        ...['b1', 'b2', 'b3'].map((m) => ev(active, 'delivered', m)),
        ev(active, 'opened', 'b1'),
        ev(active, 'clicked', 'b2', { url: 'https://example.com/b' }),
        ev(active, 'bounced', 'b3', { bounceType: 'hard', supersedes: 'delivered' }),
      ],
      { dedupToken: 'active-run' },
    );
    await store.refreshRates();
    expect(await rateRow(inactive)).toEqual(settled);
    expect(await store.deliveryRates(active)).toMatchObject({ delivered: 2, uniqueOpens: 2, uniqueClicks: 1, openRate: 1, clickRate: 0.5 });

    // A late open makes the old run active again: recomputed exactly, at a later time.
    await store.insertEvents([ev(inactive, 'opened', 'a3')], { dedupToken: 'inactive-late-open' });
    await store.refreshRates();
    const reopened = await store.deliveryRates(inactive);
    expect(reopened).toMatchObject({ delivered: 4, uniqueOpens: 3, uniqueClicks: 1, openRate: 0.75 });
    expect(reopened!.computedAt > isoOf(settled!.computed_at)).toBe(true);

    // An open the views lost in a crash: the counters do not show it, so the hourly refresh does not
    // see the run; Compute stats (reconcile, then refresh) counts it exactly.
    await insertWithoutViews([ev(crashed, 'opened', 'c1')], 'crashed-open');
    await store.refreshRates();
    expect(await store.deliveryRates(crashed)).toMatchObject({ delivered: 2, uniqueOpens: 0 });
    await store.reconcile([crashed]);
    await store.refreshRates();
    expect(await store.deliveryRates(crashed)).toMatchObject({ delivered: 2, uniqueOpens: 1, openRate: 0.5 });
  });

  it("runs the BI guide's queries as written (docs/bi.md)", async () => {
    const guide = readFileSync(fileURLToPath(new URL('../../../docs/bi.md', import.meta.url)), 'utf8');
    const section = guide.slice(guide.indexOf('## Queries'));
    const sql = /```sql\n([\s\S]*?)```/.exec(section)![1]!;
    const queries = splitSql(sql).map((q) => q.replaceAll("'…'", `'${D1}'`).replaceAll("'ada'", "'p-m4'"));
    expect(queries).toHaveLength(4);
    const answers = [];
    for (const query of queries) answers.push(await rows<Record<string, unknown>>(query));
    expect(answers.map((a) => a.length > 0)).toEqual([true, true, true, true]);
    expect(answers[2]).toEqual(expect.arrayContaining([expect.objectContaining({ message_id: 'm4', status: 'bounced' })]));
  });
});
