-- 002: asynchronous bounces and complaints, hourly series, per-profile history.
--
-- A message handed to the MTA counts as delivered at once (the reference: "delivered % starts at
-- 100% of sent and falls as bounces arrive"). A bounce that arrives later (webhook) is a 'bounced'
-- event with `supersedes` = the status it replaces ('delivered', or 'failed' for an in-doubt
-- message): the counters stay additive, and readers subtract the superseded ones.

ALTER TABLE herald.message_events
    MODIFY COLUMN type Enum8('sent' = 1, 'delivered' = 2, 'bounced' = 3, 'failed' = 4, 'opened' = 5,
                             'clicked' = 6, 'unsubscribed' = 7, 'excluded' = 8, 'complained' = 9);

ALTER TABLE herald.message_events
    ADD COLUMN IF NOT EXISTS supersedes Enum8('' = 0, 'delivered' = 2, 'failed' = 4) DEFAULT '' AFTER machine;

ALTER TABLE herald.delivery_counters
    ADD COLUMN IF NOT EXISTS delivered_superseded UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS errors_superseded UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS complaints UInt64 DEFAULT 0;

DROP VIEW IF EXISTS herald.delivery_counters_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS herald.delivery_counters_mv TO herald.delivery_counters AS
SELECT
    delivery_id,
    occurrence,
    countIf(type = 'sent')                                  AS sent_events,
    countIf(type = 'delivered')                             AS delivered,
    countIf(type = 'bounced')                               AS bounces,
    countIf(type = 'bounced' AND bounce_type = 'hard')      AS hard,
    countIf(type = 'bounced' AND bounce_type = 'soft')      AS soft,
    countIf(type = 'bounced' AND bounce_type = 'ignored')   AS ignored,
    countIf(type = 'failed')                                AS errors,
    countIf(type = 'opened')                                AS opens,
    countIf(type = 'clicked')                               AS clicks,
    countIf(type = 'unsubscribed')                          AS unsubscribed,
    countIf(type = 'excluded')                              AS excluded,
    countIf(type = 'bounced' AND supersedes = 'delivered')  AS delivered_superseded,
    countIf(type = 'bounced' AND supersedes = 'failed')     AS errors_superseded,
    countIf(type = 'complained')                            AS complaints
FROM herald.message_events
GROUP BY delivery_id, occurrence;

-- Rates (and the share of machine hits) per delivery and occurrence, every hour or on demand.
-- A message clicked without a pixel hit counts as opened: unique opens = opened ∪ clicked.
-- A message that bounced after delivery is no longer delivered.
DROP VIEW IF EXISTS herald.delivery_summary;

DROP VIEW IF EXISTS herald.delivery_rates;

CREATE MATERIALIZED VIEW IF NOT EXISTS herald.delivery_rates
REFRESH EVERY 1 HOUR
ENGINE = MergeTree
ORDER BY (delivery_id, occurrence)
AS SELECT
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
    now64(3, 'UTC')                                                             AS computed_at
FROM herald.message_events
WHERE type IN ('delivered', 'bounced', 'opened', 'clicked')
GROUP BY delivery_id, occurrence;

-- What BI reads per delivery and occurrence: live counters with the KPI formulas, beside the last
-- computed rates.
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
    c.complaints AS complaints,
    c.excluded AS excluded,
    if(sent = 0, 0, c.delivered / sent) AS delivered_rate,
    if(sent = 0, 0, (c.bounces + c.errors) / sent) AS bounce_error_rate,
    r.unique_opens AS unique_opens,
    r.unique_clicks AS unique_clicks,
    r.open_rate AS open_rate,
    r.click_rate AS click_rate,
    r.machine_opens AS machine_opens,
    r.machine_clicks AS machine_clicks,
    r.computed_at AS rates_computed_at
FROM
(
    SELECT
        delivery_id, occurrence,
        sum(delivered) - sum(delivered_superseded) AS delivered, sum(bounces) AS bounces,
        sum(hard) AS hard, sum(soft) AS soft, sum(ignored) AS ignored,
        sum(errors) - sum(errors_superseded) AS errors, sum(opens) AS opens, sum(clicks) AS clicks,
        sum(unsubscribed) AS unsubscribed, sum(complaints) AS complaints, sum(excluded) AS excluded
    FROM herald.delivery_counters
    GROUP BY delivery_id, occurrence
) AS c
LEFT JOIN herald.delivery_rates AS r ON r.delivery_id = c.delivery_id AND r.occurrence = c.occurrence;

-- Hourly series per delivery and occurrence (live). Unique counts are per hour: a message opened
-- in two hours counts once in each.
CREATE TABLE IF NOT EXISTS herald.delivery_hourly_series
(
    delivery_id    UUID,
    occurrence     UInt32,
    hour           DateTime('UTC'),
    delivered      SimpleAggregateFunction(sum, UInt64),
    bounces        SimpleAggregateFunction(sum, UInt64),
    opens          SimpleAggregateFunction(sum, UInt64),
    clicks         SimpleAggregateFunction(sum, UInt64),
    unique_opens   AggregateFunction(uniqExact, String),
    unique_clicks  AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (delivery_id, occurrence, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS herald.delivery_hourly_series_mv TO herald.delivery_hourly_series AS
SELECT
    delivery_id,
    occurrence,
    toStartOfHour(occurred_at) AS hour,
    countIf(type = 'delivered')                                    AS delivered,
    countIf(type = 'bounced')                                      AS bounces,
    countIf(type = 'opened')                                       AS opens,
    countIf(type = 'clicked')                                      AS clicks,
    uniqExactStateIf(message_id, type IN ('opened', 'clicked'))    AS unique_opens,
    uniqExactStateIf(message_id, type = 'clicked')                 AS unique_clicks
FROM herald.message_events
WHERE type IN ('delivered', 'bounced', 'opened', 'clicked')
GROUP BY delivery_id, occurrence, hour;

INSERT INTO herald.delivery_hourly_series
SELECT
    delivery_id, occurrence, toStartOfHour(occurred_at) AS hour,
    countIf(type = 'delivered'), countIf(type = 'bounced'), countIf(type = 'opened'), countIf(type = 'clicked'),
    uniqExactStateIf(message_id, type IN ('opened', 'clicked')), uniqExactStateIf(message_id, type = 'clicked')
FROM herald.message_events
WHERE type IN ('delivered', 'bounced', 'opened', 'clicked')
GROUP BY delivery_id, occurrence, hour;

CREATE VIEW IF NOT EXISTS herald.delivery_hourly AS
SELECT
    delivery_id,
    occurrence,
    hour,
    sum(delivered) AS delivered,
    sum(bounces) AS bounces,
    sum(opens) AS opens,
    sum(clicks) AS clicks,
    uniqExactMerge(unique_opens) AS unique_opens,
    uniqExactMerge(unique_clicks) AS unique_clicks
FROM herald.delivery_hourly_series
GROUP BY delivery_id, occurrence, hour;

-- Every event of a profile, ordered by profile: what its history reads.
CREATE TABLE IF NOT EXISTS herald.profile_events
(
    profile_id   String,
    occurred_at  DateTime64(3, 'UTC'),
    delivery_id  UUID,
    occurrence   UInt32,
    message_id   String,
    type         Enum8('sent' = 1, 'delivered' = 2, 'bounced' = 3, 'failed' = 4, 'opened' = 5,
                       'clicked' = 6, 'unsubscribed' = 7, 'excluded' = 8, 'complained' = 9),
    channel      Enum8('email' = 1, 'sms' = 2),
    bounce_type  Enum8('' = 0, 'hard' = 1, 'soft' = 2, 'ignored' = 3),
    reason       String,
    url          String,
    machine      Bool,
    event_id     UUID
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (profile_id, occurred_at, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS herald.profile_events_mv TO herald.profile_events AS
SELECT profile_id, occurred_at, delivery_id, occurrence, message_id, type, channel, bounce_type, reason, url, machine, event_id
FROM herald.message_events;

INSERT INTO herald.profile_events
SELECT profile_id, occurred_at, delivery_id, occurrence, message_id, type, channel, bounce_type, reason, url, machine, event_id
FROM herald.message_events;

-- One row per message a profile was sent, newest first when ordered by sent_at: its latest status
-- and its first open (a click counts as an open) and click.
CREATE VIEW IF NOT EXISTS herald.profile_history AS
SELECT
    profile_id,
    delivery_id,
    occurrence,
    message_id,
    any(channel) AS channel,
    minIf(occurred_at, type IN ('sent', 'delivered', 'bounced', 'failed')) AS sent_at,
    argMaxIf(toString(type), occurred_at, type IN ('delivered', 'bounced', 'failed')) AS status,
    if(countIf(type IN ('opened', 'clicked')) = 0, NULL, minIf(occurred_at, type IN ('opened', 'clicked'))) AS opened_at,
    if(countIf(type = 'clicked') = 0, NULL, minIf(occurred_at, type = 'clicked')) AS clicked_at,
    CAST(countIf(type = 'complained') > 0, 'Bool') AS complained
FROM herald.profile_events
GROUP BY profile_id, delivery_id, occurrence, message_id;
