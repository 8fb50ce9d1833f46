import type { LogMessage } from "../../adapters/log/types";
import type { IdempotencyMark, KeyedMark } from "../apply-chunk";

/** How often a partition's old idempotency marks are deleted from Postgres, in its log time (ms). */
const PRUNE_EVERY_MS = 600000;

/**
 * A partition's idempotency marks (see apply-chunk.ts) as of its stored chunks, and the clock
 * they expire by: the latest time the log gave a message of the partition. A chunk's marks join
 * only once its results are stored, so a failed chunk's never do.
 */
export class PartitionMarks {
  readonly current = new Map<string, IdempotencyMark>();
  /** The latest time the log gave a message of this partition (ms). */
  private logTime = 0;
  private prunedAt = 0;

  /** The marks a claim loaded. */
  load(marks: KeyedMark[]): void {
    this.current.clear();
    for (const { key, ...mark } of marks) this.current.set(key, mark);
  }

  /** A chunk's results are stored: its marks join, and the partition's clock moves past its messages. */
  stored(chunk: readonly LogMessage[], marks: Map<string, IdempotencyMark>): void {
    for (const [key, mark] of marks) this.current.set(key, mark);
    for (const m of chunk) if (m.timestamp > this.logTime) this.logTime = m.timestamp;
  }

  /**
   * Forgets marks whose message the log accepted longer ago than twice the key store's TTL, by the
   * partition's own clock: in memory at every record (but those waiting for the record), and
   * returns the time to delete older marks from Postgres before, every ten minutes of it (null
   * otherwise). No decision depends on when this runs: a mark decides only against copies of its
   * own use, and the key store hands out a use for its TTL, so a copy of a use reaches the log
   * within the TTL of its first (give or take the clock skew between gateway nodes, which the
   * second TTL covers).
   */
  prune(ttlMs: number, unrecorded: ReadonlyMap<string, IdempotencyMark>): number | null {
    const before = this.logTime - 2 * ttlMs;
    for (const [key, mark] of this.current)
      if (mark.at < before && !unrecorded.has(key)) this.current.delete(key);
    if (this.logTime - this.prunedAt < PRUNE_EVERY_MS) return null;
    this.prunedAt = this.logTime;
    return before;
  }
}
