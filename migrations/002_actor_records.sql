-- The record of the symbol actors, written in the same transaction as their results, so that
-- Postgres alone can resume every actor exactly: Redis only caches these states. And what makes
-- a client's retried request count once.

-- One row per symbol: the state its actor had after the last message it applied (`last_offset`
-- in `partition`), as the JSON document of its snapshot. An actor restores from Redis only when
-- Redis holds this very state (same seq and offset); otherwise from here.
-- Rows are rewritten all the time and found by symbol only: half-empty pages and no other
-- index let Postgres update them in place (HOT), without touching the index.
CREATE TABLE actor_state (
  symbol      text        PRIMARY KEY,
  partition   integer     NOT NULL,
  seq         bigint      NOT NULL,
  last_offset bigint      NOT NULL,
  state       text        NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);

-- Ownership of each partition. A node that is given a partition bumps its epoch; every results
-- transaction checks, under a row lock, that its epoch is still the current one. A node that
-- lost the partition while paused (a zombie) is refused before it writes anything.
CREATE TABLE partition_epochs (
  partition  integer     PRIMARY KEY,
  epoch      bigint      NOT NULL,
  owner      text,
  claimed_at timestamptz NOT NULL DEFAULT now()
);

-- Client requests sent with an Idempotency-Key header (POST /ingest): the key, a hash of the
-- body it came with, and whether its messages reached the log. A repeat with the same body is
-- answered like the first; the same key with another body is refused (422).
CREATE TABLE idempotency_keys (
  key          text        PRIMARY KEY,
  body_sha256  text        NOT NULL,
  messages     integer     NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- What each partition has applied of each key (its messages carry the key and their index in
-- Kafka headers): written with the actors' states, so a copy of a request that reached the log
-- twice (its first answer was lost, the client retried) is applied once, also after a replay.
CREATE TABLE idempotency_marks (
  partition integer     NOT NULL,
  key       text        NOT NULL,
  hi        integer     NOT NULL,
  hi_offset bigint      NOT NULL,
  seen_at   timestamptz NOT NULL,
  PRIMARY KEY (partition, key)
);
