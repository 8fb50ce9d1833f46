import { setTimeout as sleep } from "node:timers/promises";
import type { EmbeddedLog } from "../../../../../adapters/log/embedded-log";
import { MemorySnapshotStore } from "../../../../../adapters/snapshots/memory-snapshots";
import type { SqlClient } from "../../../../../adapters/sql/types";
import { ActorHost } from "../../../../../runtime/host/actor-host";
import { ResultsQueries } from "../../../../../runtime/store/results-queries";
import { ResultsStore } from "../../../../../runtime/store/results-store";
import { GROUP, PARTITIONS, SETTINGS } from "./host-stream";

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * A host of the group, started anew (a restart) with an empty snapshot cache, so that every actor
 * it meets again comes back from its record in the database, run until it has committed every
 * partition to its end. A partition that cannot store a batch fetches it again and again: that
 * is a timeout here. Returns how it activated actors ("source/reason" -> count).
 */
export async function runHostToTheEnd(
  log: EmbeddedLog,
  sql: SqlClient,
  chunkSize: number,
  timeoutMs = 60000,
): Promise<Record<string, number>> {
  const restores: Record<string, number> = {};
  const consumer = log.createConsumer({ groupId: GROUP, maxBatchMessages: chunkSize });
  const host = new ActorHost({
    settings: SETTINGS,
    results: new ResultsStore(sql),
    snapshots: new MemorySnapshotStore(),
    commit: (partition, next) => consumer.commit(partition, next),
    partitionCount: PARTITIONS,
    idleMs: 60000,
    retryMaxBackoffMs: 50,
    chunkSize,
    logger: quiet,
    observer: {
      restored: (_partition, source, reason, count) => {
        restores[`${source}/${reason}`] = (restores[`${source}/${reason}`] ?? 0) + count;
      },
    },
  });
  await consumer.run({
    onAssignment: (partitions, generation) => host.onAssignment(partitions, generation),
    onBatch: (batch, generation) => host.handleBatch(batch, generation),
  });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lag = await log.lag(GROUP);
      if (lag.every(p => p.highWatermark === 0 || p.committed === p.highWatermark)) return restores;
      if (Date.now() > deadline)
        throw new Error(`the log was not consumed to its end: ${JSON.stringify(lag)}`);
      await sleep(10);
    }
  } finally {
    await consumer.stop();
  }
}

/** Every partition's committed offset and end, after a host ran. */
export async function committed(
  log: EmbeddedLog,
): Promise<{ partition: number; committed: number; highWatermark: number }[]> {
  return (await log.lag(GROUP)).map(({ partition, committed, highWatermark }) => ({
    partition,
    committed,
    highWatermark,
  }));
}

/** total_volume as the query service hands it to the REST API, from each of its reads. */
export async function totalVolumeReads(
  store: ResultsQueries,
  symbol: string,
): Promise<Record<string, unknown>> {
  const latest = (await store.latestPerSymbol()).find(r => r.symbol === symbol);
  return {
    latestPerSymbol: latest?.total_volume,
    aggregates: (await store.aggregates(symbol))?.total_volume,
    aggregatesOverMinutes: (await store.aggregatesOverMinutes(symbol, null, null)).total_volume,
  };
}
