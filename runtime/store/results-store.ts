import type { SqlClient } from "../../adapters/sql/types";
import type { Signal, StoredTick } from "../../domain/symbol-actor";
import type { KeyedMark, Refusal } from "../apply-chunk";
import type { BatchOutputs } from "../batch-outputs";
import * as records from "./actor-records";
import { GroupCommit } from "./group-commit";
import * as fence from "./partition-fence";
import { ResultsWriter } from "./results-writer";

export type { ActorPosition, ActorRecord } from "./actor-records";
export type { ClaimHolder, RecordFence } from "./partition-fence";

/**
 * What the engine reads and writes in Postgres: each chunk's results in one fenced transaction
 * (results-writer.ts, with group commit across partitions), partition claims and what they load
 * (partition-fence.ts), and the actors' records and the checks made to resume them exactly
 * (actor-records.ts). The SQL of each table family lives in one module of runtime/store/; the
 * REST API's reads are `ResultsQueries`, the reprocess tool's rewrites `IndicatorRewrites`.
 */
export class ResultsStore {
  private readonly writer: ResultsWriter;
  private readonly groupCommit: GroupCommit;

  constructor(private readonly db: SqlClient) {
    this.writer = new ResultsWriter(db);
    this.groupCommit = new GroupCommit(this.writer);
  }

  /**
   * Writes one chunk of actor outputs in one transaction (possibly shared with other partitions'
   * chunks of the same moment). Returns the signals this write inserted: a replayed chunk's
   * signals are stored already, and must not be notified twice. With a fence, the transaction
   * also moves the partition's written offset to `record.writtenOffset`, and is refused
   * (`FencedError`) unless `record.epoch` is still the partition's.
   */
  write(out: BatchOutputs, record?: fence.RecordFence): Promise<{ newSignals: Signal[] }> {
    return this.groupCommit.write(out, record);
  }

  /** Chunks whose append met a stored row and were written again with the conflict check. */
  get checkedRewrites(): number {
    return this.writer.checkedRewrites;
  }

  /** Transactions that wrote several partitions' chunks at once. */
  get combinedWrites(): number {
    return this.writer.combinedWrites;
  }

  /** Takes ownership of a partition for `owner`, with no generation check: bumps its epoch and returns it. */
  async claimPartition(partition: number, owner: string): Promise<number> {
    const claimed = await this.claim(partition, owner, null);
    if ("refused" in claimed) throw new Error(`partition ${partition}: claim refused`);
    return claimed.epoch;
  }

  /** See partition-fence.ts, `claim`. */
  claim(
    partition: number,
    owner: string,
    generation: number | null,
    overrule = false,
  ): Promise<{ epoch: number; writtenOffset: number } | { refused: fence.ClaimHolder }> {
    return fence.claim(this.db, partition, owner, generation, overrule);
  }

  idempotencyMarks(partition: number): Promise<KeyedMark[]> {
    return fence.idempotencyMarks(this.db, partition);
  }

  pruneIdempotencyMarks(partition: number, beforeMs: number): Promise<number> {
    return fence.pruneIdempotencyMarks(this.db, partition, beforeMs);
  }

  refusedMessages(partition: number, fromOffset: number): Promise<Map<number, Refusal>> {
    return fence.refusedMessages(this.db, partition, fromOffset);
  }

  actorPositions(symbols: string[]): Promise<records.ActorPosition[]> {
    return records.actorPositions(this.db, symbols);
  }

  actorRecords(symbols: string[]): Promise<records.ActorRecord[]> {
    return records.actorRecords(this.db, symbols);
  }

  lastStoredSeqs(symbols: string[]): Promise<{ symbol: string; seq: number }[]> {
    return records.lastStoredSeqs(this.db, symbols);
  }

  tickOrigin(symbol: string, seq: number): Promise<{ partition: number; offset: number } | null> {
    return records.tickOrigin(this.db, symbol, seq);
  }

  storedTicks(symbol: string, upToSeq: number): Promise<StoredTick[]> {
    return records.storedTicks(this.db, symbol, upToSeq);
  }
}
