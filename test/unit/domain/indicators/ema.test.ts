import fc from "fast-check";
import { EMA } from "../../../../domain/indicators/ema";
import { firstMismatch, randomWalk, seededRandom } from "../fixtures";
import { referenceEma } from "../reference";

const feed = (ema: EMA, values: readonly number[]) => values.map(v => ema.update(v));

describe("EMA", () => {
  it("is seeded with the mean of the first n closes, then weights each new close by 2/(n+1)", () => {
    // n = 3: alpha = 0.5; seed (1+2+3)/3 = 2; then 0.5*4 + 0.5*2 = 3, 0.5*5 + 0.5*3 = 4, 0.5*7 + 0.5*4 = 5.5.
    expect(feed(new EMA(3), [1, 2, 3, 4, 5, 7])).toEqual([null, null, 2, 3, 4, 5.5]);
  });

  it("of period 1 is the close itself", () => {
    expect(feed(new EMA(1), [5, 7.25, 3])).toEqual([5, 7.25, 3]);
  });

  it("is not stable and has no value before the seed", () => {
    const ema = new EMA(4);
    feed(ema, [1, 2, 3]);
    expect([ema.isStable, ema.value]).toEqual([false, null]);
    ema.update(4);
    expect([ema.isStable, ema.value]).toEqual([true, 2.5]);
  });

  it("of a constant series is that constant", () => {
    expect(feed(new EMA(5), Array(50).fill(42.5)).slice(4)).toEqual(Array(46).fill(42.5));
  });

  it("equals the full-recompute reference to 1e-9 on 10,000 random ticks", () => {
    const closes = randomWalk(seededRandom(11), 10_000);
    for (const n of [1, 2, 12, 20, 26, 200]) {
      expect(firstMismatch(feed(new EMA(n), closes), referenceEma(closes, n), 1e-9)).toBeNull();
    }
  });

  it("equals the reference for any period and any positive values (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.array(fc.double({ min: 1e-3, max: 1e9, noNaN: true }), { maxLength: 200 }),
        (n, values) => firstMismatch(feed(new EMA(n), values), referenceEma(values, n), 1e-9) === null,
      ),
    );
  });

  it("continues identically after a snapshot is restored through JSON", () => {
    const values = randomWalk(seededRandom(12), 300);
    const whole = feed(new EMA(9), values);
    for (const cut of [0, 5, 9, 150]) {
      const first = new EMA(9);
      feed(first, values.slice(0, cut));
      const restored = EMA.restore(JSON.parse(JSON.stringify(first.snapshot())), 9);
      expect(feed(restored, values.slice(cut))).toEqual(whole.slice(cut));
    }
  });
});
