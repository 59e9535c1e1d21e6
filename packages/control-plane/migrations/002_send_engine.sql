-- The send engine's bookkeeping: attempts and outcomes per recipient, retry times, the links
-- a delivery tracks, and when a run finished.

ALTER TABLE send_ledger ADD COLUMN last_code integer;
ALTER TABLE send_ledger ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE send_ledger ADD COLUMN first_attempt_at timestamptz;
ALTER TABLE send_ledger ADD COLUMN sent_at timestamptz;

-- Rows the planner still has to hand out (pending, or retries), in keyset order.
CREATE INDEX send_ledger_todo ON send_ledger (delivery_id, occurrence, profile_id) WHERE status IN ('pending', 'retry');
-- Rows handed out and not yet settled: what was in flight when an engine died.
CREATE INDEX send_ledger_in_flight ON send_ledger (delivery_id, occurrence) WHERE status IN ('queued', 'sending');

CREATE TABLE tracked_links (
  delivery_id  uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  idx          integer NOT NULL,
  url          text NOT NULL,
  PRIMARY KEY (delivery_id, idx)
);

ALTER TABLE deliveries ADD COLUMN finished_at timestamptz;
ALTER TABLE delivery_occurrences ADD COLUMN finished_at timestamptz;
