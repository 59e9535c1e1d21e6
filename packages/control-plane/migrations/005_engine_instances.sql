-- Engine processes sharing one store: each live one heartbeats here with its figures (what
-- GET /v1/ops/engines lists); each handed-out ledger row names the engine holding it, so the
-- rows of an engine that stopped heartbeating go back to pending while the others go on.
CREATE TABLE engine_instances (
  id            uuid PRIMARY KEY,
  host          text NOT NULL,
  pid           integer NOT NULL,
  started_at    timestamptz NOT NULL,
  heartbeat_at  timestamptz NOT NULL,
  stats         jsonb NOT NULL DEFAULT '{}'
);

ALTER TABLE send_ledger ADD COLUMN engine_id uuid;

CREATE INDEX send_ledger_engine ON send_ledger (engine_id) WHERE status IN ('queued', 'sending');
