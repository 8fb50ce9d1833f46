import { requireFinite } from "../compensated-sum";
import { requirePeriod } from "./period";

export interface RsiState {
  /** The previous close; `null` before the first tick. */
  previousClose: number | null;
  /** Price changes seen while seeding, capped at the period. */
  changes: number;
  gainSum: number;
  lossSum: number;
  avgGain: number;
  avgLoss: number;
}

/**
 * Relative strength index, RSI(n), with Wilder's smoothing: how much of the recent price movement was upward,
 * on a 0..100 scale. Traders read below 30 as oversold (a possible rebound: buy) and above 70 as overbought
 * (a possible pull-back: sell).
 *
 * Definition: docs/indicators.md (J. Welles Wilder, 1978, as TA-Lib computes it). Changes `d[i] = c[i] - c[i-1]`;
 * the first averages are the plain means of gains and losses over changes 1..n, then Wilder's smoothing
 * `avg[i] = (avg[i-1] * (n-1) + x[i]) / n`. Defined from `i = n` on, so it needs n+1 closes. Where TA-Lib prints 0
 * the spec decides: only gains gives 100, a flat market gives 50.
 */
export class RSI {
  readonly period: number;
  private hasPrevious = false;
  private previousClose = 0;
  private changes = 0;
  private gainSum = 0;
  private lossSum = 0;
  private ready = false;
  private avgGain = 0;
  private avgLoss = 0;

  constructor(period: number) {
    this.period = requirePeriod(period, "RSI");
  }

  /** Adds the next closing price; returns the new RSI, or `null` until `period + 1` prices arrived. */
  update(close: number): number | null {
    if (!this.hasPrevious) {
      this.hasPrevious = true;
      this.previousClose = close;
      return null;
    }
    const change = close - this.previousClose;
    this.previousClose = close;
    const gain = change > 0 ? change : 0;
    const loss = change < 0 ? -change : 0;
    const n = this.period;
    if (this.ready) {
      this.avgGain = (this.avgGain * (n - 1) + gain) / n;
      this.avgLoss = (this.avgLoss * (n - 1) + loss) / n;
    } else {
      this.gainSum += gain;
      this.lossSum += loss;
      if (++this.changes < n) {
        return null;
      }
      this.avgGain = this.gainSum / n;
      this.avgLoss = this.lossSum / n;
      this.ready = true;
    }
    return rsiOf(this.avgGain, this.avgLoss);
  }

  get isStable(): boolean {
    return this.ready;
  }

  /** Whether the sums and averages are still finite numbers (a snapshot can hold nothing else). */
  isFinite(): boolean {
    return (
      Number.isFinite(this.gainSum) &&
      Number.isFinite(this.lossSum) &&
      Number.isFinite(this.avgGain) &&
      Number.isFinite(this.avgLoss)
    );
  }

  get value(): number | null {
    return this.ready ? rsiOf(this.avgGain, this.avgLoss) : null;
  }

  snapshot(): RsiState {
    return {
      previousClose: this.hasPrevious ? this.previousClose : null,
      changes: this.changes,
      gainSum: this.gainSum,
      lossSum: this.lossSum,
      avgGain: this.avgGain,
      avgLoss: this.avgLoss,
    };
  }

  static restore(state: RsiState, period: number): RSI {
    const rsi = new RSI(period);
    if (state.previousClose !== null) {
      rsi.hasPrevious = true;
      rsi.previousClose = requireFinite(state.previousClose, "RSI previousClose");
    }
    rsi.changes = requireFinite(state.changes, "RSI changes");
    if (rsi.changes > period || (rsi.changes > 0 && !rsi.hasPrevious)) {
      throw new TypeError(`RSI state is inconsistent: ${rsi.changes} changes for period ${period}`);
    }
    rsi.gainSum = requireFinite(state.gainSum, "RSI gainSum");
    rsi.lossSum = requireFinite(state.lossSum, "RSI lossSum");
    rsi.avgGain = requireFinite(state.avgGain, "RSI avgGain");
    rsi.avgLoss = requireFinite(state.avgLoss, "RSI avgLoss");
    rsi.ready = rsi.changes === period;
    return rsi;
  }
}

/** The spec's RSI from Wilder's averages, including the two cases where the ratio is undefined. */
export function rsiOf(avgGain: number, avgLoss: number): number {
  if (avgLoss === 0) {
    return avgGain > 0 ? 100 : 50;
  }
  return 100 - 100 / (1 + avgGain / avgLoss);
}
