import { CompensatedSum, CompensatedSumState, requireFinite } from "../compensated-sum";
import { requirePeriod } from "./period";

export interface SmaState {
  /** The window, oldest first; shorter than the period until the first `period` values arrived. */
  window: number[];
  sum: CompensatedSumState;
  updatesSinceResum: number;
}

/**
 * Simple moving average, SMA(n): the mean closing price of the last n ticks. Traders read it as the
 * recent "fair" price level; the price crossing it, or a short SMA crossing a long one, marks a trend change.
 *
 * Definition: docs/indicators.md (TA-Lib's SMA), `SMA[i] = (c[i-n+1] + ... + c[i]) / n` from `i = n-1` on.
 *
 * O(1) per update: a ring buffer and a running sum. A plain running sum drifts over millions of ticks, so the
 * sum is compensated (Neumaier) and, as the spec suggests, rebuilt from the window every `n * 1000` updates.
 * Compensation alone keeps the error far below 1e-9 relative for realistic lengths; the periodic rebuild
 * caps how much error can ever accumulate, whatever the length and the magnitudes, for 0.1% extra work.
 */
export class SMA {
  readonly period: number;
  private readonly window: Float64Array;
  /** Where the next value goes; once the window is full it is also the oldest value's slot. */
  private head = 0;
  private filled = 0;
  private sum = new CompensatedSum();
  private updatesSinceResum = 0;
  private readonly resumInterval: number;

  constructor(period: number) {
    this.period = requirePeriod(period, "SMA");
    this.window = new Float64Array(period);
    this.resumInterval = period * 1000;
  }

  /** Adds the next closing price; returns the new average, or `null` until `period` prices arrived. */
  update(value: number): number | null {
    const period = this.period;
    if (this.filled === period) {
      this.sum.add(-this.window[this.head]);
    } else {
      this.filled++;
    }
    this.window[this.head] = value;
    this.sum.add(value);
    this.head = this.head + 1 === period ? 0 : this.head + 1;
    if (++this.updatesSinceResum >= this.resumInterval) {
      this.resum();
    }
    return this.filled === period ? this.sum.value / period : null;
  }

  get isStable(): boolean {
    return this.filled === this.period;
  }

  /** Whether the running sum is still a finite number (a snapshot can hold nothing else). */
  isFinite(): boolean {
    return this.sum.isFinite();
  }

  /** The current average, or `null` while fewer than `period` prices arrived. */
  get value(): number | null {
    return this.filled === this.period ? this.sum.value / this.period : null;
  }

  snapshot(): SmaState {
    return {
      window: this.windowOldestFirst(),
      sum: this.sum.snapshot(),
      updatesSinceResum: this.updatesSinceResum,
    };
  }

  static restore(state: SmaState, period: number): SMA {
    const sma = new SMA(period);
    if (!Array.isArray(state.window) || state.window.length > period) {
      throw new TypeError(`SMA window must be an array of at most ${period} numbers`);
    }
    state.window.forEach((v, i) => (sma.window[i] = requireFinite(v, `SMA window[${i}]`)));
    sma.filled = state.window.length;
    sma.head = sma.filled % period;
    sma.sum = CompensatedSum.restore(state.sum);
    sma.updatesSinceResum = requireFinite(state.updatesSinceResum, "SMA updatesSinceResum");
    return sma;
  }

  /** Iterating oldest first makes the rebuilt sum, and the snapshot, independent of where the ring starts. */
  private windowOldestFirst(): number[] {
    const out: number[] = [];
    const start = this.filled === this.period ? this.head : 0;
    for (let k = 0; k < this.filled; k++) {
      out.push(this.window[(start + k) % this.period]);
    }
    return out;
  }

  private resum(): void {
    this.sum.reset();
    const start = this.filled === this.period ? this.head : 0;
    for (let k = 0; k < this.filled; k++) {
      this.sum.add(this.window[(start + k) % this.period]);
    }
    this.updatesSinceResum = 0;
  }
}
