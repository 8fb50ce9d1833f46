import fs from "node:fs";
import path from "node:path";
import { barToTick, CsvFormatError, parseBarDate, parseDailyCsv, splitCsvLine } from "../../../replay/csv";

const T_2020_01_02 = Date.UTC(2020, 0, 2) / 1000;
const at21 = (epochDay: number) => epochDay + 21 * 3600;

describe("parseDailyCsv", () => {
  it("reads Yahoo Finance's layout, sending each day at 21:00 UTC", () => {
    const csv = [
      "Date,Open,High,Low,Close,Adj Close,Volume",
      "2020-01-02,296.23,300.60,295.19,300.35,298.83,33870100",
      "2020-01-03,297.15,300.58,296.50,297.43,295.93,36580700",
    ].join("\n");
    const parsed = parseDailyCsv(csv);
    expect(parsed.unreadable).toEqual([]);
    expect(parsed).toMatchObject({ hasAdjClose: true, hasVolume: true, reversed: false, dataLines: 2 });
    expect(parsed.bars[0]).toEqual({
      line: 2,
      date: "2020-01-02",
      timestamp: at21(T_2020_01_02),
      open: 296.23,
      high: 300.6,
      low: 295.19,
      close: 300.35,
      adjClose: 298.83,
      volume: 33870100,
    });
    expect(parsed.bars[1].timestamp - parsed.bars[0].timestamp).toBe(86400);
  });

  it("reads Stooq's layout (no Adj Close) and lower-case, reordered or underscored headers", () => {
    const stooq = parseDailyCsv("Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10\n");
    expect(stooq).toMatchObject({ hasAdjClose: false, hasVolume: true });
    expect(stooq.bars[0]).toMatchObject({ close: 1.5, adjClose: null, volume: 10 });

    const vega = parseDailyCsv("date,open,high,low,close,adjclose,volume\n2020-01-02,1,2,0.5,1.5,1.4,10");
    expect(vega.bars[0]).toMatchObject({ adjClose: 1.4 });

    const shuffled = parseDailyCsv(
      "VOLUME,close,Adj_Close,LOW,High,OPEN,Date,Note\n10,1.5,1.4,0.5,2,1,2020-01-02,x",
    );
    expect(shuffled.bars[0]).toMatchObject({
      open: 1,
      high: 2,
      low: 0.5,
      close: 1.5,
      adjClose: 1.4,
      volume: 10,
    });
  });

  it("takes a file without a Volume column, with volume 0", () => {
    const parsed = parseDailyCsv("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5");
    expect(parsed.hasVolume).toBe(false);
    expect(parsed.bars[0].volume).toBe(0);
  });

  it("refuses a header without a required column, naming it", () => {
    expect(() => parseDailyCsv("Date,Open,High,Close,Volume\n2020-01-02,1,2,1.5,10")).toThrow(CsvFormatError);
    expect(() => parseDailyCsv("Date,Open,High,Close,Volume\n")).toThrow(
      /line 1: the header has no Low column/,
    );
    expect(() => parseDailyCsv("\n\n")).toThrow(/empty/);
  });

  it("lists the rows it cannot read with their line numbers and reasons, and keeps the others", () => {
    const csv = [
      "Date,Open,High,Low,Close,Adj Close,Volume",
      "2020-01-02,1,2,0.5,1.5,1.5,10",
      "2020-01-03,null,null,null,null,null,null",
      "2020-01-06,1,2,0.5",
      "",
      "2020-13-01,1,2,0.5,1.5,1.5,10",
      "2020-01-07,1,2,0.5,abc,1.5,10",
      "2020-01-08,1,2,0.5,1.5,1.5,12",
    ].join("\n");
    const parsed = parseDailyCsv(csv);
    expect(parsed.bars.map(b => b.line)).toEqual([2, 8]);
    expect(parsed.dataLines).toBe(6);
    expect(parsed.unreadable).toEqual([
      {
        line: 3,
        reason:
          'Open "null" is not a number; High "null" is not a number; Low "null" is not a number; Close "null" is not a number; ' +
          'Adj Close "null" is not a number; Volume "null" is not a number',
      },
      { line: 4, reason: "has 4 fields, the header needs at least 7" },
      { line: 6, reason: 'Date "2020-13-01" is not a date (YYYY-MM-DD)' },
      { line: 7, reason: 'Close "abc" is not a number' },
    ]);
  });

  it("counts physical lines with a BOM and CRLF line ends", () => {
    const csv =
      "\uFEFFDate,Open,High,Low,Close,Adj Close,Volume\r\n2020-01-02,1,2,0.5,1.5,1.5,10\r\n\r\nbad\r\n2020-01-03,1,2,0.5,1.5,1.5,11\r\n";
    const parsed = parseDailyCsv(csv);
    expect(parsed.bars.map(b => [b.line, b.volume])).toEqual([
      [2, 10],
      [5, 11],
    ]);
    expect(parsed.unreadable).toEqual([{ line: 4, reason: "has 1 fields, the header needs at least 7" }]);
  });

  it("replays a newest-first file oldest first, keeping each row's line", () => {
    const parsed = parseDailyCsv(
      "Date,Open,High,Low,Close\n2020-01-06,1,2,0.5,1.6\n2020-01-03,1,2,0.5,1.5\n2020-01-02,1,2,0.5,1.4",
    );
    expect(parsed.reversed).toBe(true);
    expect(parsed.bars.map(b => [b.line, b.date])).toEqual([
      [4, "2020-01-02"],
      [3, "2020-01-03"],
      [2, "2020-01-06"],
    ]);
  });

  it("refuses a row whose date is not after the previous row's", () => {
    const parsed = parseDailyCsv(
      "Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.4\n2020-01-03,1,2,0.5,1.5\n2020-01-03,1,2,0.5,1.5\n2020-01-01,1,2,0.5,1.5\n2020-01-06,1,2,0.5,1.6",
    );
    expect(parsed.bars.map(b => b.line)).toEqual([2, 3, 6]);
    expect(parsed.unreadable.map(u => u.line)).toEqual([4, 5]);
    expect(parsed.unreadable[0].reason).toBe(
      "Date 2020-01-03 is not after 2020-01-03 (line 3): rows must be in date order, each date once",
    );
  });

  it("rounds fractional volumes to whole shares, as the gateway requires", () => {
    const parsed = parseDailyCsv(
      "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10.6\n2020-01-03,1,2,0.5,1.5,1e3",
    );
    expect(parsed.bars.map(b => b.volume)).toEqual([11, 1000]);
  });

  it("reads quoted fields", () => {
    expect(splitCsvLine('"2020-01-02","1.5","a ""b"", c",')).toEqual(["2020-01-02", "1.5", 'a "b", c', ""]);
    const parsed = parseDailyCsv('"Date","Open","High","Low","Close"\n"2020-01-02","1","2","0.5","1.5"');
    expect(parsed.bars[0]).toMatchObject({ close: 1.5 });
  });

  it("reads the bundled sample: 5,105 days from 2000-01-03 to 2020-04-17, none unreadable", () => {
    const text = fs.readFileSync(path.join(__dirname, "../../../samples/sp500-2000.csv"), "utf8");
    const parsed = parseDailyCsv(text);
    expect(parsed.unreadable).toEqual([]);
    expect(parsed.bars).toHaveLength(5105);
    expect(parsed.bars[0]).toMatchObject({ line: 2, date: "2000-01-03", close: 1455.219971 });
    expect(parsed.bars[5104]).toMatchObject({ line: 5106, date: "2020-04-17", close: 2874.560059 });
  });
});

describe("parseBarDate", () => {
  it("puts a bare date at 21:00 UTC, in both Yahoo's and Stooq's older form", () => {
    expect(parseBarDate("2020-01-02")).toBe(at21(T_2020_01_02));
    expect(parseBarDate("20200102")).toBe(at21(T_2020_01_02));
  });

  it("keeps a time of day when the cell has one, UTC unless it names an offset", () => {
    expect(parseBarDate("2020-01-02 14:30")).toBe(T_2020_01_02 + 14.5 * 3600);
    expect(parseBarDate("2020-01-02T14:30:15Z")).toBe(T_2020_01_02 + 14.5 * 3600 + 15);
    expect(parseBarDate("2020-01-02 09:30:00-05:00")).toBe(T_2020_01_02 + 14.5 * 3600);
    expect(parseBarDate("2020-01-02T09:30:00.5+0100")).toBe(T_2020_01_02 + 8.5 * 3600 + 0.5);
  });

  it("refuses what is not a real date", () => {
    for (const text of ["2021-02-30", "2020-1-2", "01/02/2020", "2020-01-02 25:00", "", "null"]) {
      expect(parseBarDate(text)).toBeNull();
    }
  });
});

describe("barToTick", () => {
  const bar = {
    line: 2,
    date: "2020-01-02",
    timestamp: at21(T_2020_01_02),
    open: 100,
    high: 110,
    low: 90,
    close: 105,
    adjClose: 84,
    volume: 7,
  };

  it("sends the bar as a price tick of the symbol", () => {
    expect(barToTick(bar, "AAPL")).toEqual({
      stock_symbol: "AAPL",
      opening_price: 100,
      closing_price: 105,
      high: 110,
      low: 90,
      volume: 7,
      timestamp: at21(T_2020_01_02),
    });
  });

  it("with adjusted prices, scales the whole bar by Adj Close / Close", () => {
    const tick = barToTick(bar, "AAPL", true);
    expect(tick.closing_price).toBeCloseTo(84, 12);
    expect(tick.opening_price).toBeCloseTo(80, 12);
    expect(tick.high).toBeCloseTo(88, 12);
    expect(tick.low).toBeCloseTo(72, 12);
  });
});
