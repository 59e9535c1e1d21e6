// The KPI store: message events into ClickHouse, KPIs out of its materialized views.
// One @clickhouse/client client, whether the engine is chDB in-process (chdb/connection) or a server.
//
// An insert into message_events and the parts its materialized views write are not atomic: a
// process killed in between leaves events the live counters never saw (or, inserted again, saw
// twice). The raw events are the truth: reconcile() adds correction rows (raw − live) to the
// additive views, so the counters equal what the raw events say again.
import { randomUUID } from 'node:crypto';
import { type ClickHouseClient, createClient } from '@clickhouse/client';
import type { MessageEvent } from '@herald/contracts';
import { runMigrations } from '@herald/migrations';
import { createRequire } from 'node:module';
import type { createChdbConnection } from 'chdb/connection';
import { MESSAGE_EVENT_COLUMNS, splitSql, toCompactRow } from './sql.js';

export const KPI_DATABASE = 'herald';

export interface KpiStoreOptions {
  /** A ClickHouse server (e.g. CLICKHOUSE_URL). Without it the store runs chDB in this process. */
  url?: string;
  /**
   * chDB's data directory (absolute path), used only without `url`. Defaults to ':memory:' (a temp dir
   * removed on close). chDB binds ONE data directory per process: a second store on another directory
   * in the same process is rejected.
   */
  dataDir?: string;
  /** Folder of numbered `NNN_name.sql` files; defaults to this package's `migrations/`. */
  migrationsDir?: string | URL;
  /**
   * The @clickhouse/client connection to use instead of the default one (e.g. a proxy or an
   * instrumented connection around {@link chdbConnection}); `url` and `dataDir` are then ignored.
   */
  connection?: ClientConnection;
}

export interface InsertOptions {
  /**
   * Idempotency key of this batch (e.g. the bus offset range). The same batch inserted again with
   * the same token is dropped by ClickHouse (within the table's deduplication window).
   */
  dedupToken?: string;
}

/** Live counters of a delivery (all occurrences, or one). Rates are fractions in [0, 1]. */
export interface DeliveryCounters {
  deliveryId: string;
  /** Processed: delivered + bounces + errors. */
  sent: number;
  delivered: number;
  hardBounces: number;
  softBounces: number;
  ignoredBounces: number;
  /** Every bounce, typed or not (hard + soft + ignored when all carry a bounceType). */
  bounces: number;
  errors: number;
  /** Raw event counts (duplicates included); unique counts are in {@link DeliveryRates}. */
  opens: number;
  clicks: number;
  unsubscribed: number;
  /** Spam complaints (the profile is denylisted). */
  complaints: number;
  excluded: number;
  /** 'sent' events (handed to the provider), for reference; not the KPI "sent". */
  sentEvents: number;
  /** delivered / sent; null when nothing was sent. */
  deliveredRate: number | null;
  /** (bounces + errors) / sent; null when nothing was sent. */
  bounceErrorRate: number | null;
}

/** Open and click-through rates as of the last refresh of `delivery_rates`. */
export interface DeliveryRates {
  deliveryId: string;
  delivered: number;
  /** Messages opened or clicked (a click without a pixel hit counts as an open). */
  uniqueOpens: number;
  uniqueClicks: number;
  /** uniqueOpens / delivered; null when nothing was delivered. */
  openRate: number | null;
  /** uniqueClicks / delivered; null when nothing was delivered. */
  clickRate: number | null;
  /** Messages opened (clicked) by a known scanner, gateway or script, counted in the rates above. */
  machineOpens: number;
  machineClicks: number;
  /**
   * When the rates were computed (ISO, UTC); the oldest one when several occurrences are summed.
   * A refresh leaves a run with no rate event since its last computation as it was (its rates are
   * still exact), so this can be older than the last refresh.
   */
  computedAt: string;
}

/** One hour of a delivery's series (live). Unique counts are per hour. */
export interface HourlyPoint {
  hour: string;
  delivered: number;
  bounces: number;
  opens: number;
  clicks: number;
  uniqueOpens: number;
  uniqueClicks: number;
}

/** When a message was first opened (a click counts as an open) and first clicked. */
export interface Engagement {
  openedAt: string;
  clickedAt: string | null;
}

/** A correction added to `delivery_counters` for one run: per counter, raw − live (non-zero ones only). */
export interface CounterRepair {
  deliveryId: string;
  occurrence: number;
  corrections: Record<string, number>;
}

/** What reconcile() corrected. */
export interface Reconciliation {
  counters: CounterRepair[];
  /** Hours of `delivery_hourly_series` corrected. */
  hours: number;
}

export interface KpiStore {
  readonly backend: 'chdb' | 'server';
  /** The one client every query goes through (for BI-style reads and diagnostics). */
  readonly client: ClickHouseClient;
  /** Creates the `herald` database (ENGINE = Atomic) and applies pending migrations, in order. */
  migrate(): Promise<{ applied: string[] }>;
  /** One INSERT … FORMAT JSONCompactEachRowWithNames for the whole batch. */
  insertEvents(events: readonly MessageEvent[], options?: InsertOptions): Promise<void>;
  deliveryCounters(deliveryId: string, options?: { occurrence?: number }): Promise<DeliveryCounters>;
  /** Undefined until a refresh has seen the delivery. */
  deliveryRates(deliveryId: string, options?: { occurrence?: number }): Promise<DeliveryRates | undefined>;
  /** Hourly series of a delivery (`delivery_hourly`), oldest hour first. */
  hourlySeries(deliveryId: string, options?: { occurrence?: number }): Promise<HourlyPoint[]>;
  /** First open and click of each message a profile engaged with, by message id (live). */
  engagementOf(profileId: string): Promise<Map<string, Engagement>>;
  /** Which of these events are not in the raw log (looking at events ingested since `since`). */
  missingEventIds(eventIds: readonly string[], since: Date): Promise<Set<string>>;
  /** When the newest event was ingested; undefined while the log is empty. */
  lastIngestedAt(): Promise<Date | undefined>;
  /**
   * Makes the live counters (`delivery_counters`) and the hourly series of these deliveries equal
   * what their raw events say (their rows in message_events), by inserting correction rows. Run it while no
   * insert into message_events is in progress, or a half-done one may be counted twice until the
   * next run (see KpiConsumer.betweenFlushes).
   */
  reconcile(deliveryIds: readonly string[]): Promise<Reconciliation>;
  /** Deliveries with events ingested since `since`. */
  deliveriesIngestedSince(since: Date): Promise<string[]>;
  /** Copies into `profile_events` the events ingested since `since` it lacks; returns how many. */
  repairProfileEvents(since: Date): Promise<number>;
  /**
   * Refreshes `delivery_rates` now (SYSTEM REFRESH VIEW) and waits until the refresh is done: the
   * runs whose live count of rate events differs from the one their rates were computed from are
   * recomputed exactly from their raw events, the others are kept (migration 004). After
   * reconcile() of a delivery, its counters equal its raw events, so its rates come out exact.
   */
  refreshRates(options?: { timeoutMs?: number }): Promise<void>;
  close(): Promise<void>;
}

const defaultMigrationsDir = new URL('../migrations/', import.meta.url);

export type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

/**
 * chDB's native library adds ~150 MiB of RSS to a process once loaded: it is loaded when a
 * process first opens an embedded store, not by importing this package (engine processes,
 * the CLI's other commands and a ClickHouse-server setup never load it).
 */
function loadChdb(): { createChdbConnection: typeof createChdbConnection } {
  return createRequire(import.meta.url)('chdb/connection');
}

/** chDB in this process as a @clickhouse/client connection (one data directory per process). */
export function chdbConnection(dataDir = ':memory:'): ClientConnection {
  // chdb types the connection against the deprecated @clickhouse/client-common 1.23.0, whose settings
  // type drifted from the copy bundled in @clickhouse/client 1.23.1; the runtime contract is the same.
  return loadChdb().createChdbConnection({ path: dataDir }) as unknown as ClientConnection;
}

export function openKpiStore(options: KpiStoreOptions = {}): KpiStore {
  if (options.connection) {
    return new ClickHouseKpiStore(createClient({ connection: options.connection }), options.url ? 'server' : 'chdb', options.migrationsDir);
  }
  if (options.url) {
    return new ClickHouseKpiStore(createClient({ url: options.url }), 'server', options.migrationsDir);
  }
  return new ClickHouseKpiStore(createClient({ connection: chdbConnection(options.dataDir) }), 'chdb', options.migrationsDir);
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
/** A rate, or null when its denominator is 0 (nothing sent or delivered yet: no rate, not 0%). */
const ratio = (a: number, b: number): number | null => (b === 0 ? null : a / b);

class ClickHouseKpiStore implements KpiStore {
  readonly #migrationsDir: string | URL;

  constructor(
    readonly client: ClickHouseClient,
    readonly backend: 'chdb' | 'server',
    migrationsDir: string | URL = defaultMigrationsDir,
  ) {
    this.#migrationsDir = migrationsDir;
  }

  async migrate(): Promise<{ applied: string[] }> {
    await this.client.command({ query: `CREATE DATABASE IF NOT EXISTS ${KPI_DATABASE} ENGINE = Atomic` });
    await this.client.command({
      query: `CREATE TABLE IF NOT EXISTS ${KPI_DATABASE}.schema_migrations
        (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = MergeTree ORDER BY version`,
    });
    const applied = await runMigrations(this.#migrationsDir, {
      appliedVersions: async () => (await this.#rows<{ version: number }>(`SELECT version FROM ${KPI_DATABASE}.schema_migrations`)).map((r) => Number(r.version)),
      apply: async ({ version, name, sql }) => {
        // ClickHouse takes one statement per request (over HTTP as through chDB): the file is split.
        for (const statement of splitSql(sql)) {
          // An empty token: a backfill INSERT … SELECT must not inherit a batch's token (chDB session).
          await this.client.command({ query: statement, clickhouse_settings: { insert_deduplication_token: '' } });
        }
        await this.client.insert({
          table: `${KPI_DATABASE}.schema_migrations`,
          values: [{ version, name }],
          format: 'JSONEachRow',
          // A fresh token: on chDB settings stick to the session, so never let an older token apply here.
          clickhouse_settings: { insert_deduplication_token: `migration-${version}-${Date.now()}` },
        });
      },
    });
    return { applied: applied.map((migration) => migration.name) };
  }

  async insertEvents(events: readonly MessageEvent[], options: InsertOptions = {}): Promise<void> {
    if (events.length === 0) return;
    await this.client.insert({
      table: `${KPI_DATABASE}.message_events`,
      // The column names once, in the first row, then each event as an array of values: a store
      // migrated by an older release (without the newer columns) still takes the events, as the
      // names let it skip what it does not know.
      values: [MESSAGE_EVENT_COLUMNS, ...events.map(toCompactRow)],
      format: 'JSONCompactEachRowWithNames',
      clickhouse_settings: {
        // Always sent, '' when there is none (then the block's hash is the key): chDB's connection
        // applies settings with SET on its one session, so a token would otherwise stick to later
        // inserts and silently drop them.
        insert_deduplication_token: options.dedupToken ?? '',
        // A duplicate block dropped by message_events still reaches its materialized views unless
        // they deduplicate too (delivery_counters has its own window for that).
        deduplicate_blocks_in_dependent_materialized_views: 1,
        input_format_skip_unknown_fields: 1,
      },
    });
  }

  async deliveryCounters(deliveryId: string, options: { occurrence?: number } = {}): Promise<DeliveryCounters> {
    const [row] = await this.#rows<Record<string, unknown>>(
      `SELECT sum(sent_events) AS sent_events, sum(delivered) - sum(delivered_superseded) AS delivered,
              sum(bounces) AS bounces, sum(hard) AS hard, sum(soft) AS soft, sum(ignored) AS ignored,
              sum(errors) - sum(errors_superseded) AS errors, sum(opens) AS opens, sum(clicks) AS clicks,
              sum(unsubscribed) AS unsubscribed, sum(complaints) AS complaints, sum(excluded) AS excluded
       FROM ${KPI_DATABASE}.delivery_counters
       WHERE delivery_id = {deliveryId:UUID} ${occurrenceFilter(options.occurrence)}`,
      queryParams(deliveryId, options.occurrence),
    );
    const delivered = num(row?.delivered);
    const bounces = num(row?.bounces);
    const errors = num(row?.errors);
    const sent = delivered + bounces + errors;
    return {
      deliveryId,
      sent,
      delivered,
      hardBounces: num(row?.hard),
      softBounces: num(row?.soft),
      ignoredBounces: num(row?.ignored),
      bounces,
      errors,
      opens: num(row?.opens),
      clicks: num(row?.clicks),
      unsubscribed: num(row?.unsubscribed),
      complaints: num(row?.complaints),
      excluded: num(row?.excluded),
      sentEvents: num(row?.sent_events),
      deliveredRate: ratio(delivered, sent),
      bounceErrorRate: ratio(bounces + errors, sent),
    };
  }

  async deliveryRates(deliveryId: string, options: { occurrence?: number } = {}): Promise<DeliveryRates | undefined> {
    const [row] = await this.#rows<Record<string, unknown>>(
      `SELECT count() AS n, sum(delivered_messages) AS delivered, sum(unique_opens) AS unique_opens,
              sum(unique_clicks) AS unique_clicks, sum(machine_opens) AS machine_opens,
              sum(machine_clicks) AS machine_clicks, min(computed_at) AS computed_at
       FROM ${KPI_DATABASE}.delivery_rates
       WHERE delivery_id = {deliveryId:UUID} ${occurrenceFilter(options.occurrence)}`,
      queryParams(deliveryId, options.occurrence),
    );
    if (!row || num(row.n) === 0) return undefined;
    const delivered = Math.max(0, num(row.delivered));
    const uniqueOpens = num(row.unique_opens);
    const uniqueClicks = num(row.unique_clicks);
    return {
      deliveryId,
      delivered,
      uniqueOpens,
      uniqueClicks,
      openRate: ratio(uniqueOpens, delivered),
      clickRate: ratio(uniqueClicks, delivered),
      machineOpens: num(row.machine_opens),
      machineClicks: num(row.machine_clicks),
      computedAt: isoUtc(row.computed_at),
    };
  }

  async hourlySeries(deliveryId: string, options: { occurrence?: number } = {}): Promise<HourlyPoint[]> {
    const rows = await this.#rows<Record<string, unknown>>(
      `SELECT hour, sum(delivered) AS delivered, sum(bounces) AS bounces, sum(opens) AS opens,
              sum(clicks) AS clicks, uniqExactMerge(unique_opens) AS unique_opens,
              uniqExactMerge(unique_clicks) AS unique_clicks
       FROM ${KPI_DATABASE}.delivery_hourly_series
       WHERE delivery_id = {deliveryId:UUID} ${occurrenceFilter(options.occurrence)}
       GROUP BY hour ORDER BY hour`,
      queryParams(deliveryId, options.occurrence),
    );
    return rows.map((r) => ({
      hour: isoUtc(r.hour),
      delivered: num(r.delivered),
      bounces: num(r.bounces),
      opens: num(r.opens),
      clicks: num(r.clicks),
      uniqueOpens: num(r.unique_opens),
      uniqueClicks: num(r.unique_clicks),
    }));
  }

  async engagementOf(profileId: string): Promise<Map<string, Engagement>> {
    const rows = await this.#rows<Record<string, unknown>>(
      `SELECT message_id, min(occurred_at) AS opened_at, minIf(occurred_at, type = 'clicked') AS clicked_at,
              countIf(type = 'clicked') AS clicks
       FROM ${KPI_DATABASE}.profile_events
       WHERE profile_id = {profileId:String} AND type IN ('opened', 'clicked')
       GROUP BY message_id`,
      { profileId },
    );
    return new Map(
      rows.map((r) => [String(r.message_id), { openedAt: isoUtc(r.opened_at), clickedAt: num(r.clicks) > 0 ? isoUtc(r.clicked_at) : null }]),
    );
  }

  async missingEventIds(eventIds: readonly string[], since: Date): Promise<Set<string>> {
    const missing = new Set(eventIds);
    for (let i = 0; i < eventIds.length && missing.size > 0; i += 10_000) {
      const chunk = eventIds.slice(i, i + 10_000);
      const present = await this.#rows<{ event_id: string }>(
        `SELECT event_id FROM ${KPI_DATABASE}.message_events
         WHERE ingested_at >= {since:DateTime64(3, 'UTC')} AND event_id IN {ids:Array(UUID)}`,
        { since: chDateTime(since), ids: chunk },
      );
      for (const row of present) missing.delete(row.event_id);
    }
    return missing;
  }

  async lastIngestedAt(): Promise<Date | undefined> {
    const [row] = await this.#rows<{ n: string; at: string }>(
      `SELECT count() AS n, max(ingested_at) AS at FROM ${KPI_DATABASE}.message_events`,
    );
    return row && num(row.n) > 0 ? new Date(isoUtc(row.at)) : undefined;
  }

  async reconcile(deliveryIds: readonly string[]): Promise<Reconciliation> {
    if (deliveryIds.length === 0) return { counters: [], hours: 0 };
    const params = { ids: [...deliveryIds] };
    // Each diff is read first (nothing to write in the usual case, and what is written is logged),
    // then written by one INSERT … SELECT of the same diff.
    const counterDiff = counterDiffQuery();
    const counters = (await this.#rows<Record<string, unknown>>(counterDiff, params)).map((row) => ({
      deliveryId: String(row.delivery_id),
      occurrence: num(row.occurrence),
      corrections: Object.fromEntries(
        COUNTER_COLUMNS.filter((c) => num(row[c]) !== 0).map((c) => [c, num(row[c])]),
      ),
    }));
    if (counters.length > 0) {
      await this.#insertSelect(`${KPI_DATABASE}.delivery_counters (delivery_id, occurrence, ${COUNTER_COLUMNS.join(', ')})`, counterDiff, params);
    }
    const hourlyDiff = hourlyDiffQuery();
    const [{ n: hours } = { n: 0 }] = await this.#rows<{ n: number }>(`SELECT count() AS n FROM (${hourlyDiff})`, params);
    if (num(hours) > 0) {
      await this.#insertSelect(
        `${KPI_DATABASE}.delivery_hourly_series (delivery_id, occurrence, hour, ${HOURLY_SUMS.join(', ')}, unique_opens, unique_clicks)`,
        hourlyDiff,
        params,
      );
    }
    return { counters, hours: num(hours) };
  }

  async deliveriesIngestedSince(since: Date): Promise<string[]> {
    const rows = await this.#rows<{ id: string }>(
      `SELECT DISTINCT toString(delivery_id) AS id FROM ${KPI_DATABASE}.message_events WHERE ingested_at >= {since:DateTime64(3, 'UTC')}`,
      { since: chDateTime(since) },
    );
    return rows.map((r) => r.id);
  }

  async repairProfileEvents(since: Date): Promise<number> {
    // profile_events is ordered by profile: its rows are looked up through the profiles of the window.
    const missing = `SELECT ${PROFILE_EVENT_COLUMNS} FROM ${KPI_DATABASE}.message_events
      WHERE ingested_at >= {since:DateTime64(3, 'UTC')}
        AND event_id NOT IN (
          SELECT event_id FROM ${KPI_DATABASE}.profile_events
           WHERE profile_id IN (SELECT profile_id FROM ${KPI_DATABASE}.message_events WHERE ingested_at >= {since:DateTime64(3, 'UTC')}))
      LIMIT 1 BY event_id`;
    const params = { since: chDateTime(since) };
    const [{ n } = { n: 0 }] = await this.#rows<{ n: number }>(`SELECT count() AS n FROM (${missing})`, params);
    if (num(n) > 0) await this.#insertSelect(`${KPI_DATABASE}.profile_events (${PROFILE_EVENT_COLUMNS})`, missing, params);
    return num(n);
  }

  /** INSERT INTO `target` SELECT …, with a token of its own (an empty one would deduplicate equal corrections by their hash). */
  async #insertSelect(target: string, select: string, query_params: Record<string, unknown>): Promise<void> {
    await this.client.command({
      query: `INSERT INTO ${target} ${select}`,
      query_params,
      clickhouse_settings: { insert_deduplication_token: `repair-${randomUUID()}` },
    });
  }

  async refreshRates(options: { timeoutMs?: number } = {}): Promise<void> {
    const view = `${KPI_DATABASE}.delivery_rates`;
    await this.client.command({ query: `SYSTEM REFRESH VIEW ${view}` });
    // SYSTEM WAIT VIEW returns once the requested refresh is done, and throws if it failed.
    await this.client.command({ query: `SYSTEM WAIT VIEW ${view}` });
    // Belt and braces: poll system.view_refreshes until the view is idle again.
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    for (;;) {
      const [state] = await this.#rows<{ status: string; exception: string }>(
        `SELECT status, exception FROM system.view_refreshes
         WHERE database = '${KPI_DATABASE}' AND view = 'delivery_rates'`,
      );
      if (!state) throw new Error(`refreshRates: ${view} is not a refreshable view (run migrate() first)`);
      if (state.exception) throw new Error(`refreshRates: ${view} refresh failed: ${state.exception}`);
      if (state.status !== 'Running' && state.status !== 'Scheduling' && state.status !== 'WaitingForDependencies') {
        return;
      }
      if (Date.now() > deadline) throw new Error(`refreshRates: ${view} still ${state.status} after the timeout`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  async #rows<T>(query: string, query_params?: Record<string, unknown>): Promise<T[]> {
    const rs = await this.client.query({ query, query_params, format: 'JSONEachRow' });
    return rs.json<T>();
  }
}

/**
 * The counters of `delivery_counters`, as its materialized view computes them from events
 * (delivery_counters_mv, migration 002): the raw side of a reconciliation.
 */
const COUNTERS: Record<string, string> = {
  sent_events: "countIf(type = 'sent')",
  delivered: "countIf(type = 'delivered')",
  bounces: "countIf(type = 'bounced')",
  hard: "countIf(type = 'bounced' AND bounce_type = 'hard')",
  soft: "countIf(type = 'bounced' AND bounce_type = 'soft')",
  ignored: "countIf(type = 'bounced' AND bounce_type = 'ignored')",
  errors: "countIf(type = 'failed')",
  opens: "countIf(type = 'opened')",
  clicks: "countIf(type = 'clicked')",
  unsubscribed: "countIf(type = 'unsubscribed')",
  excluded: "countIf(type = 'excluded')",
  delivered_superseded: "countIf(type = 'bounced' AND supersedes = 'delivered')",
  errors_superseded: "countIf(type = 'bounced' AND supersedes = 'failed')",
  complaints: "countIf(type = 'complained')",
};
const COUNTER_COLUMNS = Object.keys(COUNTERS);

/** The sums of `delivery_hourly_series`, as delivery_hourly_series_mv (migration 002) computes them. */
const HOURLY: Record<string, string> = {
  delivered: "countIf(type = 'delivered')",
  bounces: "countIf(type = 'bounced')",
  opens: "countIf(type = 'opened')",
  clicks: "countIf(type = 'clicked')",
};
const HOURLY_SUMS = Object.keys(HOURLY);

const PROFILE_EVENT_COLUMNS = 'profile_id, occurred_at, delivery_id, occurrence, message_id, type, channel, bounce_type, reason, url, machine, event_id';

/**
 * Events of the deliveries `{ids}`, row by row as the views count them. NOTE: not deduplicated by
 * event id: message_events is kept free of duplicates at insert (tokens, and the event-id checks
 * of redelivery and recovery), and a dedup here would hold every event id of a delivery in memory
 * (hundreds of MiB at 10M events, in the gateway's process with chDB).
 */
function rawEvents(columns: string, where = ''): string {
  return `SELECT ${columns} FROM ${KPI_DATABASE}.message_events WHERE delivery_id IN {ids:Array(UUID)} ${where}`;
}

/** Per run whose counters differ from the raw events: raw − live for every counter. */
function counterDiffQuery(): string {
  return `SELECT delivery_id, occurrence, ${COUNTER_COLUMNS.map((c) => `toInt64(raw_${c}) - toInt64(live_${c}) AS ${c}`).join(', ')}
    FROM (SELECT delivery_id, occurrence, ${COUNTER_COLUMNS.map((c) => `${COUNTERS[c]} AS raw_${c}`).join(', ')}
            FROM (${rawEvents('delivery_id, occurrence, type, bounce_type, supersedes')})
           GROUP BY delivery_id, occurrence) AS raw
    FULL OUTER JOIN
         (SELECT delivery_id, occurrence, ${COUNTER_COLUMNS.map((c) => `sum(${c}) AS live_${c}`).join(', ')}
            FROM ${KPI_DATABASE}.delivery_counters WHERE delivery_id IN {ids:Array(UUID)}
           GROUP BY delivery_id, occurrence) AS live
    USING (delivery_id, occurrence)
    WHERE ${COUNTER_COLUMNS.map((c) => `raw_${c} != live_${c}`).join(' OR ')}`;
}

/**
 * Per hour whose sums or unique counts differ from the raw events: raw − live for the sums, and
 * the raw uniqExact states (adding a state again is idempotent, so the union becomes the raw set).
 */
function hourlyDiffQuery(): string {
  return `SELECT delivery_id, occurrence, hour, ${HOURLY_SUMS.map((c) => `toInt64(raw_${c}) - toInt64(live_${c}) AS ${c}`).join(', ')},
                 raw_unique_opens AS unique_opens, raw_unique_clicks AS unique_clicks
    FROM (SELECT delivery_id, occurrence, toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour,
                 ${HOURLY_SUMS.map((c) => `${HOURLY[c]} AS raw_${c}`).join(', ')},
                 uniqExactStateIf(message_id, type IN ('opened', 'clicked')) AS raw_unique_opens,
                 uniqExactStateIf(message_id, type = 'clicked') AS raw_unique_clicks,
                 uniqExactIf(message_id, type IN ('opened', 'clicked')) AS raw_opened,
                 uniqExactIf(message_id, type = 'clicked') AS raw_clicked
            FROM (${rawEvents('delivery_id, occurrence, occurred_at, type, message_id', "AND type IN ('delivered', 'bounced', 'opened', 'clicked')")})
           GROUP BY delivery_id, occurrence, hour) AS raw
    FULL OUTER JOIN
         (SELECT delivery_id, occurrence, hour, ${HOURLY_SUMS.map((c) => `sum(${c}) AS live_${c}`).join(', ')},
                 uniqExactMerge(unique_opens) AS live_opened, uniqExactMerge(unique_clicks) AS live_clicked
            FROM ${KPI_DATABASE}.delivery_hourly_series WHERE delivery_id IN {ids:Array(UUID)}
           GROUP BY delivery_id, occurrence, hour) AS live
    USING (delivery_id, occurrence, hour)
    WHERE ${[...HOURLY_SUMS, 'opened', 'clicked'].map((c) => `raw_${c} != live_${c}`).join(' OR ')}`;
}

/** A Date as a ClickHouse DateTime64(3, 'UTC') parameter. */
function chDateTime(date: Date): string {
  return date.toISOString().replace('T', ' ').replace('Z', '');
}

/** '2025-06-01 10:01:00.000' (ClickHouse, UTC) → '2025-06-01T10:01:00.000Z'. */
function isoUtc(value: unknown): string {
  return `${String(value).replace(' ', 'T')}Z`;
}

function occurrenceFilter(occurrence: number | undefined): string {
  return occurrence === undefined ? '' : 'AND occurrence = {occurrence:UInt32}';
}

function queryParams(deliveryId: string, occurrence: number | undefined): Record<string, unknown> {
  return occurrence === undefined ? { deliveryId } : { deliveryId, occurrence };
}
