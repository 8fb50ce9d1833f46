import { migrate } from "../../../../adapters/sql/migrate";
import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { emptyOutputs, type BatchOutputs, type TickRow } from "../../../../runtime/batch-outputs";
import { ResultsStore } from "../../../../runtime/store/results-store";
import { seededRandom } from "../../../unit/domain/fixtures";
import { freshDatabase } from "../../../support/stack";
import { openDatabase } from "../../actors/harness";

/**
 * The results writer appends ticks above a partition's written offset with COPY, and inserts the
 * others with a conflict check. Both paths must store the very same rows, to the bit and to the
 * microsecond; the written offset must follow each write; and an append that meets a row stored
 * before written offsets existed must fall back to the check instead of failing the batch.
 */

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 60000);

async function database(): Promise<{ db: PostgresClient; store: ResultsStore }> {
  const fresh = await freshDatabase();
  cleanups.push(fresh.drop);
  const db = openDatabase(fresh.url);
  cleanups.push(() => db.close());
  await migrate(db);
  return { db, store: new ResultsStore(db) };
}

/**
 * Ticks of three symbols over several minutes, at awkward times: fractions of a microsecond
 * (including exact halves, which Postgres rounds to even), minute boundaries, and prices with
 * long mantissas. Indicators null on some rows.
 */
function batch(partition: number, from: number, count: number): BatchOutputs {
  const random = seededRandom(from + 17);
  const out = emptyOutputs(partition);
  const symbols = ["AAPL", "BRK.B", "BF-B"];
  for (let i = 0; i < count; i++) {
    const n = from + i;
    const base = 1_700_000_000 + Math.floor(n / 3) * 7;
    const fractions = [0, 0.5e-6, 1.5e-6, 0.1234565, random(), 59.9999995];
    const open = 100 + random() * 10;
    const close = open * (1 + (random() - 0.5) / 50);
    const row: TickRow = {
      symbol: symbols[n % 3],
      seq: Math.floor(n / 3) + 1,
      timestamp: base + fractions[n % fractions.length],
      open,
      close,
      high: Math.max(open, close) + random(),
      low: Math.min(open, close) - random(),
      volume: Math.floor(random() * 1e6),
      sma: n % 4 === 0 ? null : close / 3,
      ema: n % 5 === 0 ? null : Math.PI * close,
      rsi: n % 6 === 0 ? null : random() * 100,
      offset: n,
      logTimestamp: 1_700_000_000_000 + n * 13,
    };
    out.ticks.push(row);
  }
  return out;
}

const TICKS = `SELECT symbol, seq, "timestamp"::text AS ts, extract(epoch FROM "timestamp")::text AS epoch,
                      float8send(opening_price) AS open, float8send(closing_price) AS close,
                      float8send(high) AS high, float8send(low) AS low, volume,
                      float8send(moving_average) AS sma, float8send(exponential_moving_average) AS ema,
                      float8send(relative_strength_index) AS rsi, kafka_partition, kafka_offset,
                      log_timestamp::text AS log_ts
               FROM ticks ORDER BY symbol, seq`;
const BUCKETS = `SELECT symbol, minute::text AS minute, float8send(open) AS open, open_seq, float8send(close) AS close,
                        close_seq, float8send(low) AS low, float8send(high) AS high, volume, tick_count,
                        sum_open, sum_close
                 FROM minute_buckets ORDER BY symbol, minute`;

async function writtenOffset(db: PostgresClient, partition: number): Promise<number> {
  const { rows } = await db.query<{ written_offset: number }>(
    "SELECT written_offset FROM partition_epochs WHERE partition = $1",
    [partition],
  );
  return rows[0].written_offset;
}

describe("results writer: COPY above the written offset, checked insert below", () => {
  it("stores the same rows through COPY as through the checked insert", async () => {
    const appended = await database();
    const checked = await database();
    const epoch = await appended.store.claimPartition(0, "test");
    for (const from of [0, 600]) {
      const out = batch(0, from, 600);
      await appended.store.write(out, { partition: 0, epoch, actors: [], writtenOffset: from + 599 });
      // No fence: nothing says what is stored, so the checked insert.
      await checked.store.write(out);
    }
    expect(appended.store.checkedRewrites).toBe(0);
    expect(await writtenOffset(appended.db, 0)).toBe(1199);

    const a = await appended.db.query(TICKS);
    const c = await checked.db.query(TICKS);
    expect(a.rows).toHaveLength(1200);
    expect(a.rows).toEqual(c.rows);
    // A time at half a microsecond is rounded to even, as to_timestamp does.
    expect(a.rows.map(r => (r as { ts: string }).ts)).toContain("2023-11-14 22:13:20+00");

    const ab = await appended.db.query<Record<string, unknown>>(BUCKETS);
    const cb = await checked.db.query<Record<string, unknown>>(BUCKETS);
    expect(ab.rows.length).toBeGreaterThan(30);
    // Sums are of the same doubles, possibly added in another order: equal to rounding.
    const exact = (rows: Record<string, unknown>[]) =>
      rows.map(({ sum_open: _open, sum_close: _close, ...r }) => r);
    expect(exact(ab.rows)).toEqual(exact(cb.rows));
    ab.rows.forEach((r, i) => {
      expect(r.sum_open as number).toBeCloseTo(cb.rows[i].sum_open as number, 6);
      expect(r.sum_close as number).toBeCloseTo(cb.rows[i].sum_close as number, 6);
    });
  });

  it("writes a replay below the written offset with the check, and changes nothing", async () => {
    const { db, store } = await database();
    const epoch = await store.claimPartition(3, "test");
    const out = batch(3, 0, 300);
    await store.write(out, { partition: 3, epoch, actors: [], writtenOffset: 299 });
    const before = await db.query(TICKS);
    const bucketsBefore = await db.query(BUCKETS);

    // The same messages again, then a batch straddling the written offset.
    await store.write(out, { partition: 3, epoch, actors: [], writtenOffset: 299 });
    const straddling = batch(3, 200, 200);
    await store.write(straddling, { partition: 3, epoch, actors: [], writtenOffset: 399 });
    expect(store.checkedRewrites).toBe(0);
    expect(await writtenOffset(db, 3)).toBe(399);

    const after = await db.query(TICKS);
    expect(after.rows).toHaveLength(400);
    expect(after.rows.filter(r => (r as { kafka_offset: number }).kafka_offset < 300)).toEqual(before.rows);
    const ticksPerBucket = await db.query<{ n: number }>(
      "SELECT sum(tick_count)::int AS n FROM minute_buckets",
    );
    expect(ticksPerBucket.rows[0].n).toBe(400);
    expect(bucketsBefore.rows.length).toBeGreaterThan(0);
  });

  it("falls back to the checked insert when an append meets a row stored before written offsets", async () => {
    const { db, store } = await database();
    // Rows written without a fence leave the written offset unknown (-1), like results older
    // than the column.
    await store.write(batch(1, 0, 150));
    const epoch = await store.claimPartition(1, "test");
    expect(await writtenOffset(db, 1)).toBe(-1);

    await store.write(batch(1, 0, 300), { partition: 1, epoch, actors: [], writtenOffset: 299 });
    expect(store.checkedRewrites).toBe(1);
    expect(await writtenOffset(db, 1)).toBe(299);
    const { rows } = await db.query<{ n: number; keys: number }>(
      "SELECT count(*)::int AS n, count(DISTINCT (symbol, seq))::int AS keys FROM ticks",
    );
    expect(rows[0]).toEqual({ n: 300, keys: 300 });
    const buckets = await db.query<{ n: number }>("SELECT sum(tick_count)::int AS n FROM minute_buckets");
    expect(buckets.rows[0].n).toBe(300);

    // Past the fallback, new messages are appended again.
    await store.write(batch(1, 300, 100), { partition: 1, epoch, actors: [], writtenOffset: 399 });
    expect(store.checkedRewrites).toBe(1);
    expect(await writtenOffset(db, 1)).toBe(399);
  });

  it("refuses a write with a stale epoch before it appends anything", async () => {
    const { db, store } = await database();
    const old = await store.claimPartition(2, "first");
    await store.claimPartition(2, "second");
    await expect(
      store.write(batch(2, 0, 50), { partition: 2, epoch: old, actors: [], writtenOffset: 49 }),
    ).rejects.toThrow(/epoch/i);
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ticks");
    expect(rows[0].n).toBe(0);
    expect(await writtenOffset(db, 2)).toBe(-1);
  });
});
