-- Signals are the outbox of their notifications (services/notifier.service.ts): every stored
-- signal gets an identity and a delivery order, written by the results transaction itself.
-- `tx_id` is the transaction that inserted the signal, `id` the order within it. A reader takes
-- only signals whose transaction is older than every transaction still running
-- (pg_snapshot_xmin), so a signal committed late can never fall behind a cursor that moved on.
ALTER TABLE signals ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE signals ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX signals_delivery_order ON signals (tx_id, id);

-- One row per webhook subscriber (from the configuration): where its deliveries stand (the last
-- signal it answered 2xx to, or skipped by its filter), who delivers to it now (a lease, so that
-- several notifier nodes share the work), and the state of the signal it is retrying.
CREATE TABLE notification_subscribers (
  name              text        PRIMARY KEY,
  url               text        NOT NULL,
  cursor_tx         xid8        NOT NULL,
  cursor_id         bigint      NOT NULL,
  lease_owner       text,
  lease_until       timestamptz,
  disabled_at       timestamptz,
  disabled_reason   text,
  attempts          integer     NOT NULL DEFAULT 0,
  failing_since     timestamptz,
  next_attempt_at   timestamptz,
  last_error        text,
  delivered         bigint      NOT NULL DEFAULT 0,
  last_delivered_at timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now()
);

-- Deliveries that ran out of retries (NOTIFIER_RETRY_HOURS): kept until redelivered by hand.
CREATE TABLE notification_dead_letters (
  subscriber     text        NOT NULL,
  signal_id      bigint      NOT NULL,
  symbol         text        NOT NULL,
  seq            bigint      NOT NULL,
  attempts       integer     NOT NULL,
  last_error     text        NOT NULL,
  failed_at      timestamptz NOT NULL DEFAULT now(),
  redelivered_at timestamptz,
  PRIMARY KEY (subscriber, signal_id)
);
