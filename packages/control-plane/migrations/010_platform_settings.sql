-- Settings every process of one platform must share (see platform-settings.ts): the public URL
-- of the links in messages, written by each gateway at start, and the signing secrets (tracking
-- and unsubscribe links, the bounce webhook, bearer tokens). A secret Herald generated is kept
-- in `value`; one given in a process's environment is kept only as its `fingerprint` (SHA-256),
-- so a process with another value is refused instead of signing links nobody can verify.
CREATE TABLE platform_settings (
  name         text PRIMARY KEY,
  value        text,
  fingerprint  text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (value IS NOT NULL OR fingerprint IS NOT NULL)
);
