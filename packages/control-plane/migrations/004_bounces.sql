-- Asynchronous bounces and complaints (the bounce webhook), and the soft-bounce quarantine rule.

ALTER TABLE send_ledger ADD COLUMN bounce_type text;
ALTER TABLE send_ledger ADD COLUMN complained_at timestamptz;

-- The webhook finds a message by its Message-ID.
CREATE INDEX send_ledger_message_id ON send_ledger (message_id) WHERE message_id IS NOT NULL;

-- KPI recovery reads the message events published since a point in time.
CREATE INDEX outbox_published_at ON outbox (published_at, id) WHERE published_at IS NOT NULL;
