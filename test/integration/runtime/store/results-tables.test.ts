import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { bucketTicks } from "../../../../domain/aggregates";
import { emptyOutputs, type AggregateRow, type TickRow } from "../../../../runtime/batch-outputs";
import {
  appendTicks,
  DEAD_LETTERS,
  ECONOMIC,
  insertTicks,
  SIGNALS,
  upsertAggregates,
} from "../../../../runtime/store/results-tables";
import { storedMinute } from "../../../../runtime/store/ticks-copy";
import { migratedDatabases } from "../support/database";

/**
 * The statements of the results tables, each idempotent on its own: minute buckets merged from
 * partial writes, summed exactly past 2^53, aggregates that only move forward, log-position keys
 * per partition, and text Postgres can hold. (That the checked insert feeds the buckets only with
 * the ticks it inserted is results-writer.test.ts's replay across the written offset.)
 */

const fresh = migratedDatabases();
let db: PostgresClient;
beforeAll(async () => {
  ({ db } = await fresh());
});

/** A minute's start, and ticks of `symbol` within it. */
const MINUTE = 1_700_000_040;

function ticksOf(symbol: string, seqs: number[], volume = (seq: number) => 100 * seq): TickRow[] {
  return seqs.map(seq => ({
    symbol,
    seq,
    timestamp: MINUTE + seq * 7.25,
    open: 100 + seq,
    close: 100.5 + seq * 1.1,
    high: 110 + seq,
    low: 90 - seq,
    volume: volume(seq),
    sma: null,
    ema: null,
    rsi: null,
    offset: seq,
    logTimestamp: 1_764_000_000_000 + seq,
  }));
}

const partOf = (ticks: TickRow[]) => ({ ...emptyOutputs(0), ticks });

async function bucketsOf(symbol: string) {
  const { rows } = await db.query<Record<string, unknown>>(
    `SELECT extract(epoch FROM minute)::float8 AS minute, open, open_seq, close, close_seq, low, high,
            volume::text AS volume, tick_count, sum_open, sum_close
     FROM minute_buckets WHERE symbol = $1 ORDER BY minute`,
    [symbol],
  );
  return rows;
}

/** The buckets of all `ticks` computed at once, as the table holds them. */
function bucketsAtOnce(ticks: TickRow[]) {
  return bucketTicks(ticks, storedMinute).map(b => ({
    minute: b.minute,
    open: b.open,
    open_seq: b.openSeq,
    close: b.close,
    close_seq: b.closeSeq,
    low: b.low,
    high: b.high,
    volume: String(b.volume),
    tick_count: b.tickCount,
    sum_open: b.sumOpen,
    sum_close: b.sumClose,
  }));
}

describe("minute buckets", () => {
  it("merge partial writes of a minute, in any order, into the bucket of all its ticks", async () => {
    const all = ticksOf("BUCK", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Later seqs first, across the COPY and the checked insert: open and close go by seq.
    await db.transaction(tx => appendTicks(tx, [partOf(all.slice(6))]));
    await db.transaction(tx => insertTicks(tx, partOf(all.slice(0, 3))));
    await db.transaction(tx => appendTicks(tx, [partOf(all.slice(3, 6))]));
    const buckets = await bucketsOf("BUCK");
    expect(buckets.length).toBe(2);
    const want = bucketsAtOnce(all);
    buckets.forEach((b, i) => {
      const { sum_open, sum_close, ...rest } = want[i];
      expect(b).toMatchObject(rest);
      // Sums of the same doubles, added in another order: equal to rounding.
      expect(b.sum_open as number).toBeCloseTo(sum_open, 9);
      expect(b.sum_close as number).toBeCloseTo(sum_close, 9);
    });
  });

  it("sum a minute's volume past 2^53 exactly, for the numeric column", async () => {
    const big = ticksOf("HUGE", [1, 2, 3], () => 2 ** 53 - 1);
    await db.transaction(tx => appendTicks(tx, [partOf(big)]));
    expect((await bucketsOf("HUGE")).map(b => b.volume)).toEqual([(3n * (2n ** 53n - 1n)).toString()]);
    const checked = ticksOf("HUGE2", [1, 2, 3], () => 2 ** 53 - 1);
    await db.transaction(tx => insertTicks(tx, partOf(checked)));
    expect((await bucketsOf("HUGE2")).map(b => b.volume)).toEqual([(3n * (2n ** 53n - 1n)).toString()]);
  });
});

describe("aggregated_metrics", () => {
  const row = (tickCount: number): AggregateRow => ({
    symbol: "AGG",
    totalVolume: String(10 * tickCount),
    averageVolume: 10,
    averageOpen: 100 + tickCount,
    averageClose: 101 + tickCount,
    lowest: 90,
    highest: 110 + tickCount,
    tickCount,
    firstTimestamp: MINUTE,
    lastTimestamp: MINUTE + tickCount,
    lastSeq: tickCount,
  });
  const stored = async () =>
    (
      await db.query<{ tick_count: number; last_seq: number; total_volume: string }>(
        "SELECT tick_count, last_seq, total_volume::text FROM aggregated_metrics WHERE symbol = 'AGG'",
      )
    ).rows;

  it("only move forward in tick_count: a replayed chunk's older aggregates leave them as they are", async () => {
    await db.transaction(tx => upsertAggregates(tx, [row(5)]));
    await db.transaction(tx => upsertAggregates(tx, [row(3)]));
    await db.transaction(tx => upsertAggregates(tx, [row(5)]));
    expect(await stored()).toEqual([{ tick_count: 5, last_seq: 5, total_volume: "50" }]);
    await db.transaction(tx => upsertAggregates(tx, [row(8)]));
    expect(await stored()).toEqual([{ tick_count: 8, last_seq: 8, total_volume: "80" }]);
  });
});

describe("rows keyed by log position and by symbol", () => {
  it("keep a market-wide figure per partition and offset, once", async () => {
    const figure = { name: "CPI", value: 3.1, timestamp: MINUTE, offset: 12 };
    await db.transaction(async tx => {
      await ECONOMIC.insert(tx, [figure], 0);
      await ECONOMIC.insert(tx, [figure], 1);
      await ECONOMIC.insert(tx, [{ ...figure, value: 9 }], 1);
    });
    const { rows } = await db.query(
      "SELECT kafka_partition, kafka_offset, value FROM economic_indicators WHERE indicator_name = 'CPI' ORDER BY 1",
    );
    expect(rows).toEqual([
      { kafka_partition: 0, kafka_offset: 12, value: 3.1 },
      { kafka_partition: 1, kafka_offset: 12, value: 3.1 },
    ]);
  });

  it("store a dead letter's NUL characters as U+FFFD, where Postgres would refuse the whole chunk", async () => {
    const letter = {
      offset: 3,
      key: "A\u0000B",
      payload: '{"x":"\u0000"}',
      reason: "not JSON\u0000",
      kind: "invalid" as const,
    };
    await db.transaction(tx => DEAD_LETTERS.insert(tx, [letter], 50));
    const { rows } = await db.query(
      "SELECT message_key, payload, reason, kind FROM dead_letters WHERE kafka_partition = 50",
    );
    expect(rows).toEqual([
      { message_key: "A\ufffdB", payload: '{"x":"\ufffd"}', reason: "not JSON\ufffd", kind: "invalid" },
    ]);
  });

  it("return the keys of the signals a write inserted, not of those stored before", async () => {
    const signal = (seq: number) => ({
      symbol: "SIG",
      side: "buy" as const,
      rsi: 12,
      price: 100,
      timestamp: MINUTE,
      seq,
    });
    await db.transaction(tx => SIGNALS.insert(tx, [signal(1), signal(2)], 0));
    const inserted = await db.transaction(tx => SIGNALS.insert(tx, [signal(2), signal(3)], 0));
    expect(inserted).toEqual([{ symbol: "SIG", seq: 3 }]);
  });
});
