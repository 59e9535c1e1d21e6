-- A profile's history reads the ledger by profile.
CREATE INDEX send_ledger_profile ON send_ledger (profile_id);
