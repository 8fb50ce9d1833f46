-- Why each dead letter is there: 'invalid' (not a message the system accepts), 'unappliable'
-- (its actor could not apply it: its state would stop being finite, or a late copy of a reused
-- Idempotency-Key), 'refused' (Postgres refused its results with a data error, try after try).
-- Messages of the last two kinds are skipped again when a partition is replayed, so a replay
-- decides exactly as the first run did.
ALTER TABLE dead_letters ADD COLUMN kind text NOT NULL DEFAULT 'invalid'
  CHECK (kind IN ('invalid', 'unappliable', 'refused'));
