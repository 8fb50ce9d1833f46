import { setTimeout as sleep } from "node:timers/promises";
import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import type { StoredTick } from "../../../../domain/symbol-actor";
import { IndicatorRewrites } from "../../../../runtime/store/reindex";
import { ResultsWriter } from "../../../../runtime/store/results-writer";
import { migratedDatabases } from "../support/database";
import { PartitionFeed, priceTicks } from "../support/feed";

/**
 * The rewrite of a symbol's stored indicators and signals (the reprocess tool's store): what the
 * recomputation makes of the stored ticks replaces them in one transaction, and an actor's write
 * of the symbol in flight is waited for, so the ticks read are all there are.
 */

const fresh = migratedDatabases();
let db: PostgresClient;
let rewrites: IndicatorRewrites;
const feed = new PartitionFeed(0);

beforeAll(async () => {
  ({ db } = await fresh());
  rewrites = new IndicatorRewrites(db);
  const writer = new ResultsWriter(db);
  for (const symbol of ["RX_B", "RX_A", "RX_C"])
    await writer.writeAlone({ out: feed.chunk(priceTicks(symbol, 20, 3)).out });
});

const indicators = async (symbol: string) =>
  (
    await db.query<{ seq: number; sma: number | null; ema: number | null; rsi: number | null }>(
      `SELECT seq, moving_average AS sma, exponential_moving_average AS ema, relative_strength_index AS rsi
       FROM ticks WHERE symbol = $1 ORDER BY seq`,
      [symbol],
    )
  ).rows;
const signalSeqs = async (symbol: string) =>
  (
    await db.query<{ seq: number }>("SELECT seq FROM signals WHERE symbol = $1 ORDER BY seq", [symbol])
  ).rows.map(r => r.seq);

describe("IndicatorRewrites", () => {
  it("lists every symbol with stored ticks, in order", async () => {
    expect(await rewrites.symbolsWithTicks()).toEqual(["RX_A", "RX_B", "RX_C"]);
  });

  it("replaces a symbol's indicators and signals with what the recomputation makes of its stored ticks", async () => {
    const others = { b: await indicators("RX_B"), bSignals: await signalSeqs("RX_B") };
    expect(others.bSignals.length).toBeGreaterThan(0);
    let seen: StoredTick[] = [];
    const counts = await rewrites.rewriteIndicators("RX_A", ticks => {
      seen = ticks;
      return {
        ticks: ticks.map(t => ({ seq: t.seq, sma: t.close * 2, ema: null, rsi: t.seq })),
        signals: [
          {
            symbol: "RX_A",
            side: "sell",
            rsi: 99,
            price: ticks[4].close,
            timestamp: ticks[4].timestamp,
            seq: 5,
          },
        ],
      };
    });
    expect(counts).toEqual({ ticks: 20, signals: 1 });
    // The stored ticks, in order, as the actor read them.
    const written = priceTicks("RX_A", 20, 3);
    expect(seen).toEqual(
      written.map((t, i) => ({ seq: i + 1, close: t.closing_price, timestamp: t.timestamp })),
    );
    expect(await indicators("RX_A")).toEqual(
      written.map((t, i) => ({ seq: i + 1, sma: t.closing_price * 2, ema: null, rsi: i + 1 })),
    );
    expect(await signalSeqs("RX_A")).toEqual([5]);
    // Another symbol is left as it was.
    expect(await indicators("RX_B")).toEqual(others.b);
    expect(await signalSeqs("RX_B")).toEqual(others.bSignals);
  });

  it("waits for an actor's write of the symbol in flight, and rewrites the ticks it added too", async () => {
    let release!: () => void;
    const held = new Promise<void>(resolve => (release = resolve));
    let locked!: () => void;
    const holding = new Promise<void>(resolve => (locked = resolve));
    // An actor's results transaction of RX_C's next tick: its aggregates row is locked until it commits.
    const actorWrite = db.transaction(async tx => {
      await tx.query(
        `INSERT INTO ticks (symbol, seq, "timestamp", opening_price, closing_price, high, low, volume,
                            kafka_partition, kafka_offset, log_timestamp)
         VALUES ('RX_C', 21, now(), 100, 100, 100, 100, 1, 0, 1020, now())`,
      );
      await tx.query("UPDATE aggregated_metrics SET last_seq = 21, tick_count = 21 WHERE symbol = 'RX_C'");
      locked();
      await held;
    });
    await holding;
    let seen = 0;
    const rewrite = rewrites.rewriteIndicators("RX_C", ticks => {
      seen = ticks.length;
      return { ticks: [], signals: [] };
    });
    await waitForLockWait(db);
    release();
    await actorWrite;
    await rewrite;
    expect(seen).toBe(21);
  });
});

/** Until a session of this database waits for a row lock: the rewrite stands behind the actor's transaction. */
async function waitForLockWait(db: PostgresClient): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%aggregated_metrics%FOR UPDATE%'`,
    );
    if (rows[0].n > 0) return;
    await sleep(25);
  }
  throw new Error("the rewrite never waited for the actor's transaction");
}
