/**
 * A running sum with Neumaier's compensation (the improved Kahan summation): `compensation` carries the
 * low-order bits that each addition to `sum` rounds away, so `value` stays accurate to about one rounding
 * of the true sum instead of drifting by one rounding per addition over millions of ticks.
 *
 * Both fields are plain finite numbers, so the state survives a JSON round trip bit for bit.
 */
export interface CompensatedSumState {
  sum: number;
  compensation: number;
}

export class CompensatedSum {
  private sum = 0;
  private compensation = 0;

  add(x: number): void {
    const s = this.sum;
    const t = s + x;
    // Neumaier's branch: the operand of larger magnitude keeps its bits, so recover the smaller one's lost part.
    if ((s < 0 ? -s : s) >= (x < 0 ? -x : x)) {
      this.compensation += s - t + x;
    } else {
      this.compensation += x - t + s;
    }
    this.sum = t;
  }

  get value(): number {
    return this.sum + this.compensation;
  }

  /** False once an addition overflowed (Infinity) or met an infinite operand (NaN then follows). */
  isFinite(): boolean {
    return Number.isFinite(this.sum) && Number.isFinite(this.compensation);
  }

  /**
   * The exact sum, as a decimal string, of whole-number addends. Their roundings are whole numbers
   * too, and `compensation` holds them exactly while it stays below 2^53 in magnitude: for addends
   * up to 1e12 that is beyond 2^32 additions (each rounding is at most half a unit in the last
   * place of the sum, 2^18 at 1e12 x 2^32), so `sum + compensation` is the true sum far past 2^53,
   * where the double `value` loses units.
   */
  exactWholeSum(): string {
    if (!Number.isInteger(this.sum) || !Number.isInteger(this.compensation)) {
      throw new RangeError(`not a sum of whole numbers: ${this.sum} + ${this.compensation}`);
    }
    return (BigInt(this.sum) + BigInt(this.compensation)).toString();
  }

  reset(): void {
    this.sum = 0;
    this.compensation = 0;
  }

  snapshot(): CompensatedSumState {
    return { sum: this.sum, compensation: this.compensation };
  }

  static restore(state: CompensatedSumState): CompensatedSum {
    const s = new CompensatedSum();
    s.sum = requireFinite(state.sum, "sum");
    s.compensation = requireFinite(state.compensation, "compensation");
    return s;
  }
}

/** Snapshots come from outside the process (Redis), so a missing or mangled number must fail loudly. */
export function requireFinite(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${what} must be a finite number, got ${JSON.stringify(value)}`);
  }
  return value;
}
