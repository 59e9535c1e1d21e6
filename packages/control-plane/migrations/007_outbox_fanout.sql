-- The engine's message events leave through the outbox in one row per batch instead of one row
-- per event: the row's payload is the JSON array of the batch's events (fanout), which the relay
-- publishes as one bus message each, under the row's topic and key. Per event, the store then
-- writes no tuple, no primary-key and no command-id index entry, and marks nothing published.
-- `messages` is how many bus messages the row makes (the relay's budget per drain).
ALTER TABLE outbox ADD COLUMN fanout boolean NOT NULL DEFAULT false;
ALTER TABLE outbox ADD COLUMN messages integer NOT NULL DEFAULT 1;

-- One row per bus message, whichever way it was written: the relay's view of the outbox, for
-- the KPI recovery and for anyone reading the outbox by hand. `idx` orders a fanout row's messages.
CREATE VIEW outbox_messages AS
  SELECT o.id, m.idx::int AS idx, o.command_id, o.topic, o.key, m.payload, o.created_at, o.published_at
    FROM outbox o
   CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN o.fanout THEN o.payload ELSE jsonb_build_array(o.payload) END)
         WITH ORDINALITY AS m(payload, idx);
