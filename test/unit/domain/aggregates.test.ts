import fc from "fast-check";
import {
  aggregateBuckets,
  BucketTick,
  bucketTicks,
  MinuteBucket,
  mergeBuckets,
  minuteOf,
  RunningAggregates,
} from "../../../domain/aggregates";
import { closeRelative, seededRandom, T0 } from "./fixtures";

const MINUTE0 = minuteOf(T0);

function tick(
  seq: number,
  timestamp: number,
  open: number,
  close: number,
  volume = 10,
  symbol = "AAPL",
): BucketTick {
  return {
    symbol,
    seq,
    timestamp,
    open,
    close,
    high: Math.max(open, close) + 1,
    low: Math.min(open, close) - 1,
    volume,
  };
}

/** What a SQL query over raw ticks would compute for one symbol and a range of whole minutes. */
function bruteForce(ticks: readonly BucketTick[], symbol: string, fromMinute: number, toMinute: number) {
  const inRange = ticks.filter(
    t => t.symbol === symbol && t.timestamp >= fromMinute && t.timestamp < toMinute + 60,
  );
  const n = inRange.length;
  const sum = (f: (t: BucketTick) => number) => inRange.reduce((s, t) => s + f(t), 0);
  return {
    tick_count: n,
    total_volume: sum(t => t.volume),
    average_volume: n ? sum(t => t.volume) / n : null,
    average_opening_price: n ? sum(t => t.open) / n : null,
    average_closing_price: n ? sum(t => t.close) / n : null,
    lowest_price: n ? Math.min(...inRange.map(t => t.low)) : null,
    highest_price: n ? Math.max(...inRange.map(t => t.high)) : null,
    first_minute: n ? minuteOf(Math.min(...inRange.map(t => t.timestamp))) : null,
    last_minute: n ? minuteOf(Math.max(...inRange.map(t => t.timestamp))) : null,
  };
}

const tickArb = (symbols: string[], minutes: number, price: fc.Arbitrary<number>) =>
  fc.record({
    symbol: fc.constantFrom(...symbols),
    minute: fc.integer({ min: 0, max: minutes - 1 }),
    second: fc.double({ min: 0, max: 59.999, noNaN: true }),
    open: price,
    close: price,
    spread: fc.integer({ min: 0, max: 5 }),
    volume: fc.nat({ max: 1_000_000 }),
  });

/** Random ticks with distinct seqs in arrival order (the array order). */
const ticksArb = (symbols: string[], minutes: number, price: fc.Arbitrary<number>, maxLength = 120) =>
  fc.array(tickArb(symbols, minutes, price), { maxLength }).map(rows =>
    rows.map((r, i): BucketTick => ({
      symbol: r.symbol,
      seq: i + 1,
      timestamp: MINUTE0 + r.minute * 60 + r.second,
      open: r.open,
      close: r.close,
      high: Math.max(r.open, r.close) + r.spread,
      low: Math.min(r.open, r.close) - r.spread / 10,
      volume: r.volume,
    })),
  );

const doublePrice = fc.double({ min: 1, max: 10_000, noNaN: true });
// Whole-number prices make every sum exact, so merge laws can be checked with strict equality.
const wholePrice = fc.integer({ min: 1, max: 10_000 });

describe("RunningAggregates", () => {
  it("has a count of 0 and no averages or extremes before the first tick", () => {
    expect(new RunningAggregates().view()).toEqual({
      tick_count: 0,
      total_volume: 0,
      average_volume: null,
      average_opening_price: null,
      average_closing_price: null,
      lowest_price: null,
      highest_price: null,
      first_timestamp: null,
      last_timestamp: null,
    });
  });

  it("sums volume, averages open and close, and keeps the lowest low and highest high", () => {
    const a = new RunningAggregates();
    a.add({ timestamp: T0 + 5, open: 10, close: 12, high: 13, low: 9, volume: 100 });
    a.add({ timestamp: T0, open: 12, close: 11, high: 12.5, low: 10.5, volume: 300 });
    a.add({ timestamp: T0 + 9, open: 11, close: 16, high: 17, low: 11, volume: 200 });
    expect(a.view()).toEqual({
      tick_count: 3,
      total_volume: 600,
      average_volume: 200,
      average_opening_price: 11,
      average_closing_price: 13,
      lowest_price: 9,
      highest_price: 17,
      first_timestamp: T0,
      last_timestamp: T0 + 9,
    });
  });

  it("equals a brute-force computation over all ticks", () => {
    const random = seededRandom(51);
    const ticks = Array.from({ length: 10_000 }, (_, i) =>
      tick(i + 1, T0 + random() * 1e5, 50 + random() * 100, 50 + random() * 100, Math.floor(random() * 1000)),
    );
    const a = new RunningAggregates();
    ticks.forEach(t => a.add(t));
    const v = a.view();
    const b = bruteForce(ticks, "AAPL", -Infinity, Infinity);
    expect([v.tick_count, v.total_volume, v.lowest_price, v.highest_price]).toEqual([
      b.tick_count,
      b.total_volume,
      b.lowest_price,
      b.highest_price,
    ]);
    expect(closeRelative(v.average_opening_price, b.average_opening_price, 1e-12)).toBe(true);
    expect(closeRelative(v.average_closing_price, b.average_closing_price, 1e-12)).toBe(true);
    expect(v.first_timestamp).toBe(Math.min(...ticks.map(t => t.timestamp)));
    expect(v.last_timestamp).toBe(Math.max(...ticks.map(t => t.timestamp)));
  });

  it("keeps the total volume exact to the unit past 2^53, across snapshots restored through JSON", () => {
    const random = seededRandom(53);
    const uninterrupted = new RunningAggregates();
    let restored = new RunningAggregates();
    let exact = 0n;
    let plain = 0;
    for (let i = 1; i <= 200_000; i++) {
      // Whole volumes up to the largest accepted, 1e12: 2^53 is passed after about 18,000 ticks.
      const volume = Math.floor(random() * 1e12) + (i % 2);
      const t = { timestamp: T0 + i, open: 10, close: 10, high: 10, low: 10, volume };
      uninterrupted.add(t);
      restored.add(t);
      exact += BigInt(volume);
      plain += volume;
      if (i % 25_000 === 0)
        restored = RunningAggregates.restore(JSON.parse(JSON.stringify(restored.snapshot())));
    }
    expect(exact).toBeGreaterThan(2n ** 53n * 10n);
    // The plain double sum has lost units on the way.
    expect(BigInt(plain)).not.toBe(exact);
    expect(restored.totalVolumeExact()).toBe(exact.toString());
    expect(uninterrupted.totalVolumeExact()).toBe(exact.toString());
    expect(restored.snapshot()).toEqual(uninterrupted.snapshot());
    expect(restored.view().total_volume).toBe(Number(exact));
  });

  it("keeps the total volume exact at 2^32 ticks' worth of the largest volume", () => {
    // The state after 2^32 ticks of 1e12, where each rounding of the sum is largest (2^18).
    const start = 2n ** 32n * 10n ** 12n;
    const a = RunningAggregates.restore({
      ...new RunningAggregates().snapshot(),
      count: 2 ** 32,
      totalVolume: Number(start),
      totalVolumeCompensation: 0,
      sumOpen: { sum: 2 ** 32 * 10, compensation: 0 },
      sumClose: { sum: 2 ** 32 * 10, compensation: 0 },
      lowest: 10,
      highest: 10,
      firstTimestamp: T0,
      lastTimestamp: T0,
    });
    const random = seededRandom(54);
    let exact = start;
    for (let i = 0; i < 100_000; i++) {
      const volume = 1e12 - Math.floor(random() * 1e6);
      a.add({ timestamp: T0, open: 10, close: 10, high: 10, low: 10, volume });
      exact += BigInt(volume);
    }
    expect(a.totalVolumeExact()).toBe(exact.toString());
    expect(a.view().total_volume).toBe(Number(exact));
  });

  it("restores a snapshot taken before the volume sum was compensated, and continues as if never stopped", () => {
    const a = new RunningAggregates();
    const ticks = Array.from({ length: 50 }, (_, i) => tick(i + 1, T0 + i, 10 + i, 11 + i, 1000 + i));
    ticks.slice(0, 20).forEach(t => a.add(t));
    // As the earlier build wrote it: `totalVolume` a plain number, and no compensation.
    const { totalVolumeCompensation, ...older } = JSON.parse(JSON.stringify(a.snapshot()));
    expect(totalVolumeCompensation).toBe(0);
    const b = RunningAggregates.restore(older);
    ticks.slice(20).forEach(t => {
      a.add(t);
      b.add(t);
    });
    expect(b.snapshot()).toEqual(a.snapshot());
    expect(b.view()).toEqual(a.view());
    expect(b.totalVolumeExact()).toBe(String(ticks.reduce((s, t) => s + t.volume, 0)));
  });

  it("refuses a snapshot whose volume compensation is not a number", () => {
    const damaged = { ...new RunningAggregates().snapshot(), totalVolumeCompensation: null };
    expect(() => RunningAggregates.restore(damaged as never)).toThrow(/totalVolumeCompensation/);
  });

  it("continues identically after a snapshot is restored through JSON", () => {
    const a = new RunningAggregates();
    a.add(tick(1, T0, 10.1, 10.3));
    const b = RunningAggregates.restore(JSON.parse(JSON.stringify(a.snapshot())));
    a.add(tick(2, T0 + 1, 10.3, 9.7));
    b.add(tick(2, T0 + 1, 10.3, 9.7));
    expect(b.snapshot()).toEqual(a.snapshot());
    expect(
      RunningAggregates.restore(JSON.parse(JSON.stringify(new RunningAggregates().snapshot()))).view(),
    ).toEqual(new RunningAggregates().view());
  });
});

describe("minute buckets", () => {
  it("floor event times to the start of their minute", () => {
    expect([minuteOf(120), minuteOf(179.999), minuteOf(180), minuteOf(T0 + 0.5)]).toEqual([
      120,
      120,
      180,
      MINUTE0,
    ]);
  });

  it("take open from the lowest seq and close from the highest seq, whatever the input order or event times", () => {
    const ticks = [
      tick(3, MINUTE0 + 1, 30, 31),
      tick(1, MINUTE0 + 50, 10, 11),
      tick(2, MINUTE0 + 10, 20, 21),
    ];
    const [b] = bucketTicks(ticks);
    expect(b).toMatchObject({
      open: 10,
      openSeq: 1,
      close: 31,
      closeSeq: 3,
      tickCount: 3,
      sumOpen: 60,
      sumClose: 63,
    });
    expect(bucketTicks([...ticks].reverse())).toEqual([b]);
  });

  it("are ordered by symbol in code-unit order, then by minute", () => {
    const buckets = bucketTicks([
      tick(1, MINUTE0 + 120, 1, 1, 1, "MSFT"),
      tick(2, MINUTE0 + 60, 1, 1, 1, "BRK.B"),
      tick(3, MINUTE0, 1, 1, 1, "MSFT"),
      tick(4, MINUTE0, 1, 1, 1, "BRK-B"),
      tick(5, MINUTE0, 1, 1, 1, "AAPL"),
    ]);
    expect(buckets.map(b => `${b.symbol}@${b.minute - MINUTE0}`)).toEqual([
      "AAPL@0",
      "BRK-B@0",
      "BRK.B@60",
      "MSFT@0",
      "MSFT@120",
    ]);
  });

  it("refuse to merge buckets of different minutes or symbols", () => {
    const [a] = bucketTicks([tick(1, MINUTE0, 1, 1)]);
    const [b] = bucketTicks([tick(2, MINUTE0 + 60, 1, 1)]);
    const [c] = bucketTicks([tick(3, MINUTE0, 1, 1, 1, "MSFT")]);
    expect(() => mergeBuckets(a, b)).toThrow(RangeError);
    expect(() => mergeBuckets(a, c)).toThrow(RangeError);
  });

  it("aggregate to nothing over an empty range", () => {
    expect(aggregateBuckets([])).toEqual({
      tick_count: 0,
      total_volume: 0,
      average_volume: null,
      average_opening_price: null,
      average_closing_price: null,
      lowest_price: null,
      highest_price: null,
      first_minute: null,
      last_minute: null,
    });
  });

  it("aggregated over any whole-minute range equal a brute-force computation over the raw ticks (property)", () => {
    fc.assert(
      fc.property(
        ticksArb(["AAPL", "MSFT"], 30, doublePrice, 200),
        fc.constantFrom("AAPL", "MSFT"),
        fc.integer({ min: -2, max: 31 }),
        fc.integer({ min: 0, max: 33 }),
        (ticks, symbol, from, length) => {
          const fromMinute = MINUTE0 + from * 60;
          const toMinute = fromMinute + length * 60;
          const inRange = bucketTicks(ticks).filter(
            b => b.symbol === symbol && b.minute >= fromMinute && b.minute <= toMinute,
          );
          const got = aggregateBuckets(inRange);
          const want = bruteForce(ticks, symbol, fromMinute, toMinute);
          const { average_opening_price: ao, average_closing_price: ac, ...exact } = got;
          const { average_opening_price: wo, average_closing_price: wc, ...wantExact } = want;
          expect(exact).toEqual(wantExact);
          expect(closeRelative(ao, wo, 1e-12) && closeRelative(ac, wc, 1e-12)).toBe(true);
        },
      ),
    );
  });

  describe("mergeBuckets", () => {
    /** One symbol, one minute, split into three disjoint batches, each bucketed on its own. */
    const threeBatches = (price: fc.Arbitrary<number>) =>
      fc
        .tuple(
          ticksArb(["AAPL"], 1, price, 40),
          fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 40, maxLength: 40 }),
        )
        .filter(([ticks, groups]) => [0, 1, 2].every(g => ticks.some((_, i) => groups[i] === g)))
        .map(([ticks, groups]) => {
          const batch = (g: number) => bucketTicks(ticks.filter((_, i) => groups[i] === g))[0];
          return { all: bucketTicks(ticks)[0], a: batch(0), b: batch(1), c: batch(2) };
        });

    it("is commutative and associative, and equals bucketing all ticks at once (property)", () => {
      fc.assert(
        fc.property(threeBatches(wholePrice), ({ all, a, b, c }) => {
          expect(mergeBuckets(a, b)).toEqual(mergeBuckets(b, a));
          expect(mergeBuckets(mergeBuckets(a, b), c)).toEqual(mergeBuckets(a, mergeBuckets(b, c)));
          expect(mergeBuckets(mergeBuckets(c, a), b)).toEqual(all);
        }),
      );
    });

    it("is exactly commutative and associative except for rounding in the price sums (property)", () => {
      const withoutSums = ({ sumOpen: _o, sumClose: _c, ...rest }: MinuteBucket) => rest;
      fc.assert(
        fc.property(threeBatches(doublePrice), ({ all, a, b, c }) => {
          expect(mergeBuckets(a, b)).toEqual(mergeBuckets(b, a));
          const left = mergeBuckets(mergeBuckets(a, b), c);
          const right = mergeBuckets(a, mergeBuckets(b, c));
          expect(withoutSums(left)).toEqual(withoutSums(right));
          expect(withoutSums(left)).toEqual(withoutSums(all));
          expect(closeRelative(left.sumOpen, right.sumOpen, 1e-14)).toBe(true);
          expect(closeRelative(left.sumClose, all.sumClose, 1e-14)).toBe(true);
        }),
      );
    });

    it("stays commutative when both buckets claim the same tick (equal seqs)", () => {
      const [a] = bucketTicks([tick(5, MINUTE0, 10, 11)]);
      const [b] = bucketTicks([tick(5, MINUTE0, 12, 9)]);
      expect(mergeBuckets(a, b)).toEqual(mergeBuckets(b, a));
    });

    it("does not change its arguments", () => {
      const [a] = bucketTicks([tick(1, MINUTE0, 10, 11)]);
      const [b] = bucketTicks([tick(2, MINUTE0 + 1, 12, 13)]);
      const before = JSON.stringify([a, b]);
      mergeBuckets(a, b);
      expect(JSON.stringify([a, b])).toBe(before);
    });
  });
});
