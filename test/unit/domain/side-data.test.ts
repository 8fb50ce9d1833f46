import { applySideData, emptySideData } from "../../../domain/side-data";
import { orderBook, T0 } from "./fixtures";

describe("side data", () => {
  it("keeps the latest order-book entry of each side separately", () => {
    let s = emptySideData();
    s = applySideData(s, orderBook("AAPL", "buy", 100, 5, T0));
    s = applySideData(s, orderBook("AAPL", "sell", 101, 7, T0 + 1));
    s = applySideData(s, orderBook("AAPL", "buy", 99.5, 2, T0 + 2));
    expect(s.orderBook).toEqual({
      buy: { price: 99.5, quantity: 2, timestamp: T0 + 2 },
      sell: { price: 101, quantity: 7, timestamp: T0 + 1 },
    });
  });

  it("keeps the latest news sentiment and market data", () => {
    let s = emptySideData();
    s = applySideData(s, {
      data_type: "news_sentiment",
      stock_symbol: "AAPL",
      sentiment_score: 0.4,
      sentiment_magnitude: 2,
      timestamp: T0,
    });
    s = applySideData(s, {
      data_type: "market_data",
      stock_symbol: "AAPL",
      market_cap: 3e12,
      pe_ratio: 31.2,
      timestamp: T0 + 1,
    });
    expect(s.newsSentiment).toEqual({ score: 0.4, magnitude: 2, timestamp: T0 });
    expect(s.marketData).toEqual({ marketCap: 3e12, peRatio: 31.2, timestamp: T0 + 1 });
    expect(s.orderBook).toEqual({ buy: null, sell: null });
  });

  it("replaces the state instead of changing the one passed in", () => {
    const before = emptySideData();
    const after = applySideData(before, orderBook("AAPL", "sell", 10, 1));
    expect(before).toEqual(emptySideData());
    expect(after).not.toBe(before);
  });

  it("stores a negative zero as zero, as JSON would", () => {
    const s = applySideData(emptySideData(), {
      data_type: "market_data",
      stock_symbol: "AAPL",
      market_cap: 1e9,
      pe_ratio: -0,
      timestamp: T0,
    });
    expect(Object.is(s.marketData?.peRatio, 0)).toBe(true);
  });
});
