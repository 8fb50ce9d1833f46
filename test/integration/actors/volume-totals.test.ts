import { EmbeddedLog } from "../../../adapters/log/embedded-log";
import type { LogMessage } from "../../../adapters/log/types";
import { migrate, readMigrations } from "../../../adapters/sql/migrate";
import type { PostgresClient } from "../../../adapters/sql/postgres-client";
import { MAX_VOLUME, type PriceTick } from "../../../domain/messages";
import { SymbolActor } from "../../../domain/symbol-actor";
import { applyChunk, parseLogMessage } from "../../../runtime/apply-chunk";
import { ResultsQueries } from "../../../runtime/store/results-queries";
import { ResultsStore } from "../../../runtime/store/results-store";
import { freshDatabase } from "../../support/stack";
import { extremeStream, VOL } from "../../unit/runtime/host/support/extreme-stream";
import { committed, runHostToTheEnd, totalVolumeReads } from "../../unit/runtime/host/support/host-phase";
import { PARTITIONS, SETTINGS } from "../../unit/runtime/host/support/host-stream";
import { openDatabase } from "./harness";

jest.setTimeout(120000);

/**
 * Volume totals past 2^53, where a double loses units, and past bigint's range, on the real
 * Postgres: the actors' exact sums reach the numeric columns (migrations/004) to the unit, and the
 * query service reads them as the JSON numbers it always answered.
 */

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 60000);

async function database(): Promise<PostgresClient> {
  const fresh = await freshDatabase();
  cleanups.push(fresh.drop);
  const db = openDatabase(fresh.url);
  cleanups.push(() => db.close());
  return db;
}

const text = async (db: PostgresClient, sql: string, params: unknown[] = []) =>
  (await db.query<{ v: string }>(sql, params)).rows.map(r => r.v);

describe("volume totals on Postgres", () => {
  it("keeps the totals stored as bigint when migration 004 makes the columns numeric", async () => {
    const db = await database();
    expect(
      await migrate(
        db,
        readMigrations().filter(m => m.version <= 3),
      ),
    ).toEqual([1, 2, 3]);
    await db.query(
      `INSERT INTO aggregated_metrics (symbol, total_volume, average_volume, average_opening_price,
         average_closing_price, lowest_price, highest_price, tick_count, first_timestamp, last_timestamp, last_seq)
       VALUES ('XOM', 9007199254740993, 1, 1, 1, 1, 1, 1, now(), now(), 1)`,
    );
    await db.query(
      `INSERT INTO minute_buckets (symbol, minute, open, open_seq, close, close_seq, low, high, volume,
         tick_count, sum_open, sum_close)
       VALUES ('XOM', now(), 1, 1, 1, 1, 1, 1, 9223372036854775807, 1, 1, 1)`,
    );
    expect(
      await migrate(
        db,
        readMigrations().filter(m => m.version <= 4),
      ),
    ).toEqual([4]);
    expect(
      await text(
        db,
        "SELECT pg_typeof(total_volume)::text || ' ' || total_volume::text AS v FROM aggregated_metrics",
      ),
    ).toEqual(["numeric 9007199254740993"]);
    expect(
      await text(db, "SELECT pg_typeof(volume)::text || ' ' || volume::text AS v FROM minute_buckets"),
    ).toEqual(["numeric 9223372036854775807"]);
  });

  it("stores a symbol's exact total volume past 2^53 from the log through the actor host, across a restart", async () => {
    const db = await database();
    await migrate(db);
    const log = new EmbeddedLog("stock", PARTITIONS);
    cleanups.push(() => log.close());
    const stream = extremeStream("exact-volume");
    const want = new SymbolActor(VOL, SETTINGS);
    let exact = 0n;
    for (const phase of [0, 1] as const) {
      const records = stream.filter(r => r.phase === phase);
      const producer = await log.createProducer();
      await producer.send(records.map(r => ({ key: r.key, value: r.value })));
      // The host's own chunks (2,000 messages) this time: each minute bucket's part stays below 2^53.
      await runHostToTheEnd(log, db, 2000, 90000);
      for (const p of await committed(log))
        expect(p.committed).toBe(p.highWatermark === 0 ? -1 : p.highWatermark);
      for (const r of records) {
        const tick = r.message as PriceTick;
        want.apply(tick, want.lastOffset + 1);
        exact += BigInt(tick.volume);
      }
    }
    expect(exact).toBeGreaterThan(2n ** 53n);
    expect(want.totalVolumeExact()).toBe(exact.toString());
    expect(await text(db, "SELECT total_volume::text AS v FROM aggregated_metrics")).toEqual([
      exact.toString(),
    ]);
    expect(await text(db, "SELECT sum(volume)::text AS v FROM minute_buckets")).toEqual([exact.toString()]);
    const { rows: records } = await db.query<{ state: string }>("SELECT state FROM actor_state");
    expect(records.map(r => JSON.parse(r.state))).toEqual([JSON.parse(JSON.stringify(want.snapshot()))]);
    expect(await totalVolumeReads(new ResultsQueries(db), VOL)).toEqual({
      latestPerSymbol: Number(exact),
      aggregates: Number(exact),
      aggregatesOverMinutes: Number(exact),
    });
  });

  it("stores a total past bigint's range: the actor's state after 2^32 ticks of the largest volume", async () => {
    const db = await database();
    await migrate(db);
    const tick = (i: number): PriceTick => ({
      stock_symbol: VOL,
      opening_price: 100,
      closing_price: 100,
      high: 100,
      low: 100,
      volume: MAX_VOLUME - i,
      timestamp: 1_700_000_000 + i,
    });
    const start = new SymbolActor(VOL, SETTINGS);
    start.apply(tick(0), 0);
    const snapshot = start.snapshot();
    const before = 2n ** 32n * BigInt(MAX_VOLUME);
    const sum = { sum: 100 * 2 ** 32, compensation: 0 };
    const aggregates = {
      ...snapshot.aggregates,
      count: 2 ** 32,
      totalVolume: Number(before),
      sumOpen: sum,
      sumClose: sum,
    };
    const actor = SymbolActor.restore({ ...snapshot, aggregates }, SETTINGS);
    const messages: LogMessage[] = Array.from({ length: 10 }, (_, i) => ({
      partition: 0,
      offset: i + 1,
      key: VOL,
      value: Buffer.from(JSON.stringify(tick(i + 1))),
      timestamp: Date.now(),
    }));
    const parsed = messages.map(m => parseLogMessage(m, 1));
    const { outputs } = applyChunk(0, messages, parsed, () => actor);
    const total = before + messages.reduce((s, _, i) => s + BigInt(MAX_VOLUME - i - 1), 0n);
    expect(total).toBeGreaterThan(2n ** 63n);
    expect(outputs.aggregates.map(a => a.totalVolume)).toEqual([total.toString()]);
    const store = new ResultsStore(db);
    await store.write(outputs);
    expect(await text(db, "SELECT total_volume::text AS v FROM aggregated_metrics")).toEqual([
      total.toString(),
    ]);
    expect((await new ResultsQueries(db).aggregates(VOL))?.total_volume).toBe(Number(total));
  });
});
