import type { SqlClient } from "../../adapters/sql/types";
import type { RecomputedTick } from "../../domain/recompute";
import type { Signal, StoredTick } from "../../domain/symbol-actor";
import { column } from "./sql-rows";
import { SIGNALS } from "./results-tables";

/**
 * Rewrites stored indicators and signals (runtime/reprocess.ts, `npm run reprocess`): after a
 * change of the indicator settings, a symbol's stored ticks are recomputed in place.
 */
export class IndicatorRewrites {
  constructor(private readonly db: SqlClient) {}

  /** Every symbol with stored ticks. */
  async symbolsWithTicks(): Promise<string[]> {
    const { rows } = await this.db.query<{ symbol: string }>(
      "SELECT symbol FROM aggregated_metrics ORDER BY symbol",
    );
    return rows.map(r => r.symbol);
  }

  /**
   * Rewrites a symbol's stored indicators and signals with what `recompute` makes of its stored
   * ticks, in one transaction. The symbol's aggregates row is locked first, so an actor writing
   * the symbol's next batch waits for the rewrite and the ticks read here are all there are.
   */
  async rewriteIndicators(
    symbol: string,
    recompute: (ticks: StoredTick[]) => { ticks: RecomputedTick[]; signals: Signal[] },
  ): Promise<{ ticks: number; signals: number }> {
    return this.db.transaction(async tx => {
      await tx.query("SELECT 1 FROM aggregated_metrics WHERE symbol = $1 FOR UPDATE", [symbol]);
      const { rows } = await tx.query<StoredTick>(
        `SELECT seq, closing_price AS close, extract(epoch FROM "timestamp")::float8 AS "timestamp"
         FROM ticks WHERE symbol = $1 ORDER BY seq`,
        [symbol],
      );
      const result = recompute(rows);
      if (result.ticks.length > 0) {
        const t = result.ticks;
        await tx.query(
          `UPDATE ticks SET moving_average = i.sma, exponential_moving_average = i.ema, relative_strength_index = i.rsi
           FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::float8[]) AS i(seq, sma, ema, rsi)
           WHERE ticks.symbol = $1 AND ticks.seq = i.seq`,
          [
            symbol,
            column(t, r => r.seq),
            column(t, r => r.sma),
            column(t, r => r.ema),
            column(t, r => r.rsi),
          ],
        );
      }
      await tx.query("DELETE FROM signals WHERE symbol = $1", [symbol]);
      await SIGNALS.insert(tx, result.signals, 0);
      return { ticks: result.ticks.length, signals: result.signals.length };
    });
  }
}
