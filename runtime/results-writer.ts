import type { SqlClient, SqlExecutor } from "../adapters/sql/types";
import type { AggregateRow } from "./batch-outputs";
import type { BatchOutputs } from "./batch-outputs";

/**
 * Writes one batch of actor outputs to Postgres in one transaction, one multi-row statement
 * per table (arrays expanded with unnest), never a row per round trip.
 *
 * Every insert is idempotent: `(symbol, seq)` keys with ON CONFLICT DO NOTHING, aggregates that
 * only move forward in tick_count, and minute buckets fed only by the ticks this very statement
 * inserted. A replayed batch therefore changes nothing.
 */
export async function writeResults(db: SqlClient, out: BatchOutputs): Promise<void> {
  await db.transaction(async tx => {
    if (out.ticks.length > 0) await insertTicks(tx, out);
    if (out.signals.length > 0) await insertSignals(tx, out);
    if (out.aggregates.length > 0) await upsertAggregates(tx, out.aggregates);
    if (out.orderBook.length > 0) await insertOrderBook(tx, out);
    if (out.sentiment.length > 0) await insertSentiment(tx, out);
    if (out.marketData.length > 0) await insertMarketData(tx, out);
    if (out.economic.length > 0) await insertEconomic(tx, out);
    if (out.deadLetters.length > 0) await insertDeadLetters(tx, out);
  });
}

function column<T, V>(rows: T[], pick: (row: T) => V): V[] {
  const values = new Array<V>(rows.length);
  for (let i = 0; i < rows.length; i++) values[i] = pick(rows[i]);
  return values;
}

async function insertTicks(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const t = out.ticks;
  await tx.query(
    `WITH input AS (
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                            $7::float8[], $8::bigint[], $9::float8[], $10::float8[], $11::float8[], $12::bigint[],
                            $13::float8[])
         AS i(symbol, seq, ts, open, close, high, low, volume, sma, ema, rsi, kafka_offset, log_ms)
     ),
     inserted AS (
       INSERT INTO ticks (symbol, seq, "timestamp", opening_price, closing_price, high, low, volume,
                          moving_average, exponential_moving_average, relative_strength_index,
                          kafka_partition, kafka_offset, log_timestamp)
       SELECT symbol, seq, to_timestamp(ts), open, close, high, low, volume, sma, ema, rsi,
              $14::integer, kafka_offset, to_timestamp(log_ms / 1000.0)
       FROM input
       ON CONFLICT (symbol, seq) DO NOTHING
       RETURNING symbol, seq, "timestamp", opening_price, closing_price, high, low, volume
     )
     INSERT INTO minute_buckets AS b (symbol, minute, open, open_seq, close, close_seq, low, high, volume,
                                      tick_count, sum_open, sum_close)
     SELECT symbol, to_timestamp(floor(extract(epoch FROM "timestamp") / 60) * 60) AS minute,
            (array_agg(opening_price ORDER BY seq))[1], min(seq),
            (array_agg(closing_price ORDER BY seq DESC))[1], max(seq),
            min(low), max(high), sum(volume), count(*), sum(opening_price), sum(closing_price)
     FROM inserted
     GROUP BY symbol, minute
     ON CONFLICT (symbol, minute) DO UPDATE SET
       open       = CASE WHEN excluded.open_seq < b.open_seq THEN excluded.open ELSE b.open END,
       open_seq   = LEAST(b.open_seq, excluded.open_seq),
       close      = CASE WHEN excluded.close_seq > b.close_seq THEN excluded.close ELSE b.close END,
       close_seq  = GREATEST(b.close_seq, excluded.close_seq),
       low        = LEAST(b.low, excluded.low),
       high       = GREATEST(b.high, excluded.high),
       volume     = b.volume + excluded.volume,
       tick_count = b.tick_count + excluded.tick_count,
       sum_open   = b.sum_open + excluded.sum_open,
       sum_close  = b.sum_close + excluded.sum_close`,
    [
      column(t, r => r.symbol),
      column(t, r => r.seq),
      column(t, r => r.timestamp),
      column(t, r => r.open),
      column(t, r => r.close),
      column(t, r => r.high),
      column(t, r => r.low),
      column(t, r => r.volume),
      column(t, r => r.sma),
      column(t, r => r.ema),
      column(t, r => r.rsi),
      column(t, r => r.offset),
      column(t, r => r.logTimestamp),
      out.partition,
    ],
  );
}

async function insertSignals(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const s = out.signals;
  await tx.query(
    `INSERT INTO signals (symbol, side, rsi, price, "timestamp", seq)
     SELECT symbol, side, rsi, price, to_timestamp(ts), seq
     FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[], $6::bigint[])
       AS i(symbol, side, rsi, price, ts, seq)
     ON CONFLICT (symbol, seq) DO NOTHING`,
    [
      column(s, r => r.symbol),
      column(s, r => r.side),
      column(s, r => r.rsi),
      column(s, r => r.price),
      column(s, r => r.timestamp),
      column(s, r => r.seq),
    ],
  );
}

async function upsertAggregates(tx: SqlExecutor, rows: AggregateRow[]): Promise<void> {
  await tx.query(
    `INSERT INTO aggregated_metrics AS a (symbol, total_volume, average_volume, average_opening_price,
       average_closing_price, lowest_price, highest_price, tick_count, first_timestamp, last_timestamp, last_seq, updated_at)
     SELECT symbol, total_volume, average_volume, average_open, average_close, lowest, highest, tick_count,
            to_timestamp(first_ts), to_timestamp(last_ts), last_seq, now()
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[],
                 $8::bigint[], $9::float8[], $10::float8[], $11::bigint[])
       AS i(symbol, total_volume, average_volume, average_open, average_close, lowest, highest, tick_count,
            first_ts, last_ts, last_seq)
     ON CONFLICT (symbol) DO UPDATE SET
       total_volume = excluded.total_volume, average_volume = excluded.average_volume,
       average_opening_price = excluded.average_opening_price, average_closing_price = excluded.average_closing_price,
       lowest_price = excluded.lowest_price, highest_price = excluded.highest_price, tick_count = excluded.tick_count,
       first_timestamp = excluded.first_timestamp, last_timestamp = excluded.last_timestamp,
       last_seq = excluded.last_seq, updated_at = excluded.updated_at
     WHERE a.tick_count < excluded.tick_count`,
    [
      column(rows, r => r.symbol),
      column(rows, r => r.totalVolume),
      column(rows, r => r.averageVolume),
      column(rows, r => r.averageOpen),
      column(rows, r => r.averageClose),
      column(rows, r => r.lowest),
      column(rows, r => r.highest),
      column(rows, r => r.tickCount),
      column(rows, r => r.firstTimestamp),
      column(rows, r => r.lastTimestamp),
      column(rows, r => r.lastSeq),
    ],
  );
}

async function insertOrderBook(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const r = out.orderBook;
  await tx.query(
    `INSERT INTO order_book (symbol, side_seq, order_type, price, quantity, "timestamp")
     SELECT symbol, side_seq, order_type, price, quantity, to_timestamp(ts)
     FROM unnest($1::text[], $2::bigint[], $3::text[], $4::float8[], $5::bigint[], $6::float8[])
       AS i(symbol, side_seq, order_type, price, quantity, ts)
     ON CONFLICT (symbol, side_seq) DO NOTHING`,
    [
      column(r, x => x.symbol),
      column(r, x => x.sideSeq),
      column(r, x => x.orderType),
      column(r, x => x.price),
      column(r, x => x.quantity),
      column(r, x => x.timestamp),
    ],
  );
}

async function insertSentiment(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const r = out.sentiment;
  await tx.query(
    `INSERT INTO news_sentiment (symbol, side_seq, sentiment_score, sentiment_magnitude, "timestamp")
     SELECT symbol, side_seq, score, magnitude, to_timestamp(ts)
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[])
       AS i(symbol, side_seq, score, magnitude, ts)
     ON CONFLICT (symbol, side_seq) DO NOTHING`,
    [
      column(r, x => x.symbol),
      column(r, x => x.sideSeq),
      column(r, x => x.score),
      column(r, x => x.magnitude),
      column(r, x => x.timestamp),
    ],
  );
}

async function insertMarketData(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const r = out.marketData;
  await tx.query(
    `INSERT INTO market_data (symbol, side_seq, market_cap, pe_ratio, "timestamp")
     SELECT symbol, side_seq, market_cap, pe_ratio, to_timestamp(ts)
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[])
       AS i(symbol, side_seq, market_cap, pe_ratio, ts)
     ON CONFLICT (symbol, side_seq) DO NOTHING`,
    [
      column(r, x => x.symbol),
      column(r, x => x.sideSeq),
      column(r, x => x.marketCap),
      column(r, x => x.peRatio),
      column(r, x => x.timestamp),
    ],
  );
}

async function insertEconomic(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const r = out.economic;
  await tx.query(
    `INSERT INTO economic_indicators (indicator_name, value, "timestamp", kafka_partition, kafka_offset)
     SELECT name, value, to_timestamp(ts), $5::integer, kafka_offset
     FROM unnest($1::text[], $2::float8[], $3::float8[], $4::bigint[]) AS i(name, value, ts, kafka_offset)
     ON CONFLICT (kafka_partition, kafka_offset) DO NOTHING`,
    [
      column(r, x => x.name),
      column(r, x => x.value),
      column(r, x => x.timestamp),
      column(r, x => x.offset),
      out.partition,
    ],
  );
}

/**
 * Postgres text cannot hold NUL characters: a message carrying one would fail its whole batch,
 * again on every retry, and stall the partition behind it. Stored as U+FFFD, as Node already
 * does with bytes that are not UTF-8.
 */
function storableText(s: string | null): string | null {
  return s === null || !s.includes("\u0000") ? s : s.replaceAll("\u0000", "\ufffd");
}

async function insertDeadLetters(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const r = out.deadLetters;
  await tx.query(
    `INSERT INTO dead_letters (kafka_partition, kafka_offset, message_key, payload, reason)
     SELECT $5::integer, kafka_offset, message_key, payload, reason
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS i(kafka_offset, message_key, payload, reason)
     ON CONFLICT (kafka_partition, kafka_offset) DO NOTHING`,
    [
      column(r, x => x.offset),
      column(r, x => storableText(x.key)),
      column(r, x => storableText(x.payload)),
      column(r, x => storableText(x.reason)),
      out.partition,
    ],
  );
}
