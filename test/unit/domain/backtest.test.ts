import fc from "fast-check";
import { symbolReport, type ReportInput, type ReportSignal } from "../../../domain/backtest";

const T = 1_700_000_000;

function input(overrides: Partial<ReportInput> = {}): ReportInput {
  return {
    symbol: "SPX",
    tickCount: 100,
    firstTimestamp: T,
    lastTimestamp: T + 99 * 86400,
    lowestPrice: 40,
    highestPrice: 200,
    firstClose: 100,
    lastClose: 125,
    signals: [],
    ...overrides,
  };
}

let nextSeq = 1;
const buy = (price: number, seq = nextSeq++): ReportSignal => ({
  seq,
  side: "buy",
  price,
  timestamp: T + seq,
});
const sell = (price: number, seq = nextSeq++): ReportSignal => ({
  seq,
  side: "sell",
  price,
  timestamp: T + seq,
});

describe("symbolReport", () => {
  it("reports no trades and a 0% strategy return when there are no signals", () => {
    const r = symbolReport(input());
    expect(r).toEqual({
      symbol: "SPX",
      ticks: 100,
      signals: 0,
      buySignals: 0,
      sellSignals: 0,
      firstTimestamp: T,
      lastTimestamp: T + 99 * 86400,
      lowestPrice: 40,
      highestPrice: 200,
      strategy: { returnPct: 0, trades: 0, open: false },
      buyAndHold: { returnPct: 25 },
    });
  });

  it("earns sell/buy - 1 on one round trip", () => {
    const r = symbolReport(input({ signals: [buy(100), sell(110)] }));
    expect(r.strategy.returnPct).toBeCloseTo(10, 12);
    expect(r.strategy).toMatchObject({ trades: 1, open: false });
    expect(r).toMatchObject({ signals: 2, buySignals: 1, sellSignals: 1 });
  });

  it("compounds the whole capital over round trips: 1.1 * 1.2 = +32%", () => {
    const r = symbolReport(input({ signals: [buy(100), sell(110), buy(55), sell(66)] }));
    expect(r.strategy.returnPct).toBeCloseTo(32, 10);
    expect(r.strategy.trades).toBe(2);
  });

  it("ignores a sell while flat and a buy while long, but counts them as signals", () => {
    // sell@120 ignored (flat), buy@100 enters, buy@90 ignored (long), sell@80 exits: 80/100 - 1 = -20%.
    const r = symbolReport(input({ signals: [sell(120), buy(100), buy(90), sell(80), sell(70)] }));
    expect(r.strategy.returnPct).toBeCloseTo(-20, 10);
    expect(r.strategy).toMatchObject({ trades: 1, open: false });
    expect(r).toMatchObject({ signals: 5, buySignals: 2, sellSignals: 3 });
  });

  it("marks a position still open at the end to the last close and counts it as a trade", () => {
    // Round trip 100 -> 120 (x1.2), then buy at 150, still held at the last close 125 (x5/6): +0%.
    const r = symbolReport(input({ signals: [buy(100), sell(120), buy(150)], lastClose: 125 }));
    expect(r.strategy.returnPct).toBeCloseTo(0, 10);
    expect(r.strategy).toMatchObject({ trades: 2, open: true });

    const held = symbolReport(input({ signals: [buy(50)], lastClose: 125 }));
    expect(held.strategy).toEqual({ returnPct: 150, trades: 1, open: true });
  });

  it("takes the signals in seq order whatever order they arrive in", () => {
    const ordered = [buy(100, 5), sell(150, 9), buy(90, 12), sell(99, 20)];
    const shuffled = [ordered[2], ordered[0], ordered[3], ordered[1]];
    expect(symbolReport(input({ signals: shuffled }))).toEqual(symbolReport(input({ signals: ordered })));
    // 1.5 * 1.1 = 1.65
    expect(symbolReport(input({ signals: shuffled })).strategy.returnPct).toBeCloseTo(65, 10);
  });

  it("gives null returns for a symbol with no ticks", () => {
    const r = symbolReport({
      symbol: "NONE",
      tickCount: 0,
      firstTimestamp: null,
      lastTimestamp: null,
      lowestPrice: null,
      highestPrice: null,
      firstClose: null,
      lastClose: null,
      signals: [],
    });
    expect(r.strategy).toEqual({ returnPct: null, trades: 0, open: false });
    expect(r.buyAndHold).toEqual({ returnPct: null });
    expect(r).toMatchObject({ ticks: 0, signals: 0, firstTimestamp: null, lowestPrice: null });
  });

  it("gives a null strategy return when an open position has no last close to be marked to", () => {
    const r = symbolReport(input({ signals: [buy(100)], lastClose: null }));
    expect(r.strategy).toEqual({ returnPct: null, trades: 1, open: true });
    expect(r.buyAndHold.returnPct).toBeNull();
  });

  describe("laws", () => {
    const price = fc.double({ min: 0.01, max: 1e6, noNaN: true, noDefaultInfinity: true });
    const signal = fc.record({ side: fc.constantFrom("buy" as const, "sell" as const), price });
    const signals = fc
      .array(signal, { maxLength: 60 })
      .map(list => list.map((s, i) => ({ ...s, seq: i + 1, timestamp: T + i })));

    it("with no signals: 0% and no trades, and buy-and-hold is lastClose/firstClose - 1", () => {
      fc.assert(
        fc.property(price, price, fc.integer({ min: 1, max: 1e6 }), (first, last, ticks) => {
          const r = symbolReport(input({ tickCount: ticks, firstClose: first, lastClose: last }));
          expect(r.strategy).toEqual({ returnPct: 0, trades: 0, open: false });
          expect(r.buyAndHold.returnPct).toBe((last / first - 1) * 100);
        }),
      );
    });

    it("equals a position-by-position simulation, and never loses more than everything", () => {
      fc.assert(
        fc.property(signals, price, (list, lastClose) => {
          // Reference: pair each entry with the next opposite signal, as a trader's blotter would.
          const trips: [number, number][] = [];
          let entry: number | null = null;
          for (const s of list) {
            if (s.side === "buy" && entry === null) entry = s.price;
            else if (s.side === "sell" && entry !== null) {
              trips.push([entry, s.price]);
              entry = null;
            }
          }
          if (entry !== null) trips.push([entry, lastClose]);
          const growth = trips.reduce((g, [b, s]) => g * (s / b), 1);

          const r = symbolReport(input({ signals: list, lastClose }));
          expect(r.strategy.trades).toBe(trips.length);
          expect(r.strategy.open).toBe(entry !== null);
          expect(r.signals).toBe(list.length);
          expect(r.buySignals + r.sellSignals).toBe(list.length);
          const pct = r.strategy.returnPct as number;
          expect(Math.abs(pct - (growth - 1) * 100)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(pct)));
          expect(pct).toBeGreaterThanOrEqual(-100);
        }),
      );
    });

    it("buying on the first tick and never selling is buy-and-hold", () => {
      fc.assert(
        fc.property(price, price, (first, last) => {
          const r = symbolReport(input({ firstClose: first, lastClose: last, signals: [buy(first, 1)] }));
          expect(r.strategy.returnPct).toBe(r.buyAndHold.returnPct);
        }),
      );
    });
  });
});
