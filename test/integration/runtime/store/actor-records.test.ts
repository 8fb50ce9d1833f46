import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import type { ActorRecord } from "../../../../runtime/store/actor-records";
import {
  actorPositions,
  actorRecords,
  lastStoredSeqs,
  storedTicks,
  tickOrigin,
  upsertActorRecords,
} from "../../../../runtime/store/actor-records";
import { ResultsWriter } from "../../../../runtime/store/results-writer";
import { migratedDatabases } from "../support/database";
import { interleave, PartitionFeed, priceTicks } from "../support/feed";

/**
 * The actors' records (`actor_state`) and what the host reads of the stored results to resume an
 * actor exactly: where the symbol's ticks end, where a stored tick came from, and the ticks its
 * indicators are recomputed from.
 */

const fresh = migratedDatabases();
let db: PostgresClient;
beforeAll(async () => {
  ({ db } = await fresh());
});

const record = (symbol: string, partition: number, seq: number, lastOffset: number): ActorRecord => ({
  symbol,
  partition,
  seq,
  lastOffset,
  state: JSON.stringify({ symbol, seq, lastOffset }),
});

const bySymbol = <T extends { symbol: string }>(rows: T[]) =>
  [...rows].sort((a, b) => a.symbol.localeCompare(b.symbol));

describe("the actors' records", () => {
  it("gives each recorded symbol's position without its state, and its record with it", async () => {
    await db.transaction(tx => upsertActorRecords(tx, [record("REC1", 0, 5, 40), record("REC2", 1, 2, 7)]));
    expect(bySymbol(await actorPositions(db, ["REC1", "REC2", "NONE"]))).toEqual([
      { symbol: "REC1", partition: 0, seq: 5, lastOffset: 40 },
      { symbol: "REC2", partition: 1, seq: 2, lastOffset: 7 },
    ]);
    expect(await actorRecords(db, ["REC2", "NONE"])).toEqual([record("REC2", 1, 2, 7)]);
    expect(await actorPositions(db, [])).toEqual([]);
    expect(await actorRecords(db, [])).toEqual([]);
  });

  it("never moves a record back within its partition, and takes a record of another partition", async () => {
    await db.transaction(tx => upsertActorRecords(tx, [record("REC3", 0, 5, 40)]));
    // A late write of an older state (a replay's chunk): the record stays.
    await db.transaction(tx => upsertActorRecords(tx, [record("REC3", 0, 4, 30)]));
    expect(await actorRecords(db, ["REC3"])).toEqual([record("REC3", 0, 5, 40)]);
    // The same offset again (a record of the same state): written.
    await db.transaction(tx => upsertActorRecords(tx, [{ ...record("REC3", 0, 5, 40), state: "again" }]));
    expect((await actorRecords(db, ["REC3"]))[0].state).toBe("again");
    // The partition count changed: offsets of the new partition start low.
    await db.transaction(tx => upsertActorRecords(tx, [record("REC3", 3, 6, 2)]));
    expect(await actorRecords(db, ["REC3"])).toEqual([record("REC3", 3, 6, 2)]);
  });
});

describe("what the stored results say of an actor", () => {
  const feed = new PartitionFeed(2, 100);
  const ticks = { A: priceTicks("ORIG_A", 12, 5), B: priceTicks("ORIG_B", 5, 6) };
  beforeAll(async () => {
    const writer = new ResultsWriter(db);
    for (const part of [0, 6])
      await writer.writeAlone({
        out: feed.chunk(interleave(ticks.A.slice(part, part + 6), ticks.B.slice(part, part + 6))).out,
      });
  });

  it("says where each symbol's stored ticks end, for the symbols that have any", async () => {
    expect(bySymbol(await lastStoredSeqs(db, ["ORIG_A", "ORIG_B", "NONE"]))).toEqual([
      { symbol: "ORIG_A", seq: 12 },
      { symbol: "ORIG_B", seq: 5 },
    ]);
  });

  it("says which partition and offset a stored tick came from", async () => {
    // Interleaved from offset 100: A1 B1 A2 B2 ... B5 A6, then A7.. from offset 111.
    expect(await tickOrigin(db, "ORIG_A", 1)).toEqual({ partition: 2, offset: 100 });
    expect(await tickOrigin(db, "ORIG_B", 5)).toEqual({ partition: 2, offset: 109 });
    expect(await tickOrigin(db, "ORIG_A", 7)).toEqual({ partition: 2, offset: 111 });
    expect(await tickOrigin(db, "ORIG_A", 13)).toBeNull();
  });

  it("gives a symbol's stored ticks up to a seq, in order, as the actor computed its indicators from them", async () => {
    const stored = await storedTicks(db, "ORIG_A", 4);
    expect(stored).toEqual(
      ticks.A.slice(0, 4).map((t, i) => ({ seq: i + 1, close: t.closing_price, timestamp: t.timestamp })),
    );
    expect(await storedTicks(db, "ORIG_A", 0)).toEqual([]);
  });
});
