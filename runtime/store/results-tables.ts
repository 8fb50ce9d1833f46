import type { SqlExecutor } from "../../adapters/sql/types";
import { bucketTicks, type MinuteBucket } from "../../domain/aggregates";
import type { Signal } from "../../domain/symbol-actor";
import type {
  AggregateRow,
  BatchOutputs,
  DeadLetterRow,
  EconomicRow,
  MarketDataRow,
  OrderBookRow,
  SentimentRow,
  TickRow,
} from "../batch-outputs";
import { column, storableText, timestamp, UnnestInsert } from "./sql-rows";
import { storedMinute, TICK_COLUMNS, tickCopyData } from "./ticks-copy";

/**
 * The statements that write the results tables (ticks, minute_buckets, signals,
 * aggregated_metrics, side data, economic_indicators, dead_letters), each idempotent:
 * `(symbol, seq)` and log-position keys with ON CONFLICT DO NOTHING, aggregates that only move
 * forward in tick_count, and minute buckets fed only by the ticks just inserted. A replayed
 * chunk therefore changes nothing.
 */

export const SIGNALS = new UnnestInsert<Signal>(
  "signals",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side", type: "text", value: r => r.side },
    { name: "rsi", type: "float8", value: r => r.rsi },
    { name: "price", type: "float8", value: r => r.price },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
    { name: "seq", type: "bigint", value: r => r.seq },
  ],
  "symbol, seq",
  false,
  // The actor host publishes only the signals a batch inserted first.
  true,
);

export const ORDER_BOOK = new UnnestInsert<OrderBookRow>(
  "order_book",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side_seq", type: "bigint", value: r => r.sideSeq },
    { name: "order_type", type: "text", value: r => r.orderType },
    { name: "price", type: "float8", value: r => r.price },
    { name: "quantity", type: "bigint", value: r => r.quantity },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
  ],
  "symbol, side_seq",
);

export const SENTIMENT = new UnnestInsert<SentimentRow>(
  "news_sentiment",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side_seq", type: "bigint", value: r => r.sideSeq },
    { name: "sentiment_score", type: "float8", value: r => r.score },
    { name: "sentiment_magnitude", type: "float8", value: r => r.magnitude },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
  ],
  "symbol, side_seq",
);

export const MARKET_DATA = new UnnestInsert<MarketDataRow>(
  "market_data",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side_seq", type: "bigint", value: r => r.sideSeq },
    { name: "market_cap", type: "float8", value: r => r.marketCap },
    { name: "pe_ratio", type: "float8", value: r => r.peRatio },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
  ],
  "symbol, side_seq",
);

export const ECONOMIC = new UnnestInsert<EconomicRow>(
  "economic_indicators",
  [
    { name: "indicator_name", type: "text", value: r => r.name },
    { name: "value", type: "float8", value: r => r.value },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
    { name: "kafka_offset", type: "bigint", value: r => r.offset },
  ],
  "kafka_partition, kafka_offset",
  true,
);

export const DEAD_LETTERS = new UnnestInsert<DeadLetterRow>(
  "dead_letters",
  [
    { name: "kafka_offset", type: "bigint", value: r => r.offset },
    { name: "message_key", type: "text", value: r => storableText(r.key) },
    { name: "payload", type: "text", value: r => storableText(r.payload) },
    { name: "reason", type: "text", value: r => storableText(r.reason) },
    { name: "kind", type: "text", value: r => r.kind },
  ],
  "kafka_partition, kafka_offset",
  true,
);

/** How a minute's partial bucket joins the stored one: additive, open and close by seq. */
const MERGE_BUCKETS = `ON CONFLICT (symbol, minute) DO UPDATE SET
       open       = CASE WHEN excluded.open_seq < b.open_seq THEN excluded.open ELSE b.open END,
       open_seq   = LEAST(b.open_seq, excluded.open_seq),
       close      = CASE WHEN excluded.close_seq > b.close_seq THEN excluded.close ELSE b.close END,
       close_seq  = GREATEST(b.close_seq, excluded.close_seq),
       low        = LEAST(b.low, excluded.low),
       high       = GREATEST(b.high, excluded.high),
       volume     = b.volume + excluded.volume,
       tick_count = b.tick_count + excluded.tick_count,
       sum_open   = b.sum_open + excluded.sum_open,
       sum_close  = b.sum_close + excluded.sum_close`;

/**
 * Ticks that are all new (above their partitions' written offsets), of one or several
 * partitions: appended with one COPY, and their minute buckets merged.
 */
export async function appendTicks(tx: SqlExecutor, parts: readonly BatchOutputs[]): Promise<void> {
  await tx.copyFrom("ticks", TICK_COLUMNS, tickCopyData(parts));
  await upsertBuckets(tx, bucketRows(parts.flatMap(p => p.ticks)));
}

/**
 * Ticks of a replayed chunk: inserted with the conflict check, and only those that were not
 * stored yet feed their minute buckets (a tick already stored adds nothing to its bucket).
 */
export async function insertTicks(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const t = out.ticks;
  const { rows } = await tx.query<{ symbol: string; seq: string | number }>(
    `INSERT INTO ticks (symbol, seq, "timestamp", opening_price, closing_price, high, low, volume,
                        moving_average, exponential_moving_average, relative_strength_index,
                        kafka_partition, kafka_offset, log_timestamp)
     SELECT symbol, seq, to_timestamp(ts), open, close, high, low, volume, sma, ema, rsi,
            $14::integer, kafka_offset, to_timestamp(log_ms / 1000.0)
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                 $7::float8[], $8::bigint[], $9::float8[], $10::float8[], $11::float8[], $12::bigint[],
                 $13::float8[])
       AS i(symbol, seq, ts, open, close, high, low, volume, sma, ema, rsi, kafka_offset, log_ms)
     ON CONFLICT (symbol, seq) DO NOTHING
     RETURNING symbol, seq`,
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
  if (rows.length === 0) return;
  const inserted = new Set(rows.map(r => `${r.symbol}\u0000${Number(r.seq)}`));
  const fresh = rows.length === t.length ? t : t.filter(r => inserted.has(`${r.symbol}\u0000${r.seq}`));
  await upsertBuckets(tx, bucketRows(fresh));
}

/** A bucket as written: its volume a decimal string once past 2^53 (see `bucketRows`). */
type BucketRow = Omit<MinuteBucket, "volume"> & { volume: number | string };

/**
 * The ticks' per-minute buckets (symbol, minute; the minute of each tick's time as Postgres
 * stores it), summed in the ticks' order (domain/aggregates.ts, `bucketTicks`). A bucket's volume
 * is a double sum of whole numbers, exact while it stays below 2^53: always for the host's chunks
 * of 2,000 ticks (2e15 at most, at the largest volume accepted, 1e12). Volumes are never
 * negative, so a sum that passed 2^53 is no longer a safe integer; such a bucket is summed again
 * exactly, for the `numeric` column.
 */
function bucketRows(ticks: readonly TickRow[]): BucketRow[] {
  return bucketTicks(ticks, storedMinute).map(b =>
    Number.isSafeInteger(b.volume) ? b : { ...b, volume: exactVolume(ticks, b.symbol, b.minute) },
  );
}

function exactVolume(ticks: readonly TickRow[], symbol: string, minute: number): string {
  let total = 0n;
  for (const t of ticks)
    if (t.symbol === symbol && storedMinute(t.timestamp) === minute) total += BigInt(t.volume);
  return total.toString();
}

async function upsertBuckets(tx: SqlExecutor, rows: BucketRow[]): Promise<void> {
  await tx.query(
    `INSERT INTO minute_buckets AS b (symbol, minute, open, open_seq, close, close_seq, low, high, volume,
                                      tick_count, sum_open, sum_close)
     SELECT symbol, to_timestamp(minute), open, open_seq, close, close_seq, low, high, volume, tick_count,
            sum_open, sum_close
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::bigint[], $5::float8[], $6::bigint[], $7::float8[],
                 $8::float8[], $9::numeric[], $10::bigint[], $11::float8[], $12::float8[])
       AS i(symbol, minute, open, open_seq, close, close_seq, low, high, volume, tick_count, sum_open, sum_close)
     ${MERGE_BUCKETS}`,
    [
      column(rows, r => r.symbol),
      column(rows, r => r.minute),
      column(rows, r => r.open),
      column(rows, r => r.openSeq),
      column(rows, r => r.close),
      column(rows, r => r.closeSeq),
      column(rows, r => r.low),
      column(rows, r => r.high),
      column(rows, r => r.volume),
      column(rows, r => r.tickCount),
      column(rows, r => r.sumOpen),
      column(rows, r => r.sumClose),
    ],
  );
}

export async function upsertAggregates(tx: SqlExecutor, rows: AggregateRow[]): Promise<void> {
  await tx.query(
    `INSERT INTO aggregated_metrics AS a (symbol, total_volume, average_volume, average_opening_price,
       average_closing_price, lowest_price, highest_price, tick_count, first_timestamp, last_timestamp, last_seq, updated_at)
     SELECT symbol, total_volume, average_volume, average_open, average_close, lowest, highest, tick_count,
            to_timestamp(first_ts), to_timestamp(last_ts), last_seq, now()
     FROM unnest($1::text[], $2::numeric[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[],
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
