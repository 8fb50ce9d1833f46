import type { SqlClient } from "../../adapters/sql/types";
import type { ReportInput } from "../../domain/backtest";
import type { Signal } from "../../domain/symbol-actor";

/**
 * The read model of the REST API (services/query.service.ts): the latest figures per symbol, a
 * symbol's history, signals, aggregates over all ticks or any range of whole minutes (one query
 * over `minute_buckets`, no tick scan), dead letters, and a symbol's replay report. Reads only.
 */
export class ResultsQueries {
  constructor(private readonly db: SqlClient) {}

  /**
   * Every symbol seen, with its running aggregates and its latest price and indicators. Volume
   * totals are read as doubles here and below: the columns are numeric (exact, migrations/004),
   * and the API answers them as the JSON numbers it gave when they were bigint, on Postgres and
   * PGlite alike.
   */
  async latestPerSymbol(): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT a.symbol, a.tick_count, a.last_seq AS seq, a.last_timestamp, t.closing_price AS close,
              t.moving_average AS sma, t.exponential_moving_average AS ema, t.relative_strength_index AS rsi,
              a.total_volume::float8 AS total_volume, a.average_volume, a.average_opening_price, a.average_closing_price,
              a.lowest_price, a.highest_price, a.first_timestamp, a.updated_at
       FROM aggregated_metrics a
       LEFT JOIN ticks t ON t.symbol = a.symbol AND t.seq = a.last_seq
       ORDER BY a.symbol`,
    );
    return rows;
  }

  /** Prices and indicators of one symbol, oldest first: the last `limit` ticks within the range. */
  async history(q: {
    symbol: string;
    from?: number;
    to?: number;
    limit: number;
  }): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT * FROM (
         SELECT seq, "timestamp", opening_price, closing_price, high, low, volume,
                moving_average, exponential_moving_average, relative_strength_index
         FROM ticks
         WHERE symbol = $1
           AND ($2::float8 IS NULL OR "timestamp" >= to_timestamp($2))
           AND ($3::float8 IS NULL OR "timestamp" < to_timestamp($3))
         ORDER BY seq DESC
         LIMIT $4
       ) recent ORDER BY seq`,
      [q.symbol, q.from ?? null, q.to ?? null, q.limit],
    );
    return rows;
  }

  /** Buy/sell signals, newest first. */
  async signals(q: {
    symbol?: string;
    from?: number;
    to?: number;
    limit: number;
  }): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT symbol, side, rsi, price, "timestamp", seq, created_at
       FROM signals
       WHERE ($1::text IS NULL OR symbol = $1)
         AND ($2::float8 IS NULL OR "timestamp" >= to_timestamp($2))
         AND ($3::float8 IS NULL OR "timestamp" < to_timestamp($3))
       ORDER BY "timestamp" DESC, symbol, seq DESC
       LIMIT $4`,
      [q.symbol ?? null, q.from ?? null, q.to ?? null, q.limit],
    );
    return rows;
  }

  /** Dead letters, newest first: where each message was, why it was not applied, and what it held. */
  async deadLetters(q: {
    partition?: number;
    kind?: string;
    limit: number;
  }): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT kafka_partition AS partition, kafka_offset AS offset, kind, reason, message_key AS key, payload, created_at
       FROM dead_letters
       WHERE ($1::int IS NULL OR kafka_partition = $1) AND ($2::text IS NULL OR kind = $2)
       ORDER BY created_at DESC, kafka_partition, kafka_offset DESC
       LIMIT $3`,
      [q.partition ?? null, q.kind ?? null, q.limit],
    );
    return rows;
  }

  /** A symbol's running aggregates over all its ticks; null when the symbol is unknown. */
  async aggregates(symbol: string): Promise<Record<string, unknown> | null> {
    const { rows } = await this.db.query(
      `SELECT symbol, tick_count, total_volume::float8 AS total_volume, average_volume, average_opening_price,
              average_closing_price, lowest_price, highest_price, first_timestamp, last_timestamp
       FROM aggregated_metrics WHERE symbol = $1`,
      [symbol],
    );
    return rows[0] ?? null;
  }

  /** Aggregates over the whole minutes from `from` (inclusive) to `to` (exclusive), from the minute buckets. */
  async aggregatesOverMinutes(
    symbol: string,
    from: number | null,
    to: number | null,
  ): Promise<Record<string, unknown>> {
    const { rows } = await this.db.query(
      `SELECT $1::text AS symbol,
              coalesce(sum(tick_count), 0)::bigint AS tick_count,
              coalesce(sum(volume), 0)::float8 AS total_volume,
              sum(volume)::float8 / nullif(sum(tick_count), 0) AS average_volume,
              sum(sum_open) / nullif(sum(tick_count), 0) AS average_opening_price,
              sum(sum_close) / nullif(sum(tick_count), 0) AS average_closing_price,
              min(low) AS lowest_price,
              max(high) AS highest_price,
              min(minute) AS first_minute,
              max(minute) AS last_minute
       FROM minute_buckets
       WHERE symbol = $1
         AND ($2::float8 IS NULL OR minute >= to_timestamp($2))
         AND ($3::float8 IS NULL OR minute < to_timestamp($3))`,
      [symbol, from, to],
    );
    return rows[0];
  }

  /**
   * What a symbol's replay report needs: its aggregates, first and last close, and every
   * signal in order. Null when the symbol is unknown. Reads the aggregates row and two ticks by
   * key, never a scan of the symbol's ticks.
   */
  async reportInput(symbol: string): Promise<ReportInput | null> {
    const { rows } = await this.db.query<{
      tick_count: number;
      first_ts: number | null;
      last_ts: number | null;
      lowest_price: number | null;
      highest_price: number | null;
      first_close: number | null;
      last_close: number | null;
    }>(
      `SELECT a.tick_count,
              extract(epoch FROM a.first_timestamp)::float8 AS first_ts,
              extract(epoch FROM a.last_timestamp)::float8 AS last_ts,
              a.lowest_price, a.highest_price,
              (SELECT closing_price FROM ticks WHERE symbol = a.symbol AND seq = 1) AS first_close,
              (SELECT closing_price FROM ticks WHERE symbol = a.symbol AND seq = a.last_seq) AS last_close
       FROM aggregated_metrics a WHERE a.symbol = $1`,
      [symbol],
    );
    if (rows.length === 0) return null;
    const a = rows[0];
    const signals = await this.db.query<{ seq: number; side: Signal["side"]; price: number; ts: number }>(
      `SELECT seq, side, price, extract(epoch FROM "timestamp")::float8 AS ts
       FROM signals WHERE symbol = $1 ORDER BY seq`,
      [symbol],
    );
    return {
      symbol,
      tickCount: a.tick_count,
      firstTimestamp: a.first_ts,
      lastTimestamp: a.last_ts,
      lowestPrice: a.lowest_price,
      highestPrice: a.highest_price,
      firstClose: a.first_close,
      lastClose: a.last_close,
      signals: signals.rows.map(s => ({ seq: s.seq, side: s.side, price: s.price, timestamp: s.ts })),
    };
  }
}
