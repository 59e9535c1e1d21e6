-- 001: raw message events, live per-delivery counters, hourly open/click rates, and the BI view.
-- Statements end with ';' at the end of a line (the migrator splits on that). Every name is
-- qualified with the `herald` database (created ENGINE = Atomic by the migrator).

-- Every message event, as received. Insert deduplication (insert_deduplication_token, or the
-- block hash when no token is given) needs a window on a non-replicated MergeTree.
CREATE TABLE IF NOT EXISTS herald.message_events
(
    event_id     UUID,
    type         Enum8('sent' = 1, 'delivered' = 2, 'bounced' = 3, 'failed' = 4, 'opened' = 5,
                       'clicked' = 6, 'unsubscribed' = 7, 'excluded' = 8),
    delivery_id  UUID,
    occurrence   UInt32,
    message_id   String,
    profile_id   String,
    channel      Enum8('email' = 1, 'sms' = 2),
    occurred_at  DateTime64(3, 'UTC'),
    bounce_type  Enum8('' = 0, 'hard' = 1, 'soft' = 2, 'ignored' = 3) DEFAULT '',
    reason       String DEFAULT '',
    url          String DEFAULT '',
    machine      Bool DEFAULT false,
    ingested_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (delivery_id, occurrence, type, occurred_at, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Live counters, one row per (delivery, occurrence) and insert block; read them with sum().
-- A batch dropped as a duplicate in message_events still reaches the views (ClickHouse 24+), so the
-- counters deduplicate too: inserts set deduplicate_blocks_in_dependent_materialized_views = 1 and
-- this table keeps its own window (tokens for its blocks derive from the source block's token).
CREATE TABLE IF NOT EXISTS herald.delivery_counters
(
    delivery_id   UUID,
    occurrence    UInt32,
    sent_events   UInt64,
    delivered     UInt64,
    bounces       UInt64,
    hard          UInt64,
    soft          UInt64,
    ignored       UInt64,
    errors        UInt64,
    opens         UInt64,
    clicks        UInt64,
    unsubscribed  UInt64,
    excluded      UInt64
)
ENGINE = SummingMergeTree
ORDER BY (delivery_id, occurrence)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS herald.delivery_counters_mv TO herald.delivery_counters AS
SELECT
    delivery_id,
    occurrence,
    countIf(type = 'sent')                                AS sent_events,
    countIf(type = 'delivered')                           AS delivered,
    countIf(type = 'bounced')                             AS bounces,
    countIf(type = 'bounced' AND bounce_type = 'hard')    AS hard,
    countIf(type = 'bounced' AND bounce_type = 'soft')    AS soft,
    countIf(type = 'bounced' AND bounce_type = 'ignored') AS ignored,
    countIf(type = 'failed')                              AS errors,
    countIf(type = 'opened')                              AS opens,
    countIf(type = 'clicked')                             AS clicks,
    countIf(type = 'unsubscribed')                        AS unsubscribed,
    countIf(type = 'excluded')                            AS excluded
FROM herald.message_events
GROUP BY delivery_id, occurrence;

-- Open rate and click-through rate, recomputed every hour or on demand (SYSTEM REFRESH VIEW).
-- A message clicked without a pixel hit counts as opened: unique opens = opened ∪ clicked.
CREATE MATERIALIZED VIEW IF NOT EXISTS herald.delivery_rates
REFRESH EVERY 1 HOUR
ENGINE = MergeTree
ORDER BY (delivery_id, occurrence)
AS SELECT
    delivery_id,
    occurrence,
    uniqExactIf(message_id, type = 'delivered')              AS delivered_messages,
    uniqExactIf(message_id, type IN ('opened', 'clicked'))   AS unique_opens,
    uniqExactIf(message_id, type = 'clicked')                AS unique_clicks,
    if(delivered_messages = 0, 0, unique_opens / delivered_messages)  AS open_rate,
    if(delivered_messages = 0, 0, unique_clicks / delivered_messages) AS click_rate,
    now64(3, 'UTC')                                          AS computed_at
FROM herald.message_events
WHERE type IN ('delivered', 'opened', 'clicked')
GROUP BY delivery_id, occurrence;

-- What BI reads: live counters with the KPI formulas, beside the last computed rates.
CREATE VIEW IF NOT EXISTS herald.delivery_summary AS
SELECT
    c.delivery_id AS delivery_id,
    c.occurrence AS occurrence,
    c.delivered + c.bounces + c.errors AS sent,
    c.delivered AS delivered,
    c.hard AS hard_bounces,
    c.soft AS soft_bounces,
    c.ignored AS ignored_bounces,
    c.bounces AS bounces,
    c.errors AS errors,
    c.opens AS opens,
    c.clicks AS clicks,
    c.unsubscribed AS unsubscribed,
    c.excluded AS excluded,
    if(sent = 0, 0, c.delivered / sent) AS delivered_rate,
    if(sent = 0, 0, (c.bounces + c.errors) / sent) AS bounce_error_rate,
    r.unique_opens AS unique_opens,
    r.unique_clicks AS unique_clicks,
    r.open_rate AS open_rate,
    r.click_rate AS click_rate,
    r.computed_at AS rates_computed_at
FROM
(
    SELECT
        delivery_id, occurrence,
        sum(delivered) AS delivered, sum(bounces) AS bounces, sum(hard) AS hard, sum(soft) AS soft,
        sum(ignored) AS ignored, sum(errors) AS errors, sum(opens) AS opens, sum(clicks) AS clicks,
        sum(unsubscribed) AS unsubscribed, sum(excluded) AS excluded
    FROM herald.delivery_counters
    GROUP BY delivery_id, occurrence
) AS c
LEFT JOIN herald.delivery_rates AS r ON r.delivery_id = c.delivery_id AND r.occurrence = c.occurrence;
