-- What each engine can send, and through which provider (credentials redacted), as it registered:
-- Confirm send refuses a channel no live engine can send and names the provider it will use.
-- A JSON array of {channel: 'email' | 'sms', kind, url, ...}.
ALTER TABLE engine_instances ADD COLUMN channels jsonb NOT NULL DEFAULT '[]';

-- The links of each proof, kept by the engine from the content it rendered: a reviewer's click
-- redirects before the delivery is prepared (tracked_links are written at preparation), and
-- after its content changed. Proof tokens carry the proof id.
CREATE TABLE proof_links (
  proof_id     uuid NOT NULL,
  delivery_id  uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  idx          integer NOT NULL,
  url          text NOT NULL,
  PRIMARY KEY (proof_id, idx)
);
