-- Two indexes of 004/005 cost more on the send path than they save (measured: PGlite's share of
-- the embedded send grew with them). Each was maintained for every message; neither serves a
-- hot query:
-- * the KPI recovery finds its first outbox row by a binary search over ids (the relay
--   publishes in id order), once per start;
-- * reaping a dead engine's rows reads the in-flight rows through send_ledger_in_flight, which
--   holds only rows queued or being sent.
DROP INDEX IF EXISTS outbox_published_at;
DROP INDEX IF EXISTS send_ledger_engine;
