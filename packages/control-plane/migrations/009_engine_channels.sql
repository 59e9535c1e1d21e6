-- What each engine can send, and through which provider (credentials redacted), as it registered:
-- Confirm send refuses a channel no live engine can send and names the provider it will use.
-- A JSON array of {channel: 'email' | 'sms', kind, url, ...}.
ALTER TABLE engine_instances ADD COLUMN channels jsonb NOT NULL DEFAULT '[]';
