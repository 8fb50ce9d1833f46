import type { SymbolReport } from "../../../domain/backtest";
import { GatewayClient } from "../../../replay/client";
import {
  formatPrice,
  formatReportDate,
  formatReportTable,
  formatReturn,
  waitForTicks,
} from "../../../replay/report";
import { describeRows, formatLineRanges } from "../../../replay/summary";
import { startFakeGateway } from "./fake-gateway";

const report: SymbolReport = {
  symbol: "SPX",
  ticks: 5105,
  signals: 154,
  buySignals: 60,
  sellSignals: 94,
  firstTimestamp: Date.parse("2000-01-03T21:00:00Z") / 1000,
  lastTimestamp: Date.parse("2020-04-17T21:00:00Z") / 1000,
  lowestPrice: 666.789978,
  highestPrice: 3393.52002,
  strategy: { returnPct: 52.3149, trades: 55, open: true },
  buyAndHold: { returnPct: 97.5343 },
};

describe("report formatting", () => {
  it("shows daily bars by date, anything else with its time", () => {
    expect(formatReportDate(report.firstTimestamp)).toBe("2000-01-03");
    expect(formatReportDate(Date.parse("2020-01-02T14:30:00Z") / 1000)).toBe("2020-01-02 14:30");
    expect(formatReportDate(null)).toBe("-");
  });

  it("formats prices and returns", () => {
    expect(formatPrice(3393.52002)).toBe("3,393.52");
    expect(formatPrice(0.0045123)).toBe("0.004512");
    expect(formatPrice(null)).toBe("-");
    expect(formatReturn(52.3149)).toBe("+52.31%");
    expect(formatReturn(-4)).toBe("-4.00%");
    expect(formatReturn(-0.001)).toBe("+0.00%");
    expect(formatReturn(null)).toBe("n/a");
  });

  it("lays the reports out as a table, with notes and the rule under it", () => {
    const text = formatReportTable([
      { symbol: "SPX", report, complete: true, notes: [] },
      { symbol: "AAPL", report: null, complete: false, notes: ["GET /api/report/AAPL: HTTP 404"] },
    ]);
    const lines = text.split("\n");
    expect(lines[0]).toBe(
      "symbol  ticks  signals (buy/sell)  first       last           low      high  RSI 30/70 rule  buy & hold  trades",
    );
    expect(lines[2]).toBe(
      "SPX     5,105  154 (60/94)         2000-01-03  2020-04-17  666.79  3,393.52         +52.31%     +97.53%  55 (1 open)",
    );
    expect(lines[3]).toMatch(/^AAPL {8}- {2}- /);
    expect(lines[5]).toBe("AAPL: GET /api/report/AAPL: HTTP 404");
    expect(text).toMatch(/RSI 30\/70 rule: long only/);
  });
});

describe("line summaries", () => {
  it("compacts lines into ranges", () => {
    expect(formatLineRanges([2, 3, 4, 7, 10, 11])).toBe("2-4, 7, 10-11");
    expect(formatLineRanges([1, 3, 5, 7], 2)).toBe("1, 3 and 2 more");
    expect(formatLineRanges([])).toBe("");
  });

  it("groups rows by reason, the most frequent first", () => {
    expect(
      describeRows("rejected by the gateway", [
        { line: 9, reason: "volume: must not be negative" },
        { line: 5, reason: "high: must not be below opening_price or closing_price" },
        { line: 10, reason: "volume: must not be negative" },
      ]),
    ).toEqual([
      "3 rows rejected by the gateway:",
      "  volume: must not be negative (lines 9-10)",
      "  high: must not be below opening_price or closing_price (line 5)",
    ]);
    expect(describeRows("x", [])).toEqual([]);
    expect(describeRows("rejected", [{ line: 2, reason: "r" }], { total: 1500 })).toEqual([
      "1,500 rows rejected:",
      "  r (line 2)",
      "  (the first 1 are listed in the state file)",
    ]);
  });
});

describe("waitForTicks", () => {
  it("polls the symbol's tick count until it reaches what was sent, or gives up at the deadline", async () => {
    const fake = await startFakeGateway();
    const client = new GatewayClient(fake.base, { timeoutMs: 2000, maxSockets: 2 });
    try {
      fake.extraTicks.set("SPX", 7);
      expect(await waitForTicks(client, "SPX", 7, { timeoutMs: 1000 })).toEqual({
        count: 7,
        converged: true,
      });
      expect(await waitForTicks(client, "SPX", 8, { timeoutMs: 300, intervalMs: 50 })).toEqual({
        count: 7,
        converged: false,
      });
      expect(await waitForTicks(client, "NONE", 1, { timeoutMs: 100, intervalMs: 50 })).toEqual({
        count: 0,
        converged: false,
      });
      setTimeout(() => fake.extraTicks.set("LATE", 3), 100);
      expect(await waitForTicks(client, "LATE", 3, { timeoutMs: 5000, intervalMs: 20 })).toEqual({
        count: 3,
        converged: true,
      });
    } finally {
      client.close();
      await fake.close();
    }
  });
});
