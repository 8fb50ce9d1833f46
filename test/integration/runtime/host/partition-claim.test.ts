import type { LogBatch } from "../../../../adapters/log/types";
import type { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { Abandoned } from "../../../../runtime/host/dependency-retry";
import { PartitionClaimer, type ClaimSteps } from "../../../../runtime/host/partition-claim";
import { upsertMarks } from "../../../../runtime/store/partition-fence";
import { ResultsStore } from "../../../../runtime/store/results-store";
import { recordingLogger } from "../../../support/logger";
import { migratedDatabases } from "../support/database";

/**
 * A partition's claim on a real database, under the consumer group generation the log confirms
 * for the batch's assignment: refused by a later generation's claim, unless the log confirms this
 * member's generation as current (the group was made anew), and made only with the idempotency
 * marks and refused messages processing needs.
 */

const fresh = migratedDatabases();
let db: PostgresClient;
let store: ResultsStore;
beforeAll(async () => {
  ({ db } = await fresh());
  store = new ResultsStore(db);
});

/** What the log says of this member's generation; each heartbeat may change it. */
interface Membership {
  generation: { id: number; confirmedAt: number } | null;
  onHeartbeat?: () => Membership["generation"];
}

/** A batch of `partition` from offset 10, in the generation `membership` says; absent: a log without generations. */
function batchOf(
  partition: number,
  membership?: Membership,
  active = () => true,
): LogBatch & { heartbeats: number } {
  const batch = {
    partition,
    messages: [10, 11, 12].map(offset => ({ partition, offset, key: "AAPL", value: null, timestamp: 0 })),
    highWatermark: 13,
    heartbeats: 0,
    heartbeat: async () => {
      batch.heartbeats += 1;
      if (membership?.onHeartbeat) membership.generation = membership.onHeartbeat();
    },
    isActive: active,
    groupGeneration: membership && (() => membership.generation),
  };
  return batch;
}

function stepsOf(batch: LogBatch): ClaimSteps {
  return { partition: batch.partition, batch, retry: (_what, fn) => fn(), stopping: () => false };
}

const epochRow = async (partition: number) =>
  (
    await db.query<{ epoch: number; owner: string; generation: number | null }>(
      "SELECT epoch, owner, generation FROM partition_epochs WHERE partition = $1",
      [partition],
    )
  ).rows;

describe("PartitionClaimer", () => {
  it("claims once the log confirms the batch's generation, with the marks and the refusals from the batch on", async () => {
    const mark = { key: "order-1", use: 2, hi: 0, hiOffset: 8, at: 1_764_000_000_008 };
    await db.transaction(tx => upsertMarks(tx, 0, [mark]));
    await db.query(
      `INSERT INTO dead_letters (kafka_partition, kafka_offset, reason, kind) VALUES
         (0, 3, 'refused before the batch', 'refused'), (0, 12, 'overflows', 'unappliable'), (0, 11, 'not JSON', 'invalid')`,
    );
    // Kafka confirms a member's generation with its first heartbeat of the assignment.
    const membership: Membership = {
      generation: null,
      onHeartbeat: () => ({ id: 4, confirmedAt: Date.now() }),
    };
    const batch = batchOf(0, membership);
    const claimed = await new PartitionClaimer(store, "node-a", recordingLogger()).claim(stepsOf(batch));
    expect(claimed).toEqual({
      epoch: 1,
      writtenOffset: -1,
      marks: [mark],
      refused: new Map([[12, { kind: "unappliable", reason: "overflows" }]]),
    });
    expect(batch.heartbeats).toBeGreaterThan(0);
    expect(await epochRow(0)).toEqual([{ epoch: 1, owner: "node-a", generation: 4 }]);
  });

  it("is stale when a later generation holds the partition and the log has moved this member on", async () => {
    await store.claim(1, "rightful", 9);
    // This member froze in generation 5; its next heartbeat learns of the group's generation 10.
    const membership: Membership = {
      generation: { id: 5, confirmedAt: Date.now() - 60_000 },
      onHeartbeat: () => ({ id: 10, confirmedAt: Date.now() }),
    };
    const claimed = await new PartitionClaimer(store, "paused", recordingLogger()).claim(
      stepsOf(batchOf(1, membership)),
    );
    expect(claimed).toEqual({
      stale:
        "partition 1: not claimed in generation 5 of the consumer group: rightful claimed it in generation 9, " +
        "so this assignment is stale",
    });
    expect(await epochRow(1)).toEqual([{ epoch: 1, owner: "rightful", generation: 9 }]);
  });

  it("overrules a later generation's claim once the log confirms this member's as current: the group was made anew", async () => {
    await store.claim(2, "old-group", 40);
    const logger = recordingLogger();
    const membership: Membership = {
      generation: { id: 1, confirmedAt: Date.now() - 1 },
      onHeartbeat: () => ({ id: 1, confirmedAt: Date.now() + 1 }),
    };
    const claimed = await new PartitionClaimer(store, "new-group", logger).claim(
      stepsOf(batchOf(2, membership)),
    );
    expect(claimed).toMatchObject({ epoch: 2, writtenOffset: -1 });
    expect(await epochRow(2)).toEqual([{ epoch: 2, owner: "new-group", generation: 1 }]);
    expect(logger.lines).toEqual([
      expect.stringMatching(/^warn partition 2: .*the consumer group was made anew; claiming it$/),
    ]);
  });

  it("gives the batch up, claiming nothing, when the log does not confirm the generation in time or the batch is revoked", async () => {
    const unconfirmed = { generation: null };
    const claimer = new PartitionClaimer(store, "node-a", recordingLogger(), 200);
    await expect(claimer.claim(stepsOf(batchOf(3, unconfirmed)))).rejects.toThrow(
      /partition 3: the log did not confirm this member's generation/,
    );
    await expect(claimer.claim(stepsOf(batchOf(3, unconfirmed, () => false)))).rejects.toThrow(Abandoned);
    expect(await epochRow(3)).toEqual([]);
  });

  it("claims with no generation on a log that numbers none", async () => {
    await store.claim(4, "kafka-node", 7);
    const claimed = await new PartitionClaimer(store, "embedded", recordingLogger()).claim(
      stepsOf(batchOf(4)),
    );
    expect(claimed).toMatchObject({ epoch: 2 });
    expect(await epochRow(4)).toEqual([{ epoch: 2, owner: "embedded", generation: null }]);
  });
});
