/** Periods come from configuration; a zero, fractional or negative one would silently give nonsense. */
export function requirePeriod(period: number, indicator: string): number {
  if (!Number.isSafeInteger(period) || period < 1) {
    throw new RangeError(`${indicator} period must be a whole number of at least 1, got ${period}`);
  }
  return period;
}
