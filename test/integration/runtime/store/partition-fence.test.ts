import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { FencedError } from "../../../../domain/errors";
import type { KeyedMark } from "../../../../runtime/apply-chunk";
import {
  claim,
  fence,
  fenceMany,
  idempotencyMarks,
  pruneIdempotencyMarks,
  refusedMessages,
  upsertMarks,
  type RecordFence,
} from "../../../../runtime/store/partition-fence";
import { migratedDatabases } from "../support/database";

/**
 * A partition's ownership in Postgres: claims that bump its epoch under the consumer group's
 * generations, the fence every results transaction passes, and what a claim loads (the
 * idempotency marks, the messages refused before).
 */

const fresh = migratedDatabases();
let db: PostgresClient;
beforeAll(async () => {
  ({ db } = await fresh());
});

async function epochRow(partition: number) {
  const { rows } = await db.query<{
    epoch: number;
    owner: string | null;
    generation: number | null;
    written_offset: number;
  }>("SELECT epoch, owner, generation, written_offset FROM partition_epochs WHERE partition = $1", [
    partition,
  ]);
  return rows[0];
}

/** The epoch of a claim with no generation, which nothing refuses. */
async function claimed(partition: number, owner = "a"): Promise<number> {
  const c = await claim(db, partition, owner, null);
  if ("refused" in c) throw new Error(`partition ${partition}: a claim without generation was refused`);
  return c.epoch;
}

/** The fence of a results write of `partition` under `epoch`, moving its written offset to `writtenOffset`. */
const fenceAt = (
  partition: number,
  epoch: number,
  writtenOffset?: number,
  writtenBefore?: number,
): RecordFence => ({
  partition,
  epoch,
  actors: [],
  writtenOffset,
  writtenBefore,
});

describe("claim", () => {
  it("bumps the epoch with every claim and records the claimant, the written offset unknown at first", async () => {
    expect(await claim(db, 0, "node-a", 3)).toEqual({ epoch: 1, writtenOffset: -1 });
    expect(await claim(db, 0, "node-b", 3)).toEqual({ epoch: 2, writtenOffset: -1 });
    expect(await epochRow(0)).toEqual({ epoch: 2, owner: "node-b", generation: 3, written_offset: -1 });
  });

  it("refuses a claim of an older generation and changes nothing, naming who holds the partition", async () => {
    await claim(db, 1, "rightful", 6);
    expect(await claim(db, 1, "paused", 5)).toEqual({ refused: { owner: "rightful", generation: 6 } });
    expect(await epochRow(1)).toEqual({ epoch: 1, owner: "rightful", generation: 6, written_offset: -1 });
    // The same generation, or a later one, claims.
    expect(await claim(db, 1, "other", 6)).toMatchObject({ epoch: 2 });
    expect(await claim(db, 1, "next", 7)).toMatchObject({ epoch: 3 });
  });

  it("claims whatever the generation with a log that numbers none", async () => {
    await claim(db, 2, "kafka-node", 9);
    expect(await claim(db, 2, "embedded-node", null)).toMatchObject({ epoch: 2 });
    expect(await claim(db, 2, "kafka-node", 1)).toMatchObject({ epoch: 3 });
  });

  it("overrules a later generation's claim when the group was made anew", async () => {
    await claim(db, 3, "old-group", 40);
    expect(await claim(db, 3, "new-group", 1)).toHaveProperty("refused");
    expect(await claim(db, 3, "new-group", 1, true)).toEqual({ epoch: 2, writtenOffset: -1 });
    expect(await epochRow(3)).toMatchObject({ owner: "new-group", generation: 1 });
  });

  it("returns how far the partition is written", async () => {
    const epoch = await claimed(4);
    await db.transaction(tx => fence(tx, fenceAt(4, epoch, 99)));
    expect(await claim(db, 4, "b", null)).toEqual({ epoch: epoch + 1, writtenOffset: 99 });
  });
});

describe("fence", () => {
  it("lets the current epoch's write through, moving the written offset up and returning it as it was", async () => {
    const epoch = await claimed(10);
    expect(await db.transaction(tx => fence(tx, fenceAt(10, epoch, 49)))).toBe(-1);
    // With the written offset known to the owner: one UPDATE.
    expect(await db.transaction(tx => fence(tx, fenceAt(10, epoch, 99, 49)))).toBe(49);
    // Never back: a replay's fence leaves it where it is.
    expect(await db.transaction(tx => fence(tx, fenceAt(10, epoch, 20)))).toBe(99);
    expect((await epochRow(10)).written_offset).toBe(99);
  });

  it("refuses the write of an older epoch with FencedError, on either path, and moves nothing", async () => {
    const old = await claimed(11);
    await db.transaction(tx => fence(tx, fenceAt(11, old, 9)));
    await claimed(11, "b");
    for (const f of [fenceAt(11, old, 19), fenceAt(11, old, 19, 9)]) {
      const refused = db.transaction(tx => fence(tx, f));
      await expect(refused).rejects.toThrow(FencedError);
      await expect(refused).rejects.toMatchObject({ partition: 11, epoch: old, current: old + 1 });
    }
    expect((await epochRow(11)).written_offset).toBe(9);
  });

  it("records a partition nobody claimed yet with the write's epoch", async () => {
    expect(await db.transaction(tx => fence(tx, fenceAt(12, 5, 7)))).toBe(-1);
    expect(await epochRow(12)).toMatchObject({ epoch: 5, written_offset: 7 });
  });
});

describe("fenceMany", () => {
  it("moves every partition's written offset when every epoch holds", async () => {
    const epochs = [await claimed(20), await claimed(21)];
    await db.transaction(tx =>
      fenceMany(tx, [fenceAt(20, epochs[0], 30, -1), fenceAt(21, epochs[1], 40, -1)]),
    );
    expect((await epochRow(20)).written_offset).toBe(30);
    expect((await epochRow(21)).written_offset).toBe(40);
  });

  it("refuses the whole transaction when one partition's epoch moved, and nothing of it stays", async () => {
    const e22 = await claimed(22);
    const e23 = await claimed(23);
    await claimed(23, "b");
    const combined = db.transaction(async tx => {
      await fenceMany(tx, [fenceAt(22, e22, 30, -1), fenceAt(23, e23, 40, -1)]);
    });
    await expect(combined).rejects.toThrow(/epoch moved: its batch is written alone/);
    expect((await epochRow(22)).written_offset).toBe(-1);
    expect((await epochRow(23)).written_offset).toBe(-1);
  });
});

describe("idempotency marks", () => {
  const at = 1_764_000_000_123;
  const marks: KeyedMark[] = [
    { key: "order-1", use: 17, hi: 2, hiOffset: 40, at },
    { key: "order-2", use: 0, hi: 0, hiOffset: 41, at: at + 60_000 },
  ];

  it("loads a partition's marks as they were written, use ids and log times included", async () => {
    await db.transaction(tx => upsertMarks(tx, 30, marks));
    await db.transaction(tx => upsertMarks(tx, 31, [{ ...marks[0], hi: 9 }]));
    const loaded = await idempotencyMarks(db, 30);
    expect(loaded.sort((a, b) => a.key.localeCompare(b.key))).toEqual(marks);
  });

  it("replaces a key's mark with the owner's, whatever its index: a new use of the key starts over", async () => {
    await db.transaction(tx => upsertMarks(tx, 32, marks));
    const newUse = { key: "order-1", use: 99, hi: 0, hiOffset: 70, at: at + 1 };
    await db.transaction(tx => upsertMarks(tx, 32, [newUse]));
    expect((await idempotencyMarks(db, 32)).find(m => m.key === "order-1")).toEqual(newUse);
  });

  it("prunes the marks set by messages the log accepted before a time, of one partition", async () => {
    for (const p of [33, 34]) await db.transaction(tx => upsertMarks(tx, p, marks));
    expect(await pruneIdempotencyMarks(db, 33, at + 30_000)).toBe(1);
    expect((await idempotencyMarks(db, 33)).map(m => m.key)).toEqual(["order-2"]);
    expect(await idempotencyMarks(db, 34)).toHaveLength(2);
  });
});

describe("refusedMessages", () => {
  it("returns the messages refused unapplied from an offset on, not the invalid ones, of one partition", async () => {
    await db.query(
      `INSERT INTO dead_letters (kafka_partition, kafka_offset, message_key, payload, reason, kind) VALUES
         (40, 4, 'AAPL', '{}', 'overflows', 'unappliable'),
         (40, 5, 'AAPL', '{}', 'overflows', 'unappliable'),
         (40, 6, NULL, 'x', 'not JSON', 'invalid'),
         (40, 7, 'AAPL', '{}', 'Postgres refused its results: out of range', 'refused'),
         (41, 8, 'MSFT', '{}', 'overflows', 'unappliable')`,
    );
    expect(await refusedMessages(db, 40, 5)).toEqual(
      new Map([
        [5, { kind: "unappliable", reason: "overflows" }],
        [7, { kind: "refused", reason: "Postgres refused its results: out of range" }],
      ]),
    );
    expect(await refusedMessages(db, 40, 8)).toEqual(new Map());
  });
});
