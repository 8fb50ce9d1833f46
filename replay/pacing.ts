/**
 * When each row of a replay is due. Three paces:
 *
 * - `max`: as fast as the gateway acknowledges (every row is due at once; batches carry the order).
 * - `rate`: N rows per second, row i due at i / N s.
 * - `speed`: the rows' own time scaled down by a factor (60 = 60x real time), each gap capped at
 *   `maxGapSeconds` of wall time so that nights, weekends and holidays (or daily bars at a modest
 *   factor, where one day at 60x is 24 minutes) do not stall the replay.
 */
export type Pacing =
  | { kind: "max" }
  | { kind: "rate"; rowsPerSecond: number }
  | { kind: "speed"; factor: number; maxGapSeconds: number };

/** The longest wait between two rows at --speed unless --max-gap says otherwise. */
export const DEFAULT_MAX_GAP_SECONDS = 5;

/** A paced replay that falls this far behind (a slow or retried request) drops the backlog instead of bursting. */
export const MAX_LAG_MS = 1000;

/** `60x`, `60`, `1.5x`, `86400X`: a factor above 0. Returns null for anything else. */
export function parseSpeed(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*[xX]?\s*$/.exec(text);
  if (!m) return null;
  const factor = Number(m[1]);
  return Number.isFinite(factor) && factor > 0 ? factor : null;
}

/** Milliseconds from the first row at which each row is due; non-decreasing. */
export function scheduleOffsets(timestamps: readonly number[], pacing: Pacing): number[] {
  const offsets = new Array<number>(timestamps.length);
  switch (pacing.kind) {
    case "max":
      offsets.fill(0);
      return offsets;
    case "rate":
      for (let i = 0; i < timestamps.length; i++) offsets[i] = (i * 1000) / pacing.rowsPerSecond;
      return offsets;
    case "speed": {
      let at = 0;
      for (let i = 0; i < timestamps.length; i++) {
        if (i > 0) {
          const gapSeconds = Math.max(0, timestamps[i] - timestamps[i - 1]) / pacing.factor;
          at += Math.min(gapSeconds, pacing.maxGapSeconds) * 1000;
        }
        offsets[i] = at;
      }
      return offsets;
    }
  }
}

/**
 * Follows a schedule from row `start` on, row `start` due at `startMs` (a monotonic clock in ms).
 * Resuming at row k therefore continues at the pace, not at row 0's time.
 */
export class Pacer {
  private originMs: number;

  constructor(
    private readonly offsets: readonly number[],
    start: number,
    startMs: number,
  ) {
    this.originMs = startMs - (offsets[start] ?? 0);
  }

  /** Milliseconds until row `index` is due (0 or less: due now). */
  waitMs(index: number, nowMs: number): number {
    return this.originMs + this.offsets[index] - nowMs;
  }

  /**
   * How many rows from `index` on are due at `nowMs`: at least 1 (the caller waited for row
   * `index`), at most `max`. More than MAX_LAG_MS behind, the schedule shifts so that only the rows
   * of the last MAX_LAG_MS go out together: a pace is a pace, not a debt to be paid in one burst.
   */
  take(index: number, nowMs: number, max: number): number {
    const lag = nowMs - (this.originMs + this.offsets[index]);
    if (lag > MAX_LAG_MS) this.originMs += lag - MAX_LAG_MS;
    const end = Math.min(this.offsets.length, index + max);
    let n = 1;
    while (index + n < end && this.originMs + this.offsets[index + n] <= nowMs) n++;
    return n;
  }
}
