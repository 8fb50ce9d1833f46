import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import type { StockMessage } from "../../../../domain/messages";
import type { Signal } from "../../../../domain/symbol-actor";
import type { TickRow } from "../../../../runtime/batch-outputs";
import { ResultsQueries } from "../../../../runtime/store/results-queries";
import { ResultsWriter } from "../../../../runtime/store/results-writer";
import { storedMinute } from "../../../../runtime/store/ticks-copy";
import { migratedDatabases } from "../support/database";
import { interleave, PartitionFeed, priceTicks, type AppliedChunk } from "../support/feed";

/**
 * The REST API's read model, each read against rows whose values the test knows: two symbols'
 * ticks, signals and aggregates as their actors computed them, and dead letters of two partitions.
 */

const fresh = migratedDatabases();
let db: PostgresClient;
let queries: ResultsQueries;
let chunk: AppliedChunk;

beforeAll(async () => {
  ({ db } = await fresh());
  queries = new ResultsQueries(db);
  const feed = new PartitionFeed(0);
  chunk = feed.chunk(
    interleave<StockMessage | string>(priceTicks("QA", 60, 7), priceTicks("QB", 30, 8), ["{a", "{b"]),
  );
  await new ResultsWriter(db).writeAlone({ out: chunk.out });
  await db.query(
    `INSERT INTO dead_letters (kafka_partition, kafka_offset, message_key, payload, reason, kind)
     VALUES (1, 4, 'QC', '{}', 'overflows', 'unappliable'), (1, 9, 'QC', '{}', 'overflows', 'unappliable')`,
  );
});

const ticksOf = (symbol: string): TickRow[] => chunk.out.ticks.filter(t => t.symbol === symbol);
const signalsOf = (symbol?: string): Signal[] =>
  chunk.out.signals.filter(s => !symbol || s.symbol === symbol);
const at = (seconds: number) => new Date(seconds * 1000);
const aggregateOf = (symbol: string) => {
  const a = chunk.out.aggregates.find(r => r.symbol === symbol);
  if (!a) throw new Error(`the chunk has no aggregates of ${symbol}`);
  return a;
};

describe("ResultsQueries", () => {
  it("lists every symbol with its running aggregates and its latest price and indicators", async () => {
    const rows = await queries.latestPerSymbol();
    expect(rows.map(r => r.symbol)).toEqual(["QA", "QB"]);
    for (const row of rows) {
      const symbol = String(row.symbol);
      const last = ticksOf(symbol).at(-1);
      const a = aggregateOf(symbol);
      expect(row).toMatchObject({
        tick_count: a.tickCount,
        seq: last?.seq,
        close: last?.close,
        sma: last?.sma,
        ema: last?.ema,
        rsi: last?.rsi,
        total_volume: Number(a.totalVolume),
        average_volume: a.averageVolume,
        lowest_price: a.lowest,
        highest_price: a.highest,
        first_timestamp: at(a.firstTimestamp),
        last_timestamp: at(a.lastTimestamp),
      });
    }
  });

  it("gives a symbol's history within a time range, the latest `limit` ticks, oldest first", async () => {
    const all = ticksOf("QA");
    const [from, to] = [all[10].timestamp, all[40].timestamp];
    const want = all
      .filter(t => t.timestamp >= from && t.timestamp < to)
      .slice(-12)
      .map(t => ({
        seq: t.seq,
        timestamp: at(t.timestamp),
        opening_price: t.open,
        closing_price: t.close,
        high: t.high,
        low: t.low,
        volume: t.volume,
        moving_average: t.sma,
        exponential_moving_average: t.ema,
        relative_strength_index: t.rsi,
      }));
    expect(want).toHaveLength(12);
    expect(await queries.history({ symbol: "QA", from, to, limit: 12 })).toEqual(want);
    expect((await queries.history({ symbol: "QA", limit: 1000 })).map(r => r.seq)).toEqual(
      all.map(t => t.seq),
    );
  });

  it("gives signals newest first, of one symbol or all, within a time range", async () => {
    const newestFirst = (list: Signal[]) =>
      [...list]
        .sort((a, b) => b.timestamp - a.timestamp || a.symbol.localeCompare(b.symbol) || b.seq - a.seq)
        .map(s => ({ ...s, timestamp: at(s.timestamp) }));
    const strip = (rows: Record<string, unknown>[]) => rows.map(({ created_at: _, ...r }) => r);
    expect(signalsOf("QA").length).toBeGreaterThan(1);
    expect(signalsOf("QB").length).toBeGreaterThan(0);
    expect(strip(await queries.signals({ limit: 1000 }))).toEqual(newestFirst(signalsOf()));
    expect(strip(await queries.signals({ symbol: "QB", limit: 1000 }))).toEqual(newestFirst(signalsOf("QB")));
    const [first, second] = newestFirst(signalsOf("QA")).reverse();
    const from = first.timestamp.getTime() / 1000;
    const to = second.timestamp.getTime() / 1000;
    expect(strip(await queries.signals({ symbol: "QA", from, to, limit: 1000 }))).toEqual(
      newestFirst(signalsOf("QA").filter(s => s.timestamp >= from && s.timestamp < to)),
    );
    expect(await queries.signals({ symbol: "QA", limit: 1 })).toHaveLength(1);
  });

  it("gives dead letters newest first, by partition and kind", async () => {
    const strip = (rows: Record<string, unknown>[]) => rows.map(r => [r.partition, r.offset, r.kind]);
    const invalid = chunk.out.deadLetters.map(d => [0, d.offset, "invalid"]).reverse();
    expect(invalid).toHaveLength(2);
    // Written in two transactions: the later first, and within one, by partition and offset from the last.
    expect(strip(await queries.deadLetters({ limit: 100 }))).toEqual([
      [1, 9, "unappliable"],
      [1, 4, "unappliable"],
      ...invalid,
    ]);
    expect(strip(await queries.deadLetters({ partition: 0, limit: 100 }))).toEqual(invalid);
    expect(strip(await queries.deadLetters({ kind: "unappliable", limit: 1 }))).toEqual([
      [1, 9, "unappliable"],
    ]);
    const [one] = await queries.deadLetters({ partition: 0, kind: "invalid", limit: 1 });
    expect(one).toMatchObject({ key: null, payload: "{b", reason: "not JSON" });
  });

  it("gives a symbol's aggregates over all its ticks, and null for a symbol never seen", async () => {
    const a = aggregateOf("QB");
    expect(await queries.aggregates("QB")).toMatchObject({
      symbol: "QB",
      tick_count: a.tickCount,
      total_volume: Number(a.totalVolume),
      average_opening_price: a.averageOpen,
      average_closing_price: a.averageClose,
    });
    expect(await queries.aggregates("NONE")).toBeNull();
  });

  it("aggregates the whole minutes of a range from the buckets as over the raw ticks", async () => {
    const all = ticksOf("QA");
    const from = storedMinute(all[5].timestamp);
    const to = storedMinute(all[50].timestamp);
    const inRange = all.filter(t => storedMinute(t.timestamp) >= from && storedMinute(t.timestamp) < to);
    expect(inRange.length).toBeGreaterThan(10);
    const sum = (pick: (t: TickRow) => number) => inRange.reduce((s, t) => s + pick(t), 0);
    const got = await queries.aggregatesOverMinutes("QA", from, to);
    expect(got).toMatchObject({
      symbol: "QA",
      tick_count: inRange.length,
      total_volume: sum(t => t.volume),
      average_volume: sum(t => t.volume) / inRange.length,
      lowest_price: Math.min(...inRange.map(t => t.low)),
      highest_price: Math.max(...inRange.map(t => t.high)),
      first_minute: at(from),
      last_minute: at(Math.max(...inRange.map(t => storedMinute(t.timestamp)))),
    });
    expect(got.average_closing_price as number).toBeCloseTo(sum(t => t.close) / inRange.length, 9);
    expect(await queries.aggregatesOverMinutes("NONE", null, null)).toMatchObject({
      tick_count: 0,
      total_volume: 0,
    });
  });

  it("gives what a symbol's replay report needs, and null for a symbol never seen", async () => {
    const all = ticksOf("QA");
    const a = aggregateOf("QA");
    expect(await queries.reportInput("QA")).toEqual({
      symbol: "QA",
      tickCount: a.tickCount,
      firstTimestamp: a.firstTimestamp,
      lastTimestamp: a.lastTimestamp,
      lowestPrice: a.lowest,
      highestPrice: a.highest,
      firstClose: all[0].close,
      lastClose: all.at(-1)?.close,
      signals: signalsOf("QA").map(s => ({
        seq: s.seq,
        side: s.side,
        price: s.price,
        timestamp: s.timestamp,
      })),
    });
    expect(await queries.reportInput("NONE")).toBeNull();
  });
});
