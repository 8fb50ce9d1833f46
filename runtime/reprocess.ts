import { recomputeIndicators } from "../domain/recompute";
import type { IndicatorSettings } from "../domain/symbol-actor";
import type { IndicatorRewrites } from "./store/reindex";

export interface ReprocessSummary {
  symbols: number;
  ticks: number;
  signals: number;
}

/**
 * Recomputes the stored indicators and signals of `symbols` (all symbols with stored ticks when
 * omitted) from their stored ticks under `settings`, one symbol per transaction. Prices, volumes,
 * aggregates and minute buckets do not depend on the settings and stay as they are. Safe while the
 * actors run: each symbol's rewrite holds its aggregates row, which the actors' next batch of
 * that symbol waits for.
 */
export async function reprocess(
  store: IndicatorRewrites,
  settings: IndicatorSettings,
  options: { symbols?: string[]; progress?: (symbol: string, done: number, total: number) => void } = {},
): Promise<ReprocessSummary> {
  const symbols = options.symbols ?? (await store.symbolsWithTicks());
  const summary: ReprocessSummary = { symbols: 0, ticks: 0, signals: 0 };
  for (const symbol of symbols) {
    const r = await store.rewriteIndicators(symbol, ticks => recomputeIndicators(symbol, ticks, settings));
    summary.symbols += 1;
    summary.ticks += r.ticks;
    summary.signals += r.signals;
    options.progress?.(symbol, summary.symbols, symbols.length);
  }
  return summary;
}
