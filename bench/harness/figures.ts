/**
 * The benches' figures: numbers with thousands separators, the median of repeated runs with its
 * min and max (a shared machine drifts between runs, so a single figure says little), percentiles.
 */

export const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** `Number(n.toFixed(digits))`: what a JSON result line holds. */
export const rounded = (n: number, digits: number) => Number(n.toFixed(digits));

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError("a spread of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

/** `median (min-max)`, or with other brackets, `median [min-max]`. */
export const spreadText = (s: Spread, digits = 0, brackets = "()") =>
  `${fmt(s.median, digits)} ${brackets[0]}${fmt(s.min, digits)}-${fmt(s.max, digits)}${brackets[1]}`;

/** `median 1.86 s (min 1.74, max 2.06)`. */
export const medianMinMax = (s: Spread, digits: number, unit: string) =>
  `median ${fmt(s.median, digits)}${unit} (min ${fmt(s.min, digits)}, max ${fmt(s.max, digits)})`;

/** The nearest-rank percentile (0 < p <= 1) of values sorted in ascending order. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
