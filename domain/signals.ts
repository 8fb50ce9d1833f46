import { requireFinite } from "./compensated-sum";

export type SignalSide = "buy" | "sell";

export interface SignalDetectorState {
  /** The RSI of the previous tick that had one; `null` before the first defined RSI. */
  previousRsi: number | null;
}

/**
 * Turns the RSI series into buy and sell signals: a buy when RSI enters the oversold zone (falls below
 * `oversold`), a sell when it enters the overbought zone (rises above `overbought`).
 *
 * Definition: docs/indicators.md ("Signals"). Edge-triggered, so a trader gets one signal per entry into a
 * zone, not one per tick spent inside it. The first defined RSI counts as an entry when it is already inside a
 * zone: there is no earlier value that could have been inside it.
 */
export class SignalDetector {
  readonly oversold: number;
  readonly overbought: number;
  private hasPrevious = false;
  private previousRsi = 0;

  constructor(oversold = 30, overbought = 70) {
    if (!(oversold >= 0 && overbought <= 100 && oversold < overbought)) {
      throw new RangeError(
        `RSI thresholds must satisfy 0 <= oversold < overbought <= 100, got ${oversold} and ${overbought}`,
      );
    }
    this.oversold = oversold;
    this.overbought = overbought;
  }

  /** Feeds the next defined RSI value; returns the side of the signal this tick emits, if any. */
  update(rsi: number): SignalSide | null {
    const first = !this.hasPrevious;
    const previous = this.previousRsi;
    this.hasPrevious = true;
    this.previousRsi = rsi;
    if (rsi < this.oversold && (first || previous >= this.oversold)) {
      return "buy";
    }
    if (rsi > this.overbought && (first || previous <= this.overbought)) {
      return "sell";
    }
    return null;
  }

  snapshot(): SignalDetectorState {
    return { previousRsi: this.hasPrevious ? this.previousRsi : null };
  }

  static restore(state: SignalDetectorState, oversold: number, overbought: number): SignalDetector {
    const detector = new SignalDetector(oversold, overbought);
    if (state.previousRsi !== null) {
      detector.hasPrevious = true;
      detector.previousRsi = requireFinite(state.previousRsi, "previous RSI");
    }
    return detector;
  }
}
