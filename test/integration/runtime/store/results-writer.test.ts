import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { emptyOutputs, type BatchOutputs, type TickRow } from "../../../../runtime/batch-outputs";
import { ResultsStore, type RecordFence } from "../../../../runtime/store/results-store";
import { ResultsWriter } from "../../../../runtime/store/results-writer";
import { seededRandom } from "../../../unit/domain/fixtures";
import { migratedDatabases, storedRows } from "../support/database";
import { fenceOf, interleave, PartitionFeed, priceTicks, type AppliedChunk } from "../support/feed";
import type { StockMessage } from "../../../../domain/messages";

/**
 * The results writer appends ticks above a partition's written offset with COPY, and inserts the
 * others with a conflict check. Both paths must store the very same rows, to the bit and to the
 * microsecond; the written offset must follow each write; and an append that meets a row stored
 * before written offsets existed must fall back to the check instead of failing the batch. One
 * transaction of several partitions' chunks stores what each chunk alone would, and a replayed
 * chunk changes nothing and announces no signal again.
 */

const fresh = migratedDatabases();

async function database(): Promise<{ db: PostgresClient; store: ResultsStore }> {
  const { db } = await fresh();
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

/** A partition's chunk of everything the host writes: ticks (with signals), side data, a market-wide figure, a dead letter. */
function messagesOf(partition: number, ticks = 40): (StockMessage | string)[] {
  const symbol = `SYM${partition}`;
  const book = [1, 2].map(i => ({
    data_type: "order_book" as const,
    stock_symbol: symbol,
    order_type: i === 1 ? ("buy" as const) : ("sell" as const),
    price: 100 + i,
    quantity: 10 * i,
    timestamp: 1_700_000_000 + i,
  }));
  const others = [
    ...book,
    {
      data_type: "economic_indicator" as const,
      indicator_name: "GDP Growth Rate",
      value: 2.5 + partition,
      timestamp: 1_700_000_100,
    },
    "{not json",
  ];
  return interleave<StockMessage | string>(priceTicks(symbol, ticks, 40 + partition), others);
}

/** The chunk's write under `epoch`, with an idempotency mark set by its last message. */
function writeOf(c: AppliedChunk, epoch: number): { out: BatchOutputs; record: RecordFence } {
  const mark = {
    key: `key-${c.out.partition}`,
    use: 1,
    hi: c.last,
    hiOffset: c.last,
    at: 1_764_000_000_000 + c.last,
  };
  return { out: c.out, record: { ...fenceOf(c, epoch), marks: [mark] } };
}

describe("results writer: one transaction for several partitions' chunks", () => {
  it("stores several partitions' chunks in one transaction as each chunk in a transaction of its own", async () => {
    const combined = await fresh();
    const alone = await fresh();
    const partitions = [0, 1, 2];
    for (const { db } of [combined, alone])
      for (const p of partitions) expect(await new ResultsStore(db).claimPartition(p, "test")).toBe(1);
    const feeds = partitions.map(p => new PartitionFeed(p));
    const combinedWriter = new ResultsWriter(combined.db);
    const aloneWriter = new ResultsWriter(alone.db);
    for (let round = 0; round < 2; round++) {
      const writes = feeds.map(f => writeOf(f.chunk(messagesOf(f.partition)), 1));
      const together = await combinedWriter.writeCombined(writes);
      const each = [];
      for (const w of writes) each.push(await aloneWriter.writeAlone(w));
      expect(together).toEqual(each);
      expect(together.map(r => r.newSignals)).toEqual(writes.map(w => w.out.signals));
    }
    expect(combinedWriter.combinedWrites).toBe(2);
    expect(aloneWriter.combinedWrites).toBe(0);
    const rows = await storedRows(combined.db);
    expect(rows).toEqual(await storedRows(alone.db));
    // Every table the chunks fill holds their rows: nothing was left out on both sides alike.
    for (const table of [
      "ticks",
      "signals",
      "order_book",
      "economic_indicators",
      "dead_letters",
      "idempotency_marks",
    ])
      expect(rows[table].length).toBeGreaterThan(0);
    expect(rows.partition_epochs.map(r => r.written_offset)).toEqual(feeds.map(() => 2 * 44 - 1));
  });

  it("refuses a combined write unless it knows each chunk's written offset", async () => {
    const { db } = await fresh();
    const writer = new ResultsWriter(db);
    const feeds = [new PartitionFeed(0), new PartitionFeed(1)];
    const writes = feeds.map(f => writeOf(f.chunk(messagesOf(f.partition)), 1));
    writes[1] = { out: writes[1].out, record: { ...writes[1].record, writtenBefore: undefined } };
    await expect(writer.writeCombined(writes)).rejects.toThrow(/every chunk's written offset/);
    expect((await storedRows(db)).ticks).toEqual([]);
  });
});

describe("results writer: a replayed chunk", () => {
  it("changes no table, and announces none of its signals again", async () => {
    const { db } = await fresh();
    const writer = new ResultsWriter(db);
    const epoch = await new ResultsStore(db).claimPartition(0, "test");
    const c = new PartitionFeed(0).chunk(messagesOf(0));
    const first = await writer.writeAlone(writeOf(c, epoch));
    expect(first.newSignals.length).toBeGreaterThan(0);
    expect(first.newSignals).toEqual(c.out.signals);
    const before = await storedRows(db);

    // The log hands the chunk again (a restart from an older commit): the partition holds it written.
    const again = await writer.writeAlone({
      out: c.out,
      record: { ...writeOf(c, epoch).record, writtenBefore: c.last },
    });
    expect(again.newSignals).toEqual([]);
    expect(await storedRows(db)).toEqual(before);
    expect(writer.checkedRewrites).toBe(0);
  });

  it("announces only the signals of the messages past the stored ones when it reaches beyond them", async () => {
    const { db } = await fresh();
    const writer = new ResultsWriter(db);
    const epoch = await new ResultsStore(db).claimPartition(0, "test");
    const all = priceTicks("SYM0", 120, 40);
    const stored = new PartitionFeed(0).chunk(all.slice(0, 60));
    await writer.writeAlone({ out: stored.out, record: fenceOf(stored, epoch) });

    // A replay from offset 0 with a larger chunk: the first 60 messages give the same results.
    const longer = new PartitionFeed(0).chunk(all);
    const { newSignals } = await writer.writeAlone({
      out: longer.out,
      record: fenceOf(longer, epoch, stored.last),
    });
    const storedSeqs = new Set(stored.out.signals.map(s => s.seq));
    expect(stored.out.signals.length).toBeGreaterThan(0);
    expect(newSignals.length).toBeGreaterThan(0);
    expect(newSignals).toEqual(longer.out.signals.filter(s => !storedSeqs.has(s.seq)));
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM signals");
    expect(rows[0].n).toBe(longer.out.signals.length);
  });
});
