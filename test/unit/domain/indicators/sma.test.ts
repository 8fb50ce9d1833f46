import fc from "fast-check";
import { SMA } from "../../../../domain/indicators/sma";
import { firstMismatch, randomWalk, seededRandom } from "../fixtures";
import { referenceSma } from "../reference";

const feed = (sma: SMA, values: readonly number[]) => values.map(v => sma.update(v));

describe("SMA", () => {
  it("is null until the window is full, then the mean of the last n closes", () => {
    const sma = new SMA(3);
    expect(feed(sma, [1, 2, 3, 4, 5, 10])).toEqual([null, null, 2, 3, 4, (4 + 5 + 10) / 3]);
  });

  it("becomes stable exactly when the n-th value arrives", () => {
    const sma = new SMA(2);
    expect(sma.isStable).toBe(false);
    sma.update(1);
    expect([sma.isStable, sma.value]).toEqual([false, null]);
    sma.update(2);
    expect([sma.isStable, sma.value]).toEqual([true, 1.5]);
  });

  it("of period 1 is the close itself", () => {
    const sma = new SMA(1);
    expect(feed(sma, [5, 7.25, 3])).toEqual([5, 7.25, 3]);
  });

  it("rejects a period that is not a whole number of at least 1", () => {
    expect(() => new SMA(0)).toThrow(RangeError);
    expect(() => new SMA(2.5)).toThrow(RangeError);
  });

  it("equals the full-recompute reference to 1e-9 on 10,000 random ticks", () => {
    const closes = randomWalk(seededRandom(1), 10_000);
    for (const n of [1, 2, 14, 20, 50, 200]) {
      expect(firstMismatch(feed(new SMA(n), closes), referenceSma(closes, n), 1e-9)).toBeNull();
    }
  });

  it("equals the reference for any period and any positive values (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.array(fc.double({ min: 1e-3, max: 1e9, noNaN: true }), { maxLength: 200 }),
        (n, values) => firstMismatch(feed(new SMA(n), values), referenceSma(values, n), 1e-9) === null,
      ),
    );
  });

  it("continues identically after a snapshot is restored through JSON", () => {
    const values = randomWalk(seededRandom(2), 500);
    const whole = feed(new SMA(7), values);
    for (const cut of [0, 3, 7, 250]) {
      const first = new SMA(7);
      feed(first, values.slice(0, cut));
      const restored = SMA.restore(JSON.parse(JSON.stringify(first.snapshot())), 7);
      expect(feed(restored, values.slice(cut))).toEqual(whole.slice(cut));
    }
  });

  it("stays within 1e-9 of a fresh window sum after 3 million large-magnitude updates", () => {
    const n = 20;
    const count = 3_000_000;
    const random = seededRandom(3);
    const values = new Float64Array(count);
    // Magnitudes from 1e4 to 1e12 with full random mantissas, ending on a window of small values: a plain
    // running sum keeps the big values' rounding errors forever and is visibly wrong there.
    for (let i = 0; i < count - n; i++) values[i] = 10 ** (4 + 8 * random());
    for (let i = count - n; i < count; i++) values[i] = 1 + random();

    const sma = new SMA(n);
    let naiveSum = 0;
    let worst = 0;
    for (let i = 0; i < count; i++) {
      const v = values[i];
      const got = sma.update(v);
      naiveSum += v - (i >= n ? values[i - n] : 0);
      if (got !== null && (i % 100_003 === 0 || i >= count - n)) {
        let fresh = 0;
        for (let k = i - n + 1; k <= i; k++) fresh += values[k];
        worst = Math.max(worst, Math.abs(got - fresh / n) / (fresh / n));
      }
    }
    let fresh = 0;
    for (let k = count - n; k < count; k++) fresh += values[k];
    expect(worst).toBeLessThan(1e-9);
    expect(Math.abs(naiveSum - fresh) / fresh).toBeGreaterThan(1e-9);
  });
});
