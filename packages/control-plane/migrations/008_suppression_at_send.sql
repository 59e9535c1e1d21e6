-- Suppression is checked again when the engine claims a batch: a recipient whose profile was
-- unsubscribed, denylisted or quarantined after preparation is not sent. Its ledger row ends as
-- 'excluded_at_send' with the reason in its own column (reasons: unsubscribed, denylisted,
-- quarantined; fatigue later), and it joins the exclusion log, which now says at which stage a
-- profile was excluded and when.

ALTER TABLE send_ledger ADD COLUMN excluded_reason text;

ALTER TABLE exclusions ADD COLUMN stage text NOT NULL DEFAULT 'preparation' CHECK (stage IN ('preparation', 'send'));
-- Rows logged before this migration keep no time; new ones get theirs.
ALTER TABLE exclusions ADD COLUMN excluded_at timestamptz;
ALTER TABLE exclusions ALTER COLUMN excluded_at SET DEFAULT now();
