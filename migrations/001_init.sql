-- Results of the symbol actors. Every table has a unique key made of what the deterministic
-- actor computes (symbol + per-symbol sequence number), so replaying a partition after a crash
-- or a rebalance inserts nothing twice: writers use ON CONFLICT DO NOTHING.

-- One row per price tick: the tick and the indicators computed on it.
CREATE TABLE ticks (
  symbol                     text             NOT NULL,
  seq                        bigint           NOT NULL,
  "timestamp"                timestamptz      NOT NULL,
  opening_price              double precision NOT NULL,
  closing_price              double precision NOT NULL,
  high                       double precision NOT NULL,
  low                        double precision NOT NULL,
  volume                     bigint           NOT NULL,
  moving_average             double precision,
  exponential_moving_average double precision,
  relative_strength_index    double precision,
  kafka_partition            integer          NOT NULL,
  kafka_offset               bigint           NOT NULL,
  log_timestamp              timestamptz      NOT NULL,
  created_at                 timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, seq)
);
CREATE INDEX ticks_symbol_timestamp ON ticks (symbol, "timestamp");
CREATE INDEX ticks_created_at ON ticks (created_at);

-- The seed's long format, one row per (tick, indicator), kept as a view over `ticks` so that
-- existing dashboards and clients keep working while storage stays one row per tick.
CREATE VIEW stock_analysis AS
SELECT t.symbol, i.indicator, i.value, t."timestamp", t.created_at, t.seq
FROM ticks t
CROSS JOIN LATERAL (
  VALUES ('moving_average', t.moving_average),
         ('exponential_moving_average', t.exponential_moving_average),
         ('relative_strength_index', t.relative_strength_index)
) AS i(indicator, value)
WHERE i.value IS NOT NULL;

-- Edge-triggered RSI signals (specs/indicators.md).
CREATE TABLE signals (
  symbol      text             NOT NULL,
  side        text             NOT NULL CHECK (side IN ('buy', 'sell')),
  rsi         double precision NOT NULL,
  price       double precision NOT NULL,
  "timestamp" timestamptz      NOT NULL,
  seq         bigint           NOT NULL,
  created_at  timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, seq)
);
CREATE INDEX signals_timestamp ON signals ("timestamp");

-- Running aggregates over all of a symbol's ticks. Rows hold absolute values from the actor,
-- and an update only moves forward in tick_count, so a replay or a fenced-off node cannot
-- take them back in time.
CREATE TABLE aggregated_metrics (
  symbol                text             PRIMARY KEY,
  total_volume          bigint           NOT NULL,
  average_volume        double precision NOT NULL,
  average_opening_price double precision NOT NULL,
  average_closing_price double precision NOT NULL,
  lowest_price          double precision NOT NULL,
  highest_price         double precision NOT NULL,
  tick_count            bigint           NOT NULL,
  first_timestamp       timestamptz      NOT NULL,
  last_timestamp        timestamptz      NOT NULL,
  last_seq              bigint           NOT NULL,
  updated_at            timestamptz      NOT NULL DEFAULT now()
);

-- Per-minute buckets: an aggregate over any range of whole minutes is one query over these,
-- with no scan of raw ticks. Only ticks newly inserted into `ticks` are added, which keeps
-- the additive merge idempotent under replay. open/close come from the lowest/highest seq.
CREATE TABLE minute_buckets (
  symbol     text             NOT NULL,
  minute     timestamptz      NOT NULL,
  open       double precision NOT NULL,
  open_seq   bigint           NOT NULL,
  close      double precision NOT NULL,
  close_seq  bigint           NOT NULL,
  low        double precision NOT NULL,
  high       double precision NOT NULL,
  volume     bigint           NOT NULL,
  tick_count integer          NOT NULL,
  sum_open   double precision NOT NULL,
  sum_close  double precision NOT NULL,
  PRIMARY KEY (symbol, minute)
);

-- Side data, one table per message type; side_seq is the actor's per-symbol side-data counter.
CREATE TABLE order_book (
  symbol      text             NOT NULL,
  side_seq    bigint           NOT NULL,
  order_type  text             NOT NULL CHECK (order_type IN ('buy', 'sell')),
  price       double precision NOT NULL,
  quantity    bigint           NOT NULL,
  "timestamp" timestamptz      NOT NULL,
  created_at  timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, side_seq)
);

CREATE TABLE news_sentiment (
  symbol              text             NOT NULL,
  side_seq            bigint           NOT NULL,
  sentiment_score     double precision NOT NULL,
  sentiment_magnitude double precision NOT NULL,
  "timestamp"         timestamptz      NOT NULL,
  created_at          timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, side_seq)
);

CREATE TABLE market_data (
  symbol      text             NOT NULL,
  side_seq    bigint           NOT NULL,
  market_cap  double precision NOT NULL,
  pe_ratio    double precision NOT NULL,
  "timestamp" timestamptz      NOT NULL,
  created_at  timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, side_seq)
);

-- Market-wide indicators have no symbol and no actor; a message's place in the log is its identity.
CREATE TABLE economic_indicators (
  indicator_name  text             NOT NULL,
  value           double precision NOT NULL,
  "timestamp"     timestamptz      NOT NULL,
  kafka_partition integer          NOT NULL,
  kafka_offset    bigint           NOT NULL,
  created_at      timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX economic_indicators_name_timestamp ON economic_indicators (indicator_name, "timestamp");

-- Messages no actor could apply (not JSON, not a known message type, ...), with the reason.
CREATE TABLE dead_letters (
  kafka_partition integer     NOT NULL,
  kafka_offset    bigint      NOT NULL,
  message_key     text,
  payload         text,
  reason          text        NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kafka_partition, kafka_offset)
);
