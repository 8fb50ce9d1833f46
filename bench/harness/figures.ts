/**
 * The benches' figures: numbers with thousands separators, the median of repeated runs with its
 * min and max (a shared machine drifts between runs, so a single figure says little), percentiles.
 */

export const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** `Number(n.toFixed(digits))`: what a JSON result line holds. */
export const rounded = (n: number, digits: number) => Number(n.toFixed(digits));

export type Spread = { median: number; min: number; max: number };

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError("a spread of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

/** A spread as a JSON result line holds it: rounded, nested (`{ median, min, max }`) or flat (`key`, `key_min`, `key_max`). */
export const roundedSpread = (s: Spread, digits: number) => ({
  median: rounded(s.median, digits),
  min: rounded(s.min, digits),
  max: rounded(s.max, digits),
});
export const spreadFields = (key: string, s: Spread, digits = 0) => {
  const r = roundedSpread(s, digits);
  return { [key]: r.median, [`${key}_min`]: r.min, [`${key}_max`]: r.max };
};

/** `median (min-max)`, or with other brackets, `median [min-max]`. */
export const spreadText = (s: Spread, digits = 0, brackets = "()") =>
  `${fmt(s.median, digits)} ${brackets[0]}${fmt(s.min, digits)}-${fmt(s.max, digits)}${brackets[1]}`;

/** `median 1.86 s (min 1.74, max 2.06)`. */
export const medianMinMax = (s: Spread, digits: number, unit: string) =>
  `median ${fmt(s.median, digits)}${unit} (min ${fmt(s.min, digits)}, max ${fmt(s.max, digits)})`;

/** The nearest-rank percentiles `ps` (0 < p <= 1; 1 is the largest) of `values`. */
export function percentiles(values: readonly number[], ps: readonly number[]): number[] {
  const sorted = Float64Array.from(values).sort();
  return ps.map(p => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]);
}

/** A share as a percentage: `0.183` is `18%`; a spread of shares, `18% (12-21%)`. */
export const pct = (share: number, digits = 0) => `${(share * 100).toFixed(digits)}%`;
export const pctSpread = (s: Spread, digits = 0) =>
  `${pct(s.median, digits)} (${(s.min * 100).toFixed(digits)}-${pct(s.max, digits)})`;

/**
 * `rounds` rounds of one run of each kind, alternating which goes first, so that neither always meets
 * the warmer (or the colder) machine; the results by kind. `roundDone` sees them after each round.
 */
export async function alternating<K extends string, T>(
  rounds: number,
  kinds: readonly [K, K],
  run: (kind: K, round: number) => Promise<T>,
  roundDone?: (results: Record<K, T[]>, round: number) => void,
): Promise<Record<K, T[]>> {
  const results = Object.fromEntries(kinds.map(k => [k, []])) as unknown as Record<K, T[]>;
  for (let round = 0; round < rounds; round++) {
    for (const kind of round % 2 === 0 ? kinds : [kinds[1], kinds[0]])
      results[kind].push(await run(kind, round));
    roundDone?.(results, round);
  }
  return results;
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
