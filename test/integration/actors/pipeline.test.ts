import { aggregateBuckets, bucketTicks, minuteOf, type BucketTick } from "../../../domain/aggregates";
import type { StockMessage } from "../../../domain/messages";
import type { ActorView } from "../../../domain/symbol-actor";
import { closeRelative, firstMismatch, seededRandom } from "../../unit/domain/fixtures";
import { referenceEma, referenceRsi, referenceSignals, referenceSma } from "../../unit/domain/reference";
import {
  actorsEnv,
  countTicks,
  expectedRow,
  generateMessages,
  place,
  produceAll,
  readSnapshots,
  readTicks,
  replay,
  seqSummary,
  settingsOf,
  SMALL_PERIODS,
  sortedByKey,
  startActorsNode,
  SYMBOLS,
  useActorsScenario,
  waitUntilCommitted,
  type Expected,
  type Placed,
  type TickRowRead,
} from "./harness";

/**
 * Kafka -> actors -> Postgres/Redis on the real servers, compared row by row with an
 * uninterrupted in-memory run of the same per-symbol input. The input arrives in three waves,
 * each processed before the next, so minute buckets are also merged across transactions.
 */

const PARTITIONS = 4;
const ENV = { ...SMALL_PERIODS };
const settings = settingsOf(ENV);

let placed: Placed[];
let expected: Expected;
let rows: TickRowRead[];

const ctx = useActorsScenario("actors_pipeline", PARTITIONS, {
  setup: async s => {
    const messages = generateMessages({
      seed: 7,
      symbols: SYMBOLS.slice(0, 6),
      ticks: 3000,
      side: 240,
      economic: 60,
    });
    placed = place(messages, PARTITIONS);
    expected = replay(placed, settings);

    s.node = await startActorsNode(actorsEnv(s.scenario, ENV));
    const waves = [0, 1100, 2300, messages.length];
    for (let w = 0; w + 1 < waves.length; w++) {
      await produceAll(s.scenario.topic, messages.slice(waves[w], waves[w + 1]));
      await waitUntilCommitted(s.scenario.topic, s.scenario.groupId, 90000);
    }
    rows = await readTicks(s.db);
  },
  // Three waves of up to 90 s each on a loaded machine, and the node's start.
  setupTimeoutMs: 360000,
});

function rowsOf(symbol: string): TickRowRead[] {
  return rows.filter(r => r.symbol === symbol);
}

function partitionOf(symbol: string): number {
  return placed.find(p => "stock_symbol" in p.message && p.message.stock_symbol === symbol)!.partition;
}

describe("actors pipeline on Kafka, Postgres and Redis", () => {
  it("spreads the input over more than one partition", () => {
    expect(new Set(placed.map(p => p.partition)).size).toBeGreaterThan(1);
    expect(expected.signals.length).toBeGreaterThan(50);
  }, 120000);

  it("stores exactly one row per price tick, numbered 1..n per symbol", async () => {
    const messages: StockMessage[] = placed.map(p => p.message);
    expect(rows).toHaveLength(countTicks(messages));
    const summary = await seqSummary(ctx.db);
    expect(summary.size).toBe(expected.ticks.size);
    for (const [symbol, ticks] of expected.ticks) {
      expect(summary.get(symbol)).toEqual({
        rows: ticks.length,
        distinct: ticks.length,
        min: 1,
        max: ticks.length,
      });
    }
  }, 120000);

  it("stores each tick with the indicators an uninterrupted actor computes, bit for bit", () => {
    for (const [symbol, ticks] of expected.ticks) {
      const partition = partitionOf(symbol);
      expect(rowsOf(symbol)).toEqual(ticks.map(t => expectedRow(t, partition)));
    }
  }, 120000);

  it("matches the full-recompute reference of SMA, EMA and RSI to 1e-9 relative", () => {
    for (const symbol of expected.ticks.keys()) {
      const own = rowsOf(symbol);
      const closes = own.map(r => r.close);
      const checks: [string, (number | null)[], (number | null)[]][] = [
        ["sma", own.map(r => r.sma), referenceSma(closes, settings.smaPeriod)],
        ["ema", own.map(r => r.ema), referenceEma(closes, settings.emaPeriod)],
        ["rsi", own.map(r => r.rsi), referenceRsi(closes, settings.rsiPeriod)],
      ];
      for (const [name, actual, reference] of checks) {
        expect({ symbol, name, mismatch: firstMismatch(actual, reference, 1e-9) }).toEqual({
          symbol,
          name,
          mismatch: null,
        });
      }
    }
  }, 120000);

  it("shows the indicators in the long stock_analysis view, one row per defined value", async () => {
    const { rows: view } = await ctx.db.query<{
      symbol: string;
      seq: number;
      indicator: string;
      value: number;
    }>("SELECT symbol, seq, indicator, value FROM stock_analysis");
    const want: { symbol: string; seq: number; indicator: string; value: number }[] = [];
    for (const r of rows) {
      if (r.sma !== null)
        want.push({ symbol: r.symbol, seq: r.seq, indicator: "moving_average", value: r.sma });
      if (r.ema !== null)
        want.push({ symbol: r.symbol, seq: r.seq, indicator: "exponential_moving_average", value: r.ema });
      if (r.rsi !== null)
        want.push({ symbol: r.symbol, seq: r.seq, indicator: "relative_strength_index", value: r.rsi });
    }
    const key = (x: { symbol: string; seq: number; indicator: string }) =>
      `${x.symbol}/${String(x.seq).padStart(8, "0")}/${x.indicator}`;
    expect(sortedByKey(view, key)).toEqual(sortedByKey(want, key));
  }, 120000);

  it("records a signal exactly on the ticks where RSI crosses into a zone", async () => {
    const { rows: stored } = await ctx.db.query<{
      symbol: string;
      seq: number;
      side: string;
      rsi: number;
      price: number;
      ts: number;
    }>(`SELECT symbol, seq, side, rsi, price, extract(epoch FROM "timestamp")::float8 AS ts FROM signals`);
    const key = (s: { symbol: string; seq: number }) => `${s.symbol}/${String(s.seq).padStart(8, "0")}`;
    const fromActors = expected.signals.map(s => ({
      symbol: s.symbol,
      seq: s.seq,
      side: s.side,
      rsi: s.rsi,
      price: s.price,
      ts: s.timestamp,
    }));
    expect(sortedByKey(stored, key)).toEqual(sortedByKey(fromActors, key));

    // The same crossings, found by the look-back rule over the stored RSI series.
    const crossings: { symbol: string; seq: number; side: string }[] = [];
    for (const symbol of expected.ticks.keys()) {
      const own = rowsOf(symbol);
      referenceSignals(
        own.map(r => r.rsi),
        settings.rsiOversold,
        settings.rsiOverbought,
      ).forEach((side, i) => {
        if (side !== null) crossings.push({ symbol, seq: own[i].seq, side });
      });
    }
    expect(sortedByKey(stored, key).map(s => ({ symbol: s.symbol, seq: s.seq, side: s.side }))).toEqual(
      sortedByKey(crossings, key),
    );
  }, 120000);

  it("keeps aggregated_metrics equal to each actor's running aggregates", async () => {
    const { rows: stored } = await ctx.db.query<Record<string, number | string>>(
      `SELECT symbol, total_volume::text AS total_volume, average_volume, average_opening_price, average_closing_price, lowest_price,
              highest_price, tick_count, extract(epoch FROM first_timestamp)::float8 AS first_timestamp,
              extract(epoch FROM last_timestamp)::float8 AS last_timestamp, last_seq
       FROM aggregated_metrics ORDER BY symbol COLLATE "C"`,
    );
    const want = sortedByKey([...expected.actors.values()], a => a.symbol).map(a => {
      const v = a.view().aggregates;
      return {
        symbol: a.symbol,
        total_volume: a.totalVolumeExact(),
        average_volume: v.average_volume,
        average_opening_price: v.average_opening_price,
        average_closing_price: v.average_closing_price,
        lowest_price: v.lowest_price,
        highest_price: v.highest_price,
        tick_count: v.tick_count,
        first_timestamp: v.first_timestamp,
        last_timestamp: v.last_timestamp,
        last_seq: a.seq,
      };
    });
    expect(stored).toEqual(want);
  }, 120000);

  it("stores every side-data message under its per-symbol side sequence", async () => {
    const [orders, sentiment, market] = await Promise.all([
      ctx.db.query(
        `SELECT symbol, side_seq, order_type, price, quantity, extract(epoch FROM "timestamp")::float8 AS ts
         FROM order_book ORDER BY symbol COLLATE "C", side_seq`,
      ),
      ctx.db.query(
        `SELECT symbol, side_seq, sentiment_score, sentiment_magnitude, extract(epoch FROM "timestamp")::float8 AS ts
         FROM news_sentiment ORDER BY symbol COLLATE "C", side_seq`,
      ),
      ctx.db.query(
        `SELECT symbol, side_seq, market_cap, pe_ratio, extract(epoch FROM "timestamp")::float8 AS ts
         FROM market_data ORDER BY symbol COLLATE "C", side_seq`,
      ),
    ]);
    const bySymbolSeq = sortedByKey(expected.side, s => `${s.symbol}/${String(s.sideSeq).padStart(8, "0")}`);
    const want = { orders: [] as unknown[], sentiment: [] as unknown[], market: [] as unknown[] };
    for (const s of bySymbolSeq) {
      const p = s.payload;
      const base = { symbol: s.symbol, side_seq: s.sideSeq };
      if (p.data_type === "order_book")
        want.orders.push({
          ...base,
          order_type: p.order_type,
          price: p.price,
          quantity: p.quantity,
          ts: p.timestamp,
        });
      else if (p.data_type === "news_sentiment")
        want.sentiment.push({
          ...base,
          sentiment_score: p.sentiment_score,
          sentiment_magnitude: p.sentiment_magnitude,
          ts: p.timestamp,
        });
      else want.market.push({ ...base, market_cap: p.market_cap, pe_ratio: p.pe_ratio, ts: p.timestamp });
    }
    expect(want.orders.length * want.sentiment.length * want.market.length).toBeGreaterThan(0);
    expect({ orders: orders.rows, sentiment: sentiment.rows, market: market.rows }).toEqual(want);
  }, 120000);

  it("stores every market-wide indicator once, under its log position", async () => {
    const { rows: stored } = await ctx.db.query(
      `SELECT indicator_name AS name, value, extract(epoch FROM "timestamp")::float8 AS timestamp,
              kafka_partition AS partition, kafka_offset AS "offset"
       FROM economic_indicators ORDER BY kafka_partition, kafka_offset`,
    );
    expect(expected.economic.length).toBeGreaterThan(0);
    expect(stored).toEqual(sortedByKey(expected.economic, e => e.partition * 1e9 + e.offset));
    const { rows: dead } = await ctx.db.query("SELECT * FROM dead_letters");
    expect(dead).toEqual([]);
  }, 120000);

  it("serves each symbol's live state through actors.state, equal to the uninterrupted actor", async () => {
    for (const [symbol, actor] of expected.actors) {
      const reply = await ctx.node!.broker.call<{ partition: number; state: ActorView }, { symbol: string }>(
        "actors.state",
        { symbol },
      );
      expect(reply.partition).toBe(partitionOf(symbol));
      expect(reply.state).toEqual(actor.view());
    }
  }, 120000);

  it("leaves a Redis snapshot per symbol equal to the uninterrupted actor's", async () => {
    const snapshots = await readSnapshots(ctx.scenario);
    expect([...snapshots.keys()].sort()).toEqual([...expected.actors.keys()].sort());
    for (const [symbol, actor] of expected.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
  }, 120000);
});

describe("range aggregates from minute buckets", () => {
  interface Range {
    symbol: string;
    from: number;
    to: number;
  }

  async function fromBuckets(r: Range) {
    const { rows: out } = await ctx.db.query<{
      tick_count: number | null;
      total_volume: number | null;
      average_volume: number | null;
      average_opening_price: number | null;
      average_closing_price: number | null;
      lowest_price: number | null;
      highest_price: number | null;
      first_minute: number | null;
      last_minute: number | null;
    }>(
      `SELECT sum(tick_count)::int AS tick_count, sum(volume)::float8 AS total_volume,
              sum(volume)::float8 / sum(tick_count) AS average_volume,
              sum(sum_open) / sum(tick_count) AS average_opening_price,
              sum(sum_close) / sum(tick_count) AS average_closing_price,
              min(low) AS lowest_price, max(high) AS highest_price,
              extract(epoch FROM min(minute))::float8 AS first_minute,
              extract(epoch FROM max(minute))::float8 AS last_minute
       FROM minute_buckets
       WHERE symbol = $1 AND minute >= to_timestamp($2) AND minute < to_timestamp($3)`,
      [r.symbol, r.from, r.to],
    );
    return out[0];
  }

  /** Straight over the stored raw ticks whose minute lies in [from, to). */
  function bruteForce(r: Range) {
    const inRange = rowsOf(r.symbol).filter(t => minuteOf(t.ts) >= r.from && minuteOf(t.ts) < r.to);
    const n = inRange.length;
    const sum = (f: (t: TickRowRead) => number) => inRange.reduce((s, t) => s + f(t), 0);
    return {
      n,
      tick_count: n === 0 ? null : n,
      total_volume: n === 0 ? null : sum(t => t.volume),
      average_volume: n === 0 ? null : sum(t => t.volume) / n,
      average_opening_price: n === 0 ? null : sum(t => t.open) / n,
      average_closing_price: n === 0 ? null : sum(t => t.close) / n,
      lowest_price: n === 0 ? null : Math.min(...inRange.map(t => t.low)),
      highest_price: n === 0 ? null : Math.max(...inRange.map(t => t.high)),
      first_minute: n === 0 ? null : Math.min(...inRange.map(t => minuteOf(t.ts))),
      last_minute: n === 0 ? null : Math.max(...inRange.map(t => minuteOf(t.ts))),
      ticks: inRange,
    };
  }

  function toBucketTicks(ticks: TickRowRead[]): BucketTick[] {
    return ticks.map(t => ({ ...t, timestamp: t.ts }));
  }

  function randomRanges(count: number): Range[] {
    const random = seededRandom(99);
    const symbols = [...expected.ticks.keys()];
    const minutes = rows.map(r => minuteOf(r.ts));
    const lo = Math.min(...minutes) - 120;
    const hi = Math.max(...minutes) + 120;
    const span = (hi - lo) / 60;
    const ranges: Range[] = [];
    for (let i = 0; i < count; i++) {
      const a = lo + Math.floor(random() * span) * 60;
      const b = lo + Math.floor(random() * span) * 60;
      // Short ranges too: one to a few minutes, where a bucket boundary matters most.
      const symbol = symbols[i % symbols.length];
      if (random() < 0.3) ranges.push({ symbol, from: a, to: a + (1 + Math.floor(random() * 4)) * 60 });
      else ranges.push({ symbol, from: Math.min(a, b), to: Math.max(a, b) + 60 });
    }
    for (const symbol of symbols) ranges.push({ symbol, from: lo, to: hi + 60 });
    return ranges;
  }

  it("holds the buckets that bucketing all stored ticks at once gives", async () => {
    const { rows: stored } = await ctx.db.query(
      `SELECT symbol, extract(epoch FROM minute)::float8 AS minute, open, open_seq AS "openSeq", close,
              close_seq AS "closeSeq", low, high, volume::float8 AS volume, tick_count AS "tickCount", sum_open AS "sumOpen",
              sum_close AS "sumClose"
       FROM minute_buckets ORDER BY symbol COLLATE "C", minute`,
    );
    const want = bucketTicks(toBucketTicks(rows));
    expect(stored.length).toBe(want.length);
    stored.forEach((b, i) => {
      const w = want[i];
      const { sumOpen, sumClose, ...exact } = b as typeof w;
      const { sumOpen: wantOpen, sumClose: wantClose, ...wantExact } = w;
      expect(exact).toEqual(wantExact);
      expect([closeRelative(sumOpen, wantOpen, 1e-9), closeRelative(sumClose, wantClose, 1e-9)]).toEqual([
        true,
        true,
      ]);
    });
  }, 120000);

  it("aggregates any range of whole minutes from the buckets as the raw ticks do", async () => {
    const ranges = randomRanges(300);
    let nonEmpty = 0;
    for (const r of ranges) {
      const got = await fromBuckets(r);
      const { n, ticks, ...brute } = bruteForce(r);
      if (n > 0) nonEmpty += 1;
      const viaDomain = aggregateBuckets(bucketTicks(toBucketTicks(ticks)));
      const exactFields = [
        "tick_count",
        "total_volume",
        "lowest_price",
        "highest_price",
        "first_minute",
        "last_minute",
      ] as const;
      for (const f of exactFields) {
        expect({ r, f, v: got[f] }).toEqual({ r, f, v: brute[f] });
        if (n > 0) expect({ r, f, v: viaDomain[f] }).toEqual({ r, f, v: brute[f] });
      }
      const averages = ["average_volume", "average_opening_price", "average_closing_price"] as const;
      for (const f of averages) {
        expect({ r, f, ok: closeRelative(got[f], brute[f], 1e-9) }).toEqual({ r, f, ok: true });
        if (n > 0)
          expect({ r, f, ok: closeRelative(viaDomain[f], brute[f], 1e-9) }).toEqual({ r, f, ok: true });
      }
    }
    // The random ranges must actually cover data, not only empty stretches.
    expect(nonEmpty).toBeGreaterThan(200);
  }, 120000);
});
