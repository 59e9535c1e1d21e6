-- Control plane: profiles, audiences, deliveries and their occurrences, two-step confirmations,
-- the audit log, the transactional outbox, and the per-recipient send ledger.

CREATE TABLE profiles (
  id                   text PRIMARY KEY,
  email                text,
  phone                text,
  first_name           text,
  last_name            text,
  locale               text,
  timezone             text,
  attributes           jsonb NOT NULL DEFAULT '{}'::jsonb,
  status               text NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'unsubscribed', 'quarantined', 'denylisted')),
  soft_bounce_count    integer NOT NULL DEFAULT 0,
  last_soft_bounce_at  timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX profiles_attributes ON profiles USING gin (attributes jsonb_path_ops);

CREATE TABLE audiences (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  filter      jsonb,
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audience_members (
  audience_id  uuid NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
  profile_id   text NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
  PRIMARY KEY (audience_id, profile_id)
);

CREATE TABLE deliveries (
  id                uuid PRIMARY KEY,
  name              text NOT NULL,
  channel           text NOT NULL CHECK (channel IN ('email', 'sms')),
  audience_id       uuid NOT NULL REFERENCES audiences (id),
  content           jsonb NOT NULL,
  schedule          jsonb,
  recurrence        jsonb,
  throughput        jsonb,
  state             text NOT NULL,
  state_reason      text,
  -- Bumped by every change a confirmation must notice (edit, prepare, state change).
  version           integer NOT NULL DEFAULT 1,
  preparation       jsonb,
  content_hash      text,
  -- When the scheduler must act next: a scheduled send, or the next run of a recurrence.
  next_run_at       timestamptz,
  -- Set when the first DeliveryStarted is written: a resume then means DeliveryResumed.
  started_at        timestamptz,
  occurrence_count  integer NOT NULL DEFAULT 0,
  created_by        text NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deliveries_due ON deliveries (next_run_at) WHERE state = 'scheduled';
CREATE INDEX deliveries_created ON deliveries (created_at DESC, id DESC);

-- Runs of a recurring delivery (occurrence 0 is never stored: it is the delivery itself).
CREATE TABLE delivery_occurrences (
  delivery_id    uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  n              integer NOT NULL CHECK (n >= 1),
  state          text NOT NULL,
  state_reason   text,
  version        integer NOT NULL DEFAULT 1,
  scheduled_for  timestamptz NOT NULL,
  preparation    jsonb NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (delivery_id, n)
);

CREATE TABLE confirmations (
  id                uuid PRIMARY KEY,
  delivery_id       uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  occurrence        integer NOT NULL DEFAULT 0,
  user_id           text NOT NULL,
  -- What the user saw: the version of the delivery (or occurrence) and the summary.
  subject_version   integer NOT NULL,
  summary           jsonb NOT NULL,
  summary_hash      text NOT NULL,
  expires_at        timestamptz NOT NULL,
  status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'void')),
  result            jsonb,
  created_at        timestamptz NOT NULL DEFAULT now(),
  accepted_at       timestamptz
);

CREATE INDEX confirmations_pending ON confirmations (delivery_id, occurrence) WHERE status = 'pending';

CREATE TABLE audit_log (
  id            bigserial PRIMARY KEY,
  at            timestamptz NOT NULL,
  actor         text NOT NULL,
  delivery_id   uuid,
  occurrence    integer,
  action        text NOT NULL,
  from_state    text,
  to_state      text,
  summary_hash  text,
  details       jsonb
);

CREATE INDEX audit_log_delivery ON audit_log (delivery_id, id);

CREATE TABLE outbox (
  id            bigserial PRIMARY KEY,
  command_id    uuid NOT NULL UNIQUE,
  topic         text NOT NULL,
  key           text NOT NULL,
  payload       jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  published_at  timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Commands a consumer has already applied: redelivered commands are recognised and skipped.
CREATE TABLE processed_commands (
  consumer      text NOT NULL,
  command_id    uuid NOT NULL,
  processed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, command_id)
);

-- The recipients frozen at preparation, one row per message; the engine records each outcome.
CREATE TABLE send_ledger (
  delivery_id   uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  occurrence    integer NOT NULL,
  profile_id    text NOT NULL,
  address       text NOT NULL,
  status        text NOT NULL DEFAULT 'pending',
  message_id    text,
  attempts      integer NOT NULL DEFAULT 0,
  last_error    text,
  send_after    timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (delivery_id, occurrence, profile_id)
);

CREATE TABLE exclusions (
  delivery_id   uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  occurrence    integer NOT NULL,
  profile_id    text NOT NULL,
  address       text,
  reason        text NOT NULL,
  PRIMARY KEY (delivery_id, occurrence, profile_id)
);
