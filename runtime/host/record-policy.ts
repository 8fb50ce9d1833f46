import type { ActorSnapshot } from "../../domain/symbol-actor";
import type { IdempotencyMark, KeyedMark } from "../apply-chunk";
import type { ActorRecord } from "../store/results-store";

/**
 * When a partition records: its actors' states and idempotency marks to Postgres (and the
 * states to the cache), then its offset to the log. Results are stored with every chunk; the
 * record is batched over the chunks of `intervalMs`, whether the partition works off a backlog or
 * keeps up with a trickle, and the node's timer (`flushDue`) records a partition whose messages
 * stopped. 0 records with every chunk.
 */
export class RecordPolicy {
  constructor(readonly intervalMs: number) {}

  /**
   * When a partition claimed now counts as last recorded. Partitions claimed together would record
   * together, every interval, in one burst that holds up the results behind it: each starts at its
   * own point of the interval instead.
   */
  firstRecordedAt(now: number, random: () => number = Math.random): number {
    return now - random() * this.intervalMs;
  }

  /** Whether the chunk being stored records too (a stopping node records with every chunk). */
  dueWithChunk(recordedAt: number, now: number, stopping: boolean): boolean {
    return this.intervalMs === 0 || stopping || now - recordedAt >= this.intervalMs;
  }

  /** Whether the timer records a partition with changes pending (`all`: the shutdown's flush, every one). */
  dueOnTimer(recordedAt: number, now: number, all: boolean): boolean {
    return all || now - recordedAt >= this.intervalMs;
  }
}

/**
 * A partition's changes since its last record: the states of the actors changed by chunks whose
 * results are stored (what the next record holds, and what a failed chunk's actors go back to),
 * the marks those chunks set, and the offset to commit after them.
 */
export class Unrecorded {
  readonly states = new Map<string, ActorSnapshot>();
  readonly marks = new Map<string, IdempotencyMark>();
  /** The offset after the last chunk whose results are stored, to commit at the next record. */
  pendingNext: number | null = null;
  /** The offset last committed by this node (null: none yet). */
  committedNext: number | null = null;
  /** When the partition's actors were last recorded (ms since the epoch; 0: not yet). */
  recordedAt = 0;

  /** Whether anything waits for a record: states, marks, or an offset not committed yet. */
  get pending(): boolean {
    return (
      this.states.size > 0 ||
      this.marks.size > 0 ||
      (this.pendingNext !== null && this.pendingNext !== this.committedNext)
    );
  }

  /** The record that a stored chunk which changed `changed` and set `marks` makes, with everything since the last. */
  recordWith(
    partition: number,
    changed: ActorSnapshot[],
    marks: Map<string, IdempotencyMark>,
  ): { actors: ActorRecord[]; marks: KeyedMark[] } {
    const states = new Map(this.states);
    for (const snap of changed) states.set(snap.symbol, snap);
    return {
      actors: recordsOf(partition, [...states.values()]),
      marks: keyedMarks(new Map([...this.marks, ...marks])),
    };
  }

  /** The record of what is pending alone (the timer's). */
  record(partition: number): { actors: ActorRecord[]; marks: KeyedMark[] } {
    return { actors: recordsOf(partition, [...this.states.values()]), marks: keyedMarks(this.marks) };
  }

  /** A stored chunk that does not record: its states and marks wait for the next record. */
  keep(changed: ActorSnapshot[], marks: Map<string, IdempotencyMark>): void {
    for (const snap of changed) this.states.set(snap.symbol, snap);
    for (const [key, mark] of marks) this.marks.set(key, mark);
  }

  /** The states and marks are recorded. */
  recorded(): void {
    this.states.clear();
    this.marks.clear();
  }

  /** The partition moved on: nothing of it is recorded or committed by this node any more. */
  drop(): void {
    this.recorded();
    this.pendingNext = null;
  }
}

/** Actor states as `actor_state` records of `partition`. */
export function recordsOf(partition: number, snapshots: ActorSnapshot[]): ActorRecord[] {
  return snapshots.map(snap => ({
    symbol: snap.symbol,
    partition,
    seq: snap.seq,
    lastOffset: snap.lastOffset,
    state: JSON.stringify(snap),
  }));
}

export function keyedMarks(marks: Map<string, IdempotencyMark>): KeyedMark[] {
  return [...marks].map(([key, m]) => ({ key, ...m }));
}
