-- 003: messages excluded at send time, and signed sums for the repairs of the counters.
--
-- A recipient the engine did not send (its profile was suppressed after preparation) has one
-- 'excluded' event: it is no message a profile was sent, so its history does not list it.

DROP VIEW IF EXISTS herald.profile_history;

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
GROUP BY profile_id, delivery_id, occurrence, message_id
HAVING countIf(type = 'excluded') < count();

-- Repairs. An insert into message_events and the parts its views write are not atomic: a process
-- killed in between leaves the views short of a block (or, the block inserted again, with it
-- twice). Reconciliation adds correction rows (raw − live) to the additive views, which may be
-- negative: their sums become signed.
ALTER TABLE herald.delivery_counters
    MODIFY COLUMN sent_events Int64,
    MODIFY COLUMN delivered Int64,
    MODIFY COLUMN bounces Int64,
    MODIFY COLUMN hard Int64,
    MODIFY COLUMN soft Int64,
    MODIFY COLUMN ignored Int64,
    MODIFY COLUMN errors Int64,
    MODIFY COLUMN opens Int64,
    MODIFY COLUMN clicks Int64,
    MODIFY COLUMN unsubscribed Int64,
    MODIFY COLUMN excluded Int64,
    MODIFY COLUMN delivered_superseded Int64 DEFAULT 0,
    MODIFY COLUMN errors_superseded Int64 DEFAULT 0,
    MODIFY COLUMN complaints Int64 DEFAULT 0;

ALTER TABLE herald.delivery_hourly_series
    MODIFY COLUMN delivered SimpleAggregateFunction(sum, Int64),
    MODIFY COLUMN bounces SimpleAggregateFunction(sum, Int64),
    MODIFY COLUMN opens SimpleAggregateFunction(sum, Int64),
    MODIFY COLUMN clicks SimpleAggregateFunction(sum, Int64);
