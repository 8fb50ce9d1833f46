import { ResultsStore } from "../../../../runtime/store/results-store";
import { migratedDatabases } from "../support/database";
import { fenceOf, PartitionFeed, priceTicks } from "../support/feed";

/**
 * The engine's facade of the store: its writes go through group commit to the one write path,
 * and what a write records comes back through the reads a claim and a restore make. (Its
 * `checkedRewrites` count is results-writer.test.ts's fallback from COPY to the checked insert.)
 */

const fresh = migratedDatabases();

describe("ResultsStore", () => {
  it("claims a partition for a node without a generation check, over any generation's claim", async () => {
    const store = new ResultsStore((await fresh()).db);
    expect(await store.claim(0, "node-a", 9)).toEqual({ epoch: 1, writtenOffset: -1 });
    expect(await store.claim(0, "node-b", 8)).toHaveProperty("refused");
    expect(await store.claimPartition(0, "repl")).toBe(2);
  });

  it("writes several partitions' concurrent chunks in one transaction, and counts it", async () => {
    const store = new ResultsStore((await fresh()).db);
    const chunks = [0, 1, 2].map(p => new PartitionFeed(p).chunk(priceTicks(`RS${p}`, 20, p)));
    const epochs: number[] = [];
    for (const c of chunks) epochs.push(await store.claimPartition(c.out.partition, "test"));
    await Promise.all(chunks.map((c, i) => store.write(c.out, fenceOf(c, epochs[i]))));
    expect(store.combinedWrites).toBe(1);
    expect(store.checkedRewrites).toBe(0);
    expect(await store.lastStoredSeqs(["RS0", "RS1", "RS2"])).toHaveLength(3);
  });

  it("gives back what a fenced write recorded through the reads of a claim and a restore", async () => {
    const store = new ResultsStore((await fresh()).db);
    const epoch = await store.claimPartition(5, "test");
    const feed = new PartitionFeed(5, 10);
    const c = feed.chunk([...priceTicks("RS5", 8, 5), "{not json"]);
    const mark = { key: "order-1", use: 3, hi: 1, hiOffset: 17, at: 1_764_000_000_017 };
    await store.write(c.out, { ...fenceOf(c, epoch), marks: [mark] });

    expect(await store.claim(5, "next", null)).toEqual({ epoch: epoch + 1, writtenOffset: 18 });
    expect(await store.idempotencyMarks(5)).toEqual([mark]);
    // A message that is not JSON is invalid, never skipped as refused on a replay.
    expect(await store.refusedMessages(5, 0)).toEqual(new Map());
    const actor = feed.actors.get("RS5");
    if (!actor) throw new Error("the feed has no actor of RS5");
    expect(await store.actorPositions(["RS5"])).toEqual([
      { symbol: "RS5", partition: 5, seq: 8, lastOffset: 17 },
    ]);
    expect((await store.actorRecords(["RS5"])).map(r => JSON.parse(r.state))).toEqual([
      JSON.parse(JSON.stringify(actor.snapshot())),
    ]);
    expect(await store.tickOrigin("RS5", 8)).toEqual({ partition: 5, offset: 17 });
    expect((await store.storedTicks("RS5", 8)).map(t => t.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await store.pruneIdempotencyMarks(5, mark.at + 1)).toBe(1);
  });
});
