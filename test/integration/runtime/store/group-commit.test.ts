import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { FencedError } from "../../../../domain/errors";
import { GroupCommit } from "../../../../runtime/store/group-commit";
import { ResultsStore } from "../../../../runtime/store/results-store";
import { ResultsWriter } from "../../../../runtime/store/results-writer";
import { migratedDatabases } from "../support/database";
import { fenceOf, PartitionFeed, priceTicks, type AppliedChunk } from "../support/feed";

/**
 * Group commit on Postgres: the chunks several partitions ask to write in the same turn share one
 * transaction (counted by the writer's `combinedWrites`), at most 2,000 ticks of them; what cannot
 * share goes alone; and a combined transaction that fails is written again chunk by chunk, so that
 * each chunk meets its own error.
 */

const fresh = migratedDatabases();

async function setUp(partitions: number[]) {
  const { db } = await fresh();
  const store = new ResultsStore(db);
  const epochs = new Map<number, number>();
  for (const p of partitions) epochs.set(p, await store.claimPartition(p, "test"));
  const writer = new ResultsWriter(db);
  /** The chunk's fence under the epoch its partition was claimed with. */
  const fence = (c: AppliedChunk, writtenBefore?: number) => {
    const epoch = epochs.get(c.out.partition);
    if (epoch === undefined) throw new Error(`partition ${c.out.partition} was not claimed`);
    return fenceOf(c, epoch, writtenBefore);
  };
  return {
    db,
    writer,
    group: new GroupCommit(writer),
    fence,
    feeds: partitions.map(p => new PartitionFeed(p)),
  };
}

async function ticksPerPartition(db: PostgresClient): Promise<Record<number, number>> {
  const { rows } = await db.query<{ p: number; n: number }>(
    "SELECT kafka_partition AS p, count(*)::int AS n FROM ticks GROUP BY 1 ORDER BY 1",
  );
  return Object.fromEntries(rows.map(r => [r.p, r.n]));
}

async function writtenOffsets(db: PostgresClient): Promise<Record<number, number>> {
  const { rows } = await db.query<{ p: number; w: number }>(
    "SELECT partition AS p, written_offset AS w FROM partition_epochs ORDER BY 1",
  );
  return Object.fromEntries(rows.map(r => [r.p, r.w]));
}

describe("group commit", () => {
  it("writes the chunks of several partitions asked for in the same turn in one transaction", async () => {
    const { db, writer, group, fence, feeds } = await setUp([0, 1, 2]);
    const chunks = feeds.map(f => f.chunk(priceTicks(`GC${f.partition}`, 60, f.partition)));
    const results = await Promise.all(chunks.map(c => group.write(c.out, fence(c))));
    expect(writer.combinedWrites).toBe(1);
    // Each partition's loop learns of its own chunk's new signals.
    expect(results.map(r => r.newSignals)).toEqual(chunks.map(c => c.out.signals));
    expect(chunks.every(c => c.out.signals.length > 0)).toBe(true);
    expect(await ticksPerPartition(db)).toEqual({ 0: 60, 1: 60, 2: 60 });
    expect(await writtenOffsets(db)).toEqual({ 0: 59, 1: 59, 2: 59 });
  });

  it("writes each chunk alone when one fence of a combined write fails, so that each meets its own error", async () => {
    const { db, writer, group, fence, feeds } = await setUp([0, 1, 2]);
    // Another node claimed partition 1 meanwhile.
    await new ResultsStore(db).claimPartition(1, "other");
    const chunks = feeds.map(f => f.chunk(priceTicks(`GC${f.partition}`, 30, f.partition)));
    const outcomes = await Promise.allSettled(chunks.map(c => group.write(c.out, fence(c))));
    expect(outcomes.map(o => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(outcomes[1].status === "rejected" && outcomes[1].reason).toBeInstanceOf(FencedError);
    expect(writer.combinedWrites).toBe(0);
    expect(await ticksPerPartition(db)).toEqual({ 0: 30, 2: 30 });
    expect(await writtenOffsets(db)).toEqual({ 0: 29, 1: -1, 2: 29 });
  });

  it("sends alone what cannot share a transaction: an unfenced write, a replay, an unknown written offset, a large chunk", async () => {
    const { db, writer, group, fence, feeds } = await setUp([3, 4, 5, 6]);
    const [unfenced, replay, unknown, large] = feeds.map(f =>
      f.chunk(priceTicks(`GC${f.partition}`, f.partition === 6 ? 1000 : 20, f.partition)),
    );
    await Promise.all([
      group.write(unfenced.out),
      group.write(replay.out, fence(replay, replay.last)),
      group.write(unknown.out, { ...fence(unknown), writtenBefore: undefined }),
      group.write(large.out, fence(large)),
    ]);
    expect(writer.combinedWrites).toBe(0);
    expect(await ticksPerPartition(db)).toEqual({ 3: 20, 4: 20, 5: 20, 6: 1000 });
  });

  it("takes at most 2,000 ticks into one transaction", async () => {
    const { db, writer, group, fence, feeds } = await setUp([0, 1, 2, 3]);
    const chunks = feeds.map(f => f.chunk(priceTicks(`GC${f.partition}`, 900, f.partition)));
    await Promise.all(chunks.map(c => group.write(c.out, fence(c))));
    // Two chunks of 900 fit, a third would not: two transactions of two.
    expect(writer.combinedWrites).toBe(2);
    expect(await ticksPerPartition(db)).toEqual({ 0: 900, 1: 900, 2: 900, 3: 900 });
  });
});
