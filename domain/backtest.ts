import type { SignalSide } from "./signals";

/**
 * What a symbol's history comes to: its span, its price range, its signals, and what trading on them
 * would have earned next to simply holding. Pure: the caller (GET /api/report/:symbol) reads the
 * figures from the results store and hands them in.
 */

export interface ReportSignal {
  seq: number;
  /** As the signal detector emits it (domain/signals.ts): "buy" or "sell". */
  side: SignalSide;
  /** The closing price of the tick that emitted the signal. */
  price: number;
  /** Epoch seconds. */
  timestamp: number;
}

export interface ReportInput {
  symbol: string;
  tickCount: number;
  /** Epoch seconds of the first and last tick; null with no ticks. */
  firstTimestamp: number | null;
  lastTimestamp: number | null;
  /** Lowest `low` and highest `high` over all ticks. */
  lowestPrice: number | null;
  highestPrice: number | null;
  /** Closing prices of the first and last tick (by seq). */
  firstClose: number | null;
  lastClose: number | null;
  /** Every signal of the symbol, ordered by seq. */
  signals: ReadonlyArray<ReportSignal>;
}

export interface SymbolReport {
  symbol: string;
  ticks: number;
  signals: number;
  buySignals: number;
  sellSignals: number;
  firstTimestamp: number | null;
  lastTimestamp: number | null;
  lowestPrice: number | null;
  highestPrice: number | null;
  strategy: {
    /** Percent (12.5 means +12.5%); null when there is nothing to compute it from. */
    returnPct: number | null;
    /** Completed round trips, plus 1 when a position is still open at the end. */
    trades: number;
    /** A position bought on a buy signal and not sold by the last tick (marked to the last close). */
    open: boolean;
  };
  buyAndHold: { returnPct: number | null };
}

/** Percent change of a growth factor, or null when the factor is not a finite number. */
function percent(growth: number): number | null {
  const pct = (growth - 1) * 100;
  return Number.isFinite(pct) ? pct : null;
}

const usablePrice = (p: number | null): p is number => p !== null && Number.isFinite(p) && p > 0;

/**
 * The RSI 30/70 rule as a trader would run it, long only: start flat with all the capital; a buy
 * signal while flat buys at that tick's close; a sell signal while long sells at that tick's close;
 * a sell while flat or a buy while long is ignored (no shorting, no pyramiding). Each round trip
 * reinvests the whole capital, so returns compound. A position still open after the last signal
 * is valued at the last close. No costs, slippage or dividends: it compares the signals with
 * buy-and-hold over the same ticks, not a broker statement.
 */
export function symbolReport(input: ReportInput): SymbolReport {
  const signals = isOrderedBySeq(input.signals) ? input.signals : [...input.signals].sort(bySeq);
  let buySignals = 0;
  let sellSignals = 0;
  let growth = 1;
  let entry: number | null = null;
  let roundTrips = 0;
  let computable = true;
  for (const s of signals) {
    if (s.side === "buy") {
      buySignals++;
      if (entry === null) {
        if (usablePrice(s.price)) entry = s.price;
        else computable = false;
      }
    } else {
      sellSignals++;
      if (entry !== null) {
        if (usablePrice(s.price)) growth *= s.price / entry;
        else computable = false;
        entry = null;
        roundTrips++;
      }
    }
  }
  const open = entry !== null;
  if (entry !== null) {
    if (usablePrice(input.lastClose)) growth *= input.lastClose / entry;
    else computable = false;
  }

  const hasTicks = input.tickCount > 0;
  return {
    symbol: input.symbol,
    ticks: input.tickCount,
    signals: signals.length,
    buySignals,
    sellSignals,
    firstTimestamp: input.firstTimestamp,
    lastTimestamp: input.lastTimestamp,
    lowestPrice: input.lowestPrice,
    highestPrice: input.highestPrice,
    strategy: {
      returnPct: hasTicks && computable ? percent(growth) : null,
      trades: roundTrips + (open ? 1 : 0),
      open,
    },
    buyAndHold: {
      returnPct:
        hasTicks && usablePrice(input.firstClose) && usablePrice(input.lastClose)
          ? percent(input.lastClose / input.firstClose)
          : null,
    },
  };
}

const bySeq = (a: ReportSignal, b: ReportSignal) => a.seq - b.seq;

function isOrderedBySeq(signals: ReadonlyArray<ReportSignal>): boolean {
  for (let i = 1; i < signals.length; i++) if (signals[i - 1].seq > signals[i].seq) return false;
  return true;
}
