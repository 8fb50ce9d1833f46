import { requireFinite } from "../compensated-sum";
import { requirePeriod } from "./period";

export interface EmaState {
  /** Closing prices seen while seeding, capped at the period. */
  seen: number;
  /** Sum of the first `seen` closes: the seed is their mean. */
  seedSum: number;
  /** `null` until the seed is complete. */
  ema: number | null;
}

/**
 * Exponential moving average, EMA(n): a moving average that weights recent closes more (weight
 * `alpha = 2 / (n + 1)` on the newest), so it follows a turn sooner than the SMA of the same period.
 * Traders use it like the SMA, as trend level and crossover trigger, when reaction speed matters.
 *
 * Definition: docs/indicators.md (TA-Lib's EMA): seeded with the mean of the first n closes at `i = n-1`,
 * then `EMA[i] = alpha * c[i] + (1 - alpha) * EMA[i-1]`. No value before the seed.
 */
export class EMA {
  readonly period: number;
  private readonly alpha: number;
  private readonly retain: number;
  private seen = 0;
  private seedSum = 0;
  private ready = false;
  // A number-only field (readiness kept apart) lets V8 keep it an unboxed double: no allocation per update.
  private ema = 0;

  constructor(period: number) {
    this.period = requirePeriod(period, "EMA");
    this.alpha = 2 / (period + 1);
    this.retain = 1 - this.alpha;
  }

  /** Adds the next closing price; returns the new EMA, or `null` until `period` prices arrived. */
  update(value: number): number | null {
    if (this.ready) {
      this.ema = this.alpha * value + this.retain * this.ema;
      return this.ema;
    }
    this.seedSum += value;
    if (++this.seen < this.period) {
      return null;
    }
    this.ema = this.seedSum / this.period;
    this.ready = true;
    return this.ema;
  }

  get isStable(): boolean {
    return this.ready;
  }

  /** Whether the state is still finite numbers (a snapshot can hold nothing else). */
  isFinite(): boolean {
    return Number.isFinite(this.seedSum) && Number.isFinite(this.ema);
  }

  get value(): number | null {
    return this.ready ? this.ema : null;
  }

  snapshot(): EmaState {
    return { seen: this.seen, seedSum: this.seedSum, ema: this.ready ? this.ema : null };
  }

  static restore(state: EmaState, period: number): EMA {
    const ema = new EMA(period);
    ema.seen = requireFinite(state.seen, "EMA seen");
    if (!Number.isInteger(ema.seen) || ema.seen < 0 || ema.seen > period) {
      throw new TypeError(`EMA state is inconsistent: ${ema.seen} seed values for period ${period}`);
    }
    ema.seedSum = requireFinite(state.seedSum, "EMA seedSum");
    if (state.ema !== null) {
      ema.ema = requireFinite(state.ema, "EMA value");
      ema.ready = true;
    }
    if (ema.ready !== (ema.seen === period)) {
      throw new TypeError(
        `EMA state is inconsistent: ${ema.seen} of ${period} seed values but ready=${ema.ready}`,
      );
    }
    return ema;
  }
}
