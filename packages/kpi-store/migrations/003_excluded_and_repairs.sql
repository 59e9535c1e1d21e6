-- 003: messages excluded at send time, and the counters' repairs.
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
