// Per-minute candles of one symbol, built in the browser from its ticks: the REST history first,
// then the live ticks of the WebSocket. Ticks are keyed by their per-symbol `seq`, so a tick
// that arrives twice (history and live overlap, a gap refetched) counts once, and a bucket is
// the same whatever order its ticks arrive in: open from its lowest seq, close from its highest.

export const BUCKET_SECONDS = 60;

export const bucketOf = seconds => Math.floor(seconds / BUCKET_SECONDS) * BUCKET_SECONDS;

export class CandleBook {
  constructor() {
    /** bucket start (epoch seconds) -> bucket */
    this.buckets = new Map();
    this.sorted = null;
    /** Highest seq seen: a live tick above `lastSeq + 1` means the WebSocket coalesced some away. */
    this.lastSeq = 0;
    this.lastTime = null;
    this.tickCount = 0;
  }

  /** Adds a tick; returns its bucket's time, or null when the tick was already known. */
  add(tick) {
    const time = bucketOf(tick.time);
    let b = this.buckets.get(time);
    if (!b) {
      b = {
        time,
        seqs: new Set(),
        openSeq: Infinity,
        closeSeq: -Infinity,
        open: 0,
        close: 0,
        high: -Infinity,
        low: Infinity,
        volume: 0,
        sma: null,
        ema: null,
        rsi: null,
      };
      this.buckets.set(time, b);
      this.sorted = null;
    }
    if (b.seqs.has(tick.seq)) return null;
    b.seqs.add(tick.seq);
    if (tick.seq < b.openSeq) {
      b.openSeq = tick.seq;
      b.open = tick.open;
    }
    if (tick.seq > b.closeSeq) {
      // The indicators of a minute are those of its last tick, as the candle's close is.
      b.closeSeq = tick.seq;
      b.close = tick.close;
      b.sma = tick.sma;
      b.ema = tick.ema;
      b.rsi = tick.rsi;
    }
    b.high = Math.max(b.high, tick.high);
    b.low = Math.min(b.low, tick.low);
    b.volume += tick.volume;
    this.tickCount += 1;
    if (tick.seq > this.lastSeq) {
      this.lastSeq = tick.seq;
      this.lastTime = tick.time;
    }
    return time;
  }

  addAll(ticks) {
    for (const t of ticks) this.add(t);
  }

  /** Buckets, oldest first. */
  list() {
    this.sorted ??= [...this.buckets.values()].sort((a, b) => a.time - b.time);
    return this.sorted;
  }

  get(time) {
    return this.buckets.get(time) ?? null;
  }

  /** Time of the newest bucket, or null when empty. */
  lastBucketTime() {
    const all = this.list();
    return all.length > 0 ? all[all.length - 1].time : null;
  }
}
