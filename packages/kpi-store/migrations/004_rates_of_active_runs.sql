-- 004: the rates refresh recomputes only the runs with events since their last computation, and
-- the event table's codecs.
--
-- Until 003, every refresh of delivery_rates recomputed the exact unique counts of every run from
-- every event ever recorded: its time and memory grew with the whole history. Now each row of the
-- rates keeps `rated_events`, how many rate events (delivered, bounced, opened, clicked) of its run
-- it was computed from. The live counters say how many there are now; a run whose two numbers
-- differ is recomputed exactly from its raw events (a key range of message_events), every other
-- row is copied as it is. Events are only ever appended, so an unchanged count means unchanged
-- rates. Counters a crash left short or doubled make the two numbers differ too: such a run is
-- recomputed at every refresh (exact, from the raw events) until reconciliation repairs them.

-- Codecs of message_events (metadata only: new parts, and parts merged from now on, use them).
-- Timestamps of a batch are close: Delta then ZSTD. Message and profile ids are text with long
-- shared prefixes: ZSTD. Measured in bench/README.md (storage per million events).
ALTER TABLE herald.message_events
    MODIFY COLUMN occurred_at DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1)),
    MODIFY COLUMN ingested_at DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta(8), ZSTD(1)),
    MODIFY COLUMN message_id String CODEC(ZSTD(1)),
    MODIFY COLUMN profile_id String CODEC(ZSTD(1)),
    MODIFY COLUMN reason String DEFAULT '' CODEC(ZSTD(1)),
    MODIFY COLUMN url String DEFAULT '' CODEC(ZSTD(1));

-- The rates, one row per run, as of each run's last computation.
CREATE TABLE IF NOT EXISTS herald.delivery_rates_computed
(
    delivery_id         UUID,
    occurrence          UInt32,
    delivered_messages  Int64,
    unique_opens        UInt64,
    unique_clicks       UInt64,
    machine_opens       UInt64,
    machine_clicks      UInt64,
    open_rate           Float64,
    click_rate          Float64,
    computed_at         DateTime64(3, 'UTC'),
    rated_events        UInt64
)
ENGINE = MergeTree
ORDER BY (delivery_id, occurrence);

-- Keep the rates the previous view computed, with their time. Their rated_events is unknown (0):
-- the first refresh recomputes each of them once.
INSERT INTO herald.delivery_rates_computed
SELECT delivery_id, occurrence, delivered_messages, unique_opens, unique_clicks, machine_opens,
       machine_clicks, open_rate, click_rate, computed_at, 0
FROM herald.delivery_rates;

-- delivery_summary (002) reads delivery_rates by name, which comes back below with the same
-- columns (and rated_events): the view is kept, only the dependency check is skipped.
DROP VIEW IF EXISTS herald.delivery_rates SETTINGS check_table_dependencies = 0;

-- Every hour or on demand (SYSTEM REFRESH VIEW), delivery_rates_computed is replaced atomically by:
-- the runs whose rate events changed, recomputed exactly; every other run, copied unchanged. The
-- recomputed runs are found once (`fresh`), so a run is never both dropped and not recomputed.
-- A message clicked without a pixel hit counts as opened: unique opens = opened ∪ clicked.
-- A message that bounced after delivery is no longer delivered.
CREATE MATERIALIZED VIEW IF NOT EXISTS herald.delivery_rates
REFRESH EVERY 1 HOUR TO herald.delivery_rates_computed
AS SELECT
    if(fresh.recomputed, fresh.delivery_id, kept.delivery_id)                  AS delivery_id,
    if(fresh.recomputed, fresh.occurrence, kept.occurrence)                    AS occurrence,
    if(fresh.recomputed, fresh.delivered_messages, kept.delivered_messages)    AS delivered_messages,
    if(fresh.recomputed, fresh.unique_opens, kept.unique_opens)                AS unique_opens,
    if(fresh.recomputed, fresh.unique_clicks, kept.unique_clicks)              AS unique_clicks,
    if(fresh.recomputed, fresh.machine_opens, kept.machine_opens)              AS machine_opens,
    if(fresh.recomputed, fresh.machine_clicks, kept.machine_clicks)            AS machine_clicks,
    if(fresh.recomputed, fresh.open_rate, kept.open_rate)                      AS open_rate,
    if(fresh.recomputed, fresh.click_rate, kept.click_rate)                    AS click_rate,
    if(fresh.recomputed, fresh.computed_at, kept.computed_at)                  AS computed_at,
    if(fresh.recomputed, fresh.rated_events, kept.rated_events)                AS rated_events
FROM herald.delivery_rates_computed AS kept
FULL OUTER JOIN
(
    SELECT
        delivery_id,
        occurrence,
        uniqExactIf(message_id, type = 'delivered')
          - uniqExactIf(message_id, type = 'bounced' AND supersedes = 'delivered')  AS delivered_messages,
        uniqExactIf(message_id, type IN ('opened', 'clicked'))                     AS unique_opens,
        uniqExactIf(message_id, type = 'clicked')                                   AS unique_clicks,
        uniqExactIf(message_id, type = 'opened' AND machine)                        AS machine_opens,
        uniqExactIf(message_id, type = 'clicked' AND machine)                       AS machine_clicks,
        if(delivered_messages <= 0, 0, unique_opens / delivered_messages)           AS open_rate,
        if(delivered_messages <= 0, 0, unique_clicks / delivered_messages)          AS click_rate,
        now64(3, 'UTC')                                                             AS computed_at,
        count()                                                                     AS rated_events,
        true                                                                        AS recomputed
    FROM herald.message_events
    WHERE type IN ('delivered', 'bounced', 'opened', 'clicked')
      AND (delivery_id, occurrence) IN
      (
          -- Runs whose live count of rate events differs from the one their rates were computed from.
          SELECT live.delivery_id, live.occurrence
          FROM
          (
              SELECT delivery_id, occurrence,
                     sum(delivered) + sum(bounces) + sum(opens) + sum(clicks) AS rate_events
              FROM herald.delivery_counters
              GROUP BY delivery_id, occurrence
          ) AS live
          LEFT JOIN herald.delivery_rates_computed AS rated
            ON rated.delivery_id = live.delivery_id AND rated.occurrence = live.occurrence
          WHERE live.rate_events != rated.rated_events
      )
    GROUP BY delivery_id, occurrence
) AS fresh
ON fresh.delivery_id = kept.delivery_id AND fresh.occurrence = kept.occurrence
SETTINGS join_use_nulls = 0;
