import { Errors, type Context, type ServiceSchema } from "moleculer";
import type { Resources } from "../adapters/resources";
import type { SqlClient } from "../adapters/sql/types";
import type { Config } from "../lib/config";
import {
  aggregatesParams,
  historyParams,
  parseParams,
  signalsParams,
  type AggregatesParams,
  type HistoryParams,
  type SignalsParams,
} from "../lib/query-params";
import { resourcesMixin } from "../mixins/resources.mixin";

/** Epoch seconds of the minute boundaries a range covers: whole minutes, from floored, to rounded up. */
export function minuteRange(from?: number, to?: number): { from: number | null; to: number | null } {
  return {
    from: from === undefined ? null : Math.floor(from / 60) * 60,
    to: to === undefined ? null : Math.ceil(to / 60) * 60,
  };
}

/**
 * Reads results from Postgres: the latest figures per symbol, a symbol's history, signals, and
 * aggregates over any range of whole minutes (one query over `minute_buckets`, no tick scan).
 */
export default function createQueryService(deps: { config: Config; resources: Resources }): ServiceSchema {
  const { resources } = deps;
  let db: SqlClient | null = null;
  const sql = () => {
    if (!db) throw new Errors.MoleculerRetryableError("query service is starting", 503, "NOT_READY");
    return db;
  };

  return {
    name: "query",
    mixins: [resourcesMixin(resources)],

    actions: {
      /** Every symbol seen, with its running aggregates and its latest price and indicators. */
      symbols: {
        async handler() {
          const { rows } = await sql().query(
            `SELECT a.symbol, a.tick_count, a.last_seq AS seq, a.last_timestamp, t.closing_price AS close,
                    t.moving_average AS sma, t.exponential_moving_average AS ema, t.relative_strength_index AS rsi,
                    a.total_volume, a.average_volume, a.average_opening_price, a.average_closing_price,
                    a.lowest_price, a.highest_price, a.first_timestamp, a.updated_at
             FROM aggregated_metrics a
             LEFT JOIN ticks t ON t.symbol = a.symbol AND t.seq = a.last_seq
             ORDER BY a.symbol`,
          );
          return rows;
        },
      },

      /** Prices and indicators of one symbol, oldest first: the last `limit` ticks within the range. */
      history: {
        async handler(ctx: Context<unknown>) {
          const p: HistoryParams = parseParams(historyParams, ctx.params);
          const { rows } = await sql().query(
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
            [p.symbol, p.from ?? null, p.to ?? null, p.limit],
          );
          return { symbol: p.symbol, from: p.from ?? null, to: p.to ?? null, ticks: rows };
        },
      },

      /** Buy/sell signals, newest first. */
      signals: {
        async handler(ctx: Context<unknown>) {
          const p: SignalsParams = parseParams(signalsParams, ctx.params);
          const { rows } = await sql().query(
            `SELECT symbol, side, rsi, price, "timestamp", seq, created_at
             FROM signals
             WHERE ($1::text IS NULL OR symbol = $1)
               AND ($2::float8 IS NULL OR "timestamp" >= to_timestamp($2))
               AND ($3::float8 IS NULL OR "timestamp" < to_timestamp($3))
             ORDER BY "timestamp" DESC, symbol, seq DESC
             LIMIT $4`,
            [p.symbol ?? null, p.from ?? null, p.to ?? null, p.limit],
          );
          return rows;
        },
      },

      /**
       * Aggregates of one symbol: over all its ticks without a range (aggregated_metrics), or over
       * the whole minutes a range covers (minute_buckets).
       */
      aggregates: {
        async handler(ctx: Context<unknown>) {
          const p: AggregatesParams = parseParams(aggregatesParams, ctx.params);
          if (p.from === undefined && p.to === undefined) {
            const { rows } = await sql().query(
              `SELECT symbol, tick_count, total_volume, average_volume, average_opening_price, average_closing_price,
                      lowest_price, highest_price, first_timestamp, last_timestamp
               FROM aggregated_metrics WHERE symbol = $1`,
              [p.symbol],
            );
            if (rows.length === 0)
              throw new Errors.MoleculerClientError(`no data for symbol ${p.symbol}`, 404, "UNKNOWN_SYMBOL");
            return { range: null, ...rows[0] };
          }
          const range = minuteRange(p.from, p.to);
          const { rows } = await sql().query(
            `SELECT $1::text AS symbol,
                    coalesce(sum(tick_count), 0)::bigint AS tick_count,
                    coalesce(sum(volume), 0)::bigint AS total_volume,
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
            [p.symbol, range.from, range.to],
          );
          return {
            range: {
              from: range.from === null ? null : new Date(range.from * 1000).toISOString(),
              to: range.to === null ? null : new Date(range.to * 1000).toISOString(),
            },
            ...rows[0],
          };
        },
      },
    },

    async started() {
      db = await resources.sql();
    },

    stopped() {
      db = null;
    },
  };
}
