import { EMA } from "./indicators/ema";
import { RSI } from "./indicators/rsi";
import { SMA } from "./indicators/sma";
import { SignalDetector } from "./signals";
import type { IndicatorSettings, Signal, StoredTick } from "./symbol-actor";

/** A stored tick's indicators under some settings. */
export interface RecomputedTick {
  seq: number;
  sma: number | null;
  ema: number | null;
  rsi: number | null;
}

/**
 * A symbol's indicators and signals over its stored ticks (every one, in `seq` order) under
 * `settings`: what a `SymbolActor` configured so would have produced for each, bit for bit. Used to
 * rewrite stored results after an indicator setting changed (`npm run reprocess`).
 */
export function recomputeIndicators(
  symbol: string,
  ticks: readonly StoredTick[],
  settings: IndicatorSettings,
): { ticks: RecomputedTick[]; signals: Signal[] } {
  const sma = new SMA(settings.smaPeriod);
  const ema = new EMA(settings.emaPeriod);
  const rsi = new RSI(settings.rsiPeriod);
  const detector = new SignalDetector(settings.rsiOversold, settings.rsiOverbought);
  const out: RecomputedTick[] = new Array(ticks.length);
  const signals: Signal[] = [];
  ticks.forEach((t, i) => {
    if (t.seq !== i + 1) throw new RangeError(`${symbol}: stored tick ${i + 1} has seq ${t.seq}`);
    const r = rsi.update(t.close);
    out[i] = { seq: t.seq, sma: sma.update(t.close), ema: ema.update(t.close), rsi: r };
    if (r === null) return;
    const side = detector.update(r);
    if (side !== null)
      signals.push({ symbol, side, rsi: r, price: t.close, timestamp: t.timestamp, seq: t.seq });
  });
  return { ticks: out, signals };
}
