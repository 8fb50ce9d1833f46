import { CompensatedSum, CompensatedSumState, requireFinite } from "./compensated-sum";

/** The fields of a price tick that the aggregates read (a `TickResult` has them all). */
export interface AggregateTick {
  timestamp: number;
  open: number;
  close: number;
  high: number;
  low: number;
  volume: number;
}

/** What bucketing needs on top: the symbol, and the per-symbol sequence number that orders ticks. */
export interface BucketTick extends AggregateTick {
  symbol: string;
  seq: number;
}

/**
 * The seed's aggregation figures, named like the `aggregated_metrics` columns. Averages and extremes are
 * `null` over no ticks: there is no honest number to show.
 */
export interface AggregateFigures {
  tick_count: number;
  total_volume: number;
  average_volume: number | null;
  average_opening_price: number | null;
  average_closing_price: number | null;
  lowest_price: number | null;
  highest_price: number | null;
}

/** A symbol's aggregates over all its ticks so far. */
export interface RunningAggregateView extends AggregateFigures {
  /** Earliest event time seen (epoch seconds), which is not necessarily the first tick to arrive. */
  first_timestamp: number | null;
  /** Latest event time seen (epoch seconds). */
  last_timestamp: number | null;
}

/** Aggregates over a range of whole minutes, computed from minute buckets. */
export interface RangeAggregate extends AggregateFigures {
  /** Start of the earliest bucket in the range (epoch seconds, a multiple of 60). */
  first_minute: number | null;
  /** Start of the latest bucket in the range. */
  last_minute: number | null;
}

export interface RunningAggregatesState {
  count: number;
  /** The compensated volume sum's running `sum`: in snapshots taken before it was compensated, the plain sum. */
  totalVolume: number;
  /** Its compensation, the units `totalVolume` rounded away past 2^53. Absent (0) in those older snapshots. */
  totalVolumeCompensation?: number;
  sumOpen: CompensatedSumState;
  sumClose: CompensatedSumState;
  /** The four extremes are `null` while `count` is 0 (JSON has no Infinity to start them from). */
  lowest: number | null;
  highest: number | null;
  firstTimestamp: number | null;
  lastTimestamp: number | null;
}

/**
 * Running aggregates of one symbol (docs/indicators.md, "Running aggregates"): totals and sums, O(1) per tick,
 * averages derived on read. Price sums are compensated so averages over millions of ticks do not drift. The
 * volume sum is compensated too: volumes are whole numbers, whose plain double sum is exact only up to 2^53
 * (9,008 ticks at the largest volume accepted, 1e12), and with the compensation the total stays exact
 * (`totalVolumeExact`) far beyond, for the `numeric` column it is stored in.
 */
export class RunningAggregates {
  private count = 0;
  private totalVolume = new CompensatedSum();
  private sumOpen = new CompensatedSum();
  private sumClose = new CompensatedSum();
  private lowest = 0;
  private highest = 0;
  private firstTimestamp = 0;
  private lastTimestamp = 0;

  add(tick: AggregateTick): void {
    if (this.count === 0) {
      this.lowest = tick.low;
      this.highest = tick.high;
      this.firstTimestamp = tick.timestamp;
      this.lastTimestamp = tick.timestamp;
    } else {
      if (tick.low < this.lowest) this.lowest = tick.low;
      if (tick.high > this.highest) this.highest = tick.high;
      if (tick.timestamp < this.firstTimestamp) this.firstTimestamp = tick.timestamp;
      if (tick.timestamp > this.lastTimestamp) this.lastTimestamp = tick.timestamp;
    }
    this.count++;
    this.totalVolume.add(tick.volume);
    this.sumOpen.add(tick.open);
    this.sumClose.add(tick.close);
  }

  get tickCount(): number {
    return this.count;
  }

  /** Whether the totals and sums are still finite numbers (a snapshot can hold nothing else). */
  isFinite(): boolean {
    return this.totalVolume.isFinite() && this.sumOpen.isFinite() && this.sumClose.isFinite();
  }

  /** The total volume to the unit, as a decimal string; `view().total_volume` is the nearest double. */
  totalVolumeExact(): string {
    return this.totalVolume.exactWholeSum();
  }

  view(): RunningAggregateView {
    const n = this.count;
    const any = n > 0;
    const volume = this.totalVolume.value;
    return {
      tick_count: n,
      total_volume: volume,
      average_volume: any ? volume / n : null,
      average_opening_price: any ? this.sumOpen.value / n : null,
      average_closing_price: any ? this.sumClose.value / n : null,
      lowest_price: any ? this.lowest : null,
      highest_price: any ? this.highest : null,
      first_timestamp: any ? this.firstTimestamp : null,
      last_timestamp: any ? this.lastTimestamp : null,
    };
  }

  snapshot(): RunningAggregatesState {
    const any = this.count > 0;
    const volume = this.totalVolume.snapshot();
    return {
      count: this.count,
      totalVolume: volume.sum,
      totalVolumeCompensation: volume.compensation,
      sumOpen: this.sumOpen.snapshot(),
      sumClose: this.sumClose.snapshot(),
      lowest: any ? this.lowest : null,
      highest: any ? this.highest : null,
      firstTimestamp: any ? this.firstTimestamp : null,
      lastTimestamp: any ? this.lastTimestamp : null,
    };
  }

  static restore(state: RunningAggregatesState): RunningAggregates {
    const a = new RunningAggregates();
    a.count = requireFinite(state.count, "aggregates count");
    a.totalVolume = CompensatedSum.restore({
      sum: requireFinite(state.totalVolume, "aggregates totalVolume"),
      // Absent in a snapshot taken before the sum was compensated; null (a NaN gone through JSON) is damage.
      compensation:
        state.totalVolumeCompensation === undefined
          ? 0
          : requireFinite(state.totalVolumeCompensation, "aggregates totalVolumeCompensation"),
    });
    a.sumOpen = CompensatedSum.restore(state.sumOpen);
    a.sumClose = CompensatedSum.restore(state.sumClose);
    if (a.count > 0) {
      a.lowest = requireFinite(state.lowest, "aggregates lowest");
      a.highest = requireFinite(state.highest, "aggregates highest");
      a.firstTimestamp = requireFinite(state.firstTimestamp, "aggregates firstTimestamp");
      a.lastTimestamp = requireFinite(state.lastTimestamp, "aggregates lastTimestamp");
    }
    return a;
  }
}

/**
 * One symbol's ticks within one minute, reduced to what any range aggregate needs, so a query over a range of
 * whole minutes reads buckets, never raw ticks (docs/indicators.md, "Minute buckets and time-range aggregates").
 *
 * `open` is the opening price of the bucket's tick with the lowest `seq`, `close` the closing price of the one
 * with the highest: arrival order, the order every other figure of the symbol follows. Keeping the deciding
 * `seq`s is what makes buckets of separately processed batches mergeable.
 */
export interface MinuteBucket {
  symbol: string;
  /** Epoch seconds at the start of the minute: `Math.floor(timestamp / 60) * 60`. */
  minute: number;
  open: number;
  openSeq: number;
  close: number;
  closeSeq: number;
  low: number;
  high: number;
  volume: number;
  tickCount: number;
  sumOpen: number;
  sumClose: number;
}

/** The start of the minute an event time (epoch seconds) falls in. */
export function minuteOf(timestamp: number): number {
  return Math.floor(timestamp / 60) * 60;
}

/**
 * Buckets a batch of ticks by symbol and minute: the one implementation, which the results store writes
 * `minute_buckets` with. The output is ordered by symbol (code-unit order, not the locale's) and then minute,
 * so equal input gives equal output on every node. Price sums accumulate in input order. `minuteOfTick` says
 * which minute a tick's time falls in: the store passes the minute of the time as Postgres stores it (to the
 * microsecond), which differs from `minuteOf` only within half a microsecond of a minute's start.
 */
export function bucketTicks(
  ticks: readonly BucketTick[],
  minuteOfTick: (timestamp: number) => number = minuteOf,
): MinuteBucket[] {
  const byKey = new Map<string, MinuteBucket>();
  for (const t of ticks) {
    const minute = minuteOfTick(t.timestamp);
    const key = `${t.symbol}\u0000${minute}`;
    const bucket = byKey.get(key);
    if (bucket === undefined) {
      byKey.set(key, {
        symbol: t.symbol,
        minute,
        open: t.open,
        openSeq: t.seq,
        close: t.close,
        closeSeq: t.seq,
        low: t.low,
        high: t.high,
        volume: t.volume,
        tickCount: 1,
        sumOpen: t.open,
        sumClose: t.close,
      });
    } else {
      absorb(bucket, t.seq, t.open, t.seq, t.close, t.low, t.high, t.volume, 1, t.open, t.close);
    }
  }
  return [...byKey.values()].sort(compareBuckets);
}

/**
 * Combines two buckets of the same symbol and minute, as if their ticks had been bucketed together. Commutative
 * and associative, so batches can be folded into stored buckets in any grouping. For `sumOpen`/`sumClose` that
 * holds up to floating-point rounding (exactly whenever the sums are exact, e.g. for whole-number prices).
 */
export function mergeBuckets(a: MinuteBucket, b: MinuteBucket): MinuteBucket {
  if (a.symbol !== b.symbol || a.minute !== b.minute) {
    throw new RangeError(`cannot merge bucket ${a.symbol}@${a.minute} with ${b.symbol}@${b.minute}`);
  }
  const merged = { ...a };
  absorb(
    merged,
    b.openSeq,
    b.open,
    b.closeSeq,
    b.close,
    b.low,
    b.high,
    b.volume,
    b.tickCount,
    b.sumOpen,
    b.sumClose,
  );
  return merged;
}

/**
 * The aggregate of a time range from its minute buckets: the buckets of one symbol whose `minute` lies in the
 * range. Sums run in the given order, so pass buckets in a fixed order (e.g. by minute) for reproducible digits.
 */
export function aggregateBuckets(buckets: readonly MinuteBucket[]): RangeAggregate {
  let count = 0;
  let volume = 0;
  let sumOpen = 0;
  let sumClose = 0;
  let lowest = Infinity;
  let highest = -Infinity;
  let firstMinute = Infinity;
  let lastMinute = -Infinity;
  for (const b of buckets) {
    count += b.tickCount;
    volume += b.volume;
    sumOpen += b.sumOpen;
    sumClose += b.sumClose;
    if (b.low < lowest) lowest = b.low;
    if (b.high > highest) highest = b.high;
    if (b.minute < firstMinute) firstMinute = b.minute;
    if (b.minute > lastMinute) lastMinute = b.minute;
  }
  const any = count > 0;
  return {
    tick_count: count,
    total_volume: volume,
    average_volume: any ? volume / count : null,
    average_opening_price: any ? sumOpen / count : null,
    average_closing_price: any ? sumClose / count : null,
    lowest_price: any ? lowest : null,
    highest_price: any ? highest : null,
    first_minute: any ? firstMinute : null,
    last_minute: any ? lastMinute : null,
  };
}

function compareBuckets(a: MinuteBucket, b: MinuteBucket): number {
  if (a.symbol !== b.symbol) return a.symbol < b.symbol ? -1 : 1;
  return a.minute - b.minute;
}

/**
 * Folds ticks into `target`. On equal seqs (the same tick counted twice, which disjoint batches never do) the
 * tie goes to the lower open and the higher close, only so that the result does not depend on argument order.
 */
function absorb(
  target: MinuteBucket,
  openSeq: number,
  open: number,
  closeSeq: number,
  close: number,
  low: number,
  high: number,
  volume: number,
  tickCount: number,
  sumOpen: number,
  sumClose: number,
): void {
  if (openSeq < target.openSeq || (openSeq === target.openSeq && open < target.open)) {
    target.openSeq = openSeq;
    target.open = open;
  }
  if (closeSeq > target.closeSeq || (closeSeq === target.closeSeq && close > target.close)) {
    target.closeSeq = closeSeq;
    target.close = close;
  }
  if (low < target.low) target.low = low;
  if (high > target.high) target.high = high;
  target.volume += volume;
  target.tickCount += tickCount;
  target.sumOpen += sumOpen;
  target.sumClose += sumClose;
}
