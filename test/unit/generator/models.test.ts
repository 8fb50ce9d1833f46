import fc from "fast-check";
import { parseMessage, TICKER_PATTERN } from "../../../domain/messages";
import {
  additionalMessage,
  COURSE_SYMBOLS,
  coursePriceTick,
  createMessageSource,
  syntheticSymbols,
  walkPriceTick,
  type GeneratedMessage,
} from "../../../generator/models";
import { createRandom } from "../../../generator/random";
import { referenceRsi } from "../domain/reference";

const FIXED_NOW = () => 1_700_000_000.123456;
const PROPERTY_RUNS = { seed: 20240601, numRuns: 60 };

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};

function expectAccepted(message: GeneratedMessage): void {
  const result = parseMessage(JSON.parse(JSON.stringify(message)));
  if (!result.ok) throw new Error(`rejected ${JSON.stringify(message)}: ${JSON.stringify(result.issues)}`);
}

/** RSI(n) with Wilder smoothing as docs/indicators.md defines it, one value per close from index n. */
function rsi(closes: number[], n = 14): number[] {
  return referenceRsi(closes, n).filter((v): v is number => v !== null);
}

describe("generated messages", () => {
  it("are all accepted by the gateway's schema, for any seed, model and symbol set", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.constantFrom("iid" as const, "walk" as const),
        fc.constantFrom<readonly string[]>(COURSE_SYMBOLS, syntheticSymbols(50), [
          "BRK.B",
          "BF-B",
          "0700.HK",
        ]),
        (seed, model, symbols) => {
          const source = createMessageSource({ seed, model, symbols });
          for (let i = 0; i < 200; i++) {
            expectAccepted(source.next("price"));
            expectAccepted(source.next("additional"));
          }
        },
      ),
      PROPERTY_RUNS,
    );
  });

  it("carry epoch-second timestamps from the real clock by default", () => {
    const source = createMessageSource({ seed: 1 });
    const before = Date.now() / 1000;
    const tick = source.nextPrice();
    expect(tick.timestamp).toBeGreaterThanOrEqual(before - 1);
    expect(tick.timestamp).toBeLessThan(before + 60);
    expectAccepted(tick);
  });

  it("replay exactly for the same seed and differ for another", () => {
    const take = (seed: string | number) => {
      const source = createMessageSource({ seed, model: "walk", now: FIXED_NOW });
      return Array.from({ length: 50 }, (_, i) => source.next(i % 3 === 0 ? "additional" : "price"));
    };
    expect(take("abc")).toEqual(take("abc"));
    expect(take(7)).toEqual(take(7));
    expect(take("abc")).not.toEqual(take("abd"));
  });

  it("keep each stream's sequence independent of how the streams interleave", () => {
    const a = createMessageSource({ seed: 9, now: FIXED_NOW });
    const b = createMessageSource({ seed: 9, now: FIXED_NOW });
    const pricesA = Array.from({ length: 20 }, () => a.nextPrice());
    for (let i = 0; i < 13; i++) b.nextAdditional();
    const pricesB = Array.from({ length: 20 }, () => b.nextPrice());
    expect(pricesB).toEqual(pricesA);
  });

  it("refuse symbols the gateway would reject", () => {
    expect(() => createMessageSource({ symbols: ["aapl"] })).toThrow(/not a valid ticker/);
    expect(() => createMessageSource({ symbols: [] })).toThrow(RangeError);
  });
});

describe("the additional stream", () => {
  const rng = createRandom("additional");
  const messages = Array.from({ length: 8000 }, () => additionalMessage(rng, COURSE_SYMBOLS, FIXED_NOW()));

  it("draws the four data types with equal probability", () => {
    for (const type of ["order_book", "news_sentiment", "market_data", "economic_indicator"]) {
      const share = messages.filter(m => m.data_type === type).length / messages.length;
      expect(share).toBeGreaterThan(0.23);
      expect(share).toBeLessThan(0.27);
    }
  });

  it("sends economic indicators without a stock symbol", () => {
    const indicators = messages.filter(m => m.data_type === "economic_indicator");
    expect(indicators.length).toBeGreaterThan(0);
    const shapes = new Set(indicators.map(m => Object.keys(m).sort().join(",")));
    expect([...shapes]).toEqual(["data_type,indicator_name,timestamp,value"]);
    expect(new Set(indicators.map(m => m.indicator_name))).toEqual(new Set(["GDP Growth Rate"]));
    expect(indicators.filter(m => !(m.value >= -5 && m.value < 5))).toEqual([]);
  });

  it("keeps every field in the course's ranges, negative sentiment included", () => {
    const inRange = (m: (typeof messages)[number]): boolean => {
      switch (m.data_type) {
        case "order_book":
          return (
            (m.order_type === "buy" || m.order_type === "sell") &&
            m.price >= 100 &&
            m.price < 1000 &&
            Number.isInteger(m.quantity) &&
            m.quantity >= 1 &&
            m.quantity <= 100
          );
        case "news_sentiment":
          return Math.abs(m.sentiment_score) <= 1 && m.sentiment_magnitude >= 0 && m.sentiment_magnitude < 1;
        case "market_data":
          return m.market_cap >= 1e9 && m.market_cap < 1e12 && m.pe_ratio >= 5 && m.pe_ratio < 30;
        case "economic_indicator":
          return true;
      }
    };
    expect(messages.filter(m => !inRange(m))).toEqual([]);
    const scores = messages.flatMap(m => (m.data_type === "news_sentiment" ? [m.sentiment_score] : []));
    expect(scores.some(v => v < 0)).toBe(true);
    expect(scores.some(v => v > 0)).toBe(true);
  });
});

describe("the course's price model (iid)", () => {
  const rng = createRandom("iid");
  const ticks = Array.from({ length: 5000 }, () => coursePriceTick(rng, "AAPL", FIXED_NOW()));

  it("opens about 1000 +- 10 every time instead of walking", () => {
    const opens = ticks.map(t => t.opening_price);
    expect(Math.abs(mean(opens) - 1000)).toBeLessThan(1);
    expect(sd(opens)).toBeGreaterThan(9);
    expect(sd(opens)).toBeLessThan(11);
  });

  it("closes N(0, 10) away from the open, rounded to cents", () => {
    const moves = ticks.map(t => t.closing_price - t.opening_price);
    expect(Math.abs(mean(moves))).toBeLessThan(0.5);
    expect(sd(moves)).toBeGreaterThan(9.5);
    expect(sd(moves)).toBeLessThan(10.5);
    expect(moves.filter(m => Math.abs(m * 100 - Math.round(m * 100)) > 1e-6)).toEqual([]);
  });

  it("puts high at or above and low at or below both open and close", () => {
    const inconsistent = ticks.filter(
      t =>
        t.high < Math.max(t.opening_price, t.closing_price) ||
        t.low > Math.min(t.opening_price, t.closing_price),
    );
    expect(inconsistent).toEqual([]);
  });

  it("draws whole volumes around 5000, about 2900..7200", () => {
    const volumes = ticks.map(t => t.volume);
    expect(volumes.every(Number.isSafeInteger)).toBe(true);
    expect(Math.abs(mean(volumes) - 5000)).toBeLessThan(30);
    // Poisson(5000) * (1 + 0.1 N): sd = sqrt(5000 + 0.01 * (5000^2 + 5000)), about 505.
    expect(sd(volumes)).toBeGreaterThan(480);
    expect(sd(volumes)).toBeLessThan(530);
    expect(Math.min(...volumes)).toBeGreaterThan(2900);
    expect(Math.max(...volumes)).toBeLessThan(7200);
  });

  it("keeps RSI(14) inside 30..70, as the contract warns", () => {
    const values = rsi(ticks.map(t => t.closing_price));
    expect(values.filter(v => v < 30 || v > 70)).toHaveLength(0);
  });
});

describe("the walk price model", () => {
  const source = createMessageSource({ seed: "walk-rsi", model: "walk", symbols: ["AAPL"], now: FIXED_NOW });
  const ticks = Array.from({ length: 2000 }, () => source.nextPrice());

  it("opens each tick at the previous close of the same symbol", () => {
    const gaps = ticks.filter((t, i) => i > 0 && t.opening_price !== ticks[i - 1].closing_price);
    expect(gaps).toEqual([]);
  });

  it("makes RSI(14) leave 30..70 on both sides", () => {
    const values = rsi(ticks.map(t => t.closing_price));
    expect(values.filter(v => v < 30).length).toBeGreaterThan(10);
    expect(values.filter(v => v > 70).length).toBeGreaterThan(10);
  });

  it("keeps prices positive and high/low around the body over a long run", () => {
    const rng = createRandom("long");
    let close = 500;
    let inconsistent = 0;
    for (let i = 0; i < 100_000; i++) {
      const t = walkPriceTick(rng, "AAPL", close, 500, FIXED_NOW());
      const bodyLow = Math.min(t.opening_price, t.closing_price);
      const bodyHigh = Math.max(t.opening_price, t.closing_price);
      if (!(t.low > 0 && t.low <= bodyLow && t.high >= bodyHigh)) inconsistent++;
      close = t.closing_price;
    }
    expect(inconsistent).toBe(0);
    // The pull to the anchor keeps a long feed within a plausible band of its start.
    expect(close).toBeGreaterThan(500 / 10);
    expect(close).toBeLessThan(500 * 10);
  });

  it("walks each symbol separately", () => {
    const multi = createMessageSource({ seed: 3, model: "walk", symbols: ["A", "B"], now: FIXED_NOW });
    const last = new Map<string, number>();
    for (let i = 0; i < 500; i++) {
      const t = multi.nextPrice();
      const previous = last.get(t.stock_symbol);
      if (previous !== undefined) expect(t.opening_price).toBe(previous);
      last.set(t.stock_symbol, t.closing_price);
    }
    expect(last.size).toBe(2);
  });
});

describe("synthetic symbols", () => {
  it("numbers N tickers that match the gateway's ticker pattern", () => {
    const symbols = syntheticSymbols(1000);
    expect(symbols).toHaveLength(1000);
    expect(symbols[0]).toBe("S0001");
    expect(symbols[999]).toBe("S1000");
    expect(new Set(symbols).size).toBe(1000);
    expect(symbols.every(s => TICKER_PATTERN.test(s))).toBe(true);
    expect(syntheticSymbols(123456)[0]).toBe("S000001");
  });
});
