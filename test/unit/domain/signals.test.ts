import { RSI } from "../../../domain/indicators/rsi";
import { SignalDetector } from "../../../domain/signals";
import { SymbolActor } from "../../../domain/symbol-actor";
import { randomWalk, seededRandom, ticksFromCloses } from "./fixtures";
import { referenceRsi, referenceSignals } from "./reference";

const feed = (d: SignalDetector, rsi: readonly number[]) => rsi.map(r => d.update(r));

describe("SignalDetector", () => {
  it("buys on the tick RSI falls below the oversold threshold, and only then", () => {
    expect(feed(new SignalDetector(), [50, 40, 29, 25, 20, 35, 28])).toEqual([
      null,
      null,
      "buy",
      null,
      null,
      null,
      "buy",
    ]);
  });

  it("sells on the tick RSI rises above the overbought threshold, and only then", () => {
    expect(feed(new SignalDetector(), [50, 71, 80, 70, 71, 75])).toEqual([
      null,
      "sell",
      null,
      null,
      "sell",
      null,
    ]);
  });

  it("treats the thresholds themselves as outside the zones", () => {
    expect(feed(new SignalDetector(), [50, 30, 70, 30, 29.99, 70, 70.01])).toEqual([
      null,
      null,
      null,
      null,
      "buy",
      null,
      "sell",
    ]);
  });

  it("fires on the first RSI value when it is already inside a zone", () => {
    expect(new SignalDetector().update(12)).toBe("buy");
    expect(new SignalDetector().update(88)).toBe("sell");
    expect(new SignalDetector().update(50)).toBeNull();
  });

  it("fires both ways when RSI jumps straight from one zone to the other", () => {
    expect(feed(new SignalDetector(), [20, 80, 20])).toEqual(["buy", "sell", "buy"]);
  });

  it("uses configured thresholds", () => {
    expect(feed(new SignalDetector(20, 80), [25, 19, 75, 81])).toEqual([null, "buy", null, "sell"]);
  });

  it("rejects thresholds that are out of range or out of order", () => {
    expect(() => new SignalDetector(70, 30)).toThrow(RangeError);
    expect(() => new SignalDetector(50, 50)).toThrow(RangeError);
    expect(() => new SignalDetector(-1, 70)).toThrow(RangeError);
    expect(() => new SignalDetector(30, 101)).toThrow(RangeError);
  });

  it("does not fire again after a restore inside a zone", () => {
    const d = new SignalDetector();
    d.update(20);
    const restored = SignalDetector.restore(JSON.parse(JSON.stringify(d.snapshot())), 30, 70);
    expect(restored.update(15)).toBeNull();
  });

  it("fires exactly at the crossing ticks of a long RSI series (brute-force scan)", () => {
    const closes = randomWalk(seededRandom(41), 20_000, 100, 0.06);
    const n = 5;
    const rsi = new RSI(n);
    const detector = new SignalDetector();
    const got = closes.map(c => {
      const r = rsi.update(c);
      return r === null ? null : detector.update(r);
    });
    const expected = referenceSignals(referenceRsi(closes, n), 30, 70);
    expect(got).toEqual(expected);
    expect(expected.filter(s => s === "buy").length).toBeGreaterThan(100);
    expect(expected.filter(s => s === "sell").length).toBeGreaterThan(100);
  });
});

describe("signals from SymbolActor", () => {
  it("are emitted on exactly the ticks a brute-force scan of the actor's RSI finds, with that tick's data", () => {
    const random = seededRandom(42);
    const ticks = ticksFromCloses(random, "AAPL", randomWalk(random, 5_000, 100, 0.06));
    const settings = { smaPeriod: 20, emaPeriod: 20, rsiPeriod: 6, rsiOversold: 25, rsiOverbought: 75 };
    const actor = new SymbolActor("AAPL", settings);
    const outputs = ticks.map((t, i) => actor.apply(t, i));
    const rsiSeries = outputs.map(o => (o?.kind === "tick" ? o.tick.rsi : null));
    const expected = referenceSignals(rsiSeries, 25, 75);
    outputs.forEach((o, i) => {
      if (o?.kind !== "tick") throw new Error("expected a tick result");
      const side = expected[i];
      expect(o.signal).toEqual(
        side === null
          ? null
          : {
              symbol: "AAPL",
              side,
              rsi: o.tick.rsi,
              price: ticks[i].closing_price,
              timestamp: ticks[i].timestamp,
              seq: i + 1,
            },
      );
    });
    const last = outputs.map(o => (o?.kind === "tick" ? o.signal : null)).filter(s => s !== null);
    expect(last.length).toBeGreaterThan(50);
    expect(actor.view().lastSignal).toEqual(last[last.length - 1]);
  });
});
