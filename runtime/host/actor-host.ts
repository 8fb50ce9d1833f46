import type { LogBatch } from "../../adapters/log/types";
import type { ActorView } from "../../domain/symbol-actor";
import { partitionForKey } from "../../lib/partitioner";
import { ActorRestorer } from "./actor-restorer";
import { CacheBreaker } from "./dependency-retry";
import type { ActorHostOptions, PartitionStall } from "./options";
import { PartitionClaimer } from "./partition-claim";
import { PartitionTask, type HostContext } from "./partition-task";
import { RecordPolicy } from "./record-policy";

export { SnapshotLostError } from "./actor-restorer";
export type {
  ActorHostOptions,
  Dependency,
  HostObserver,
  PartitionStall,
  RestoreReason,
  RestoreSource,
} from "./options";

/**
 * Hosts the symbol actors of the partitions this node owns (docs/architecture.md, "The actor
 * model"): one `PartitionTask` per partition of the current assignment. Per batch, in this order:
 * apply -> one Postgres transaction with the results and the touched actors' states (the
 * record), refused unless this node's epoch is still the partition's -> the same states to the
 * snapshot cache (Redis), best effort -> commit the offset. So a committed offset always lies
 * below what Postgres holds, and a replay after a crash or a rebalance recomputes identical
 * results that the database ignores. Activation takes an actor's state from the cache only when
 * it is the recorded one, else from Postgres: losing, rolling back or corrupting the cache costs
 * reads, never results, and never stops a partition.
 */
export class ActorHost {
  private readonly partitions = new Map<number, PartitionTask>();
  private generation = 0;
  private stopping = false;
  private readonly context: HostContext;
  /** The flush under way, if any (flushDue). */
  private flushing: Promise<number> | null = null;

  constructor(private readonly options: ActorHostOptions) {
    const cache = new CacheBreaker(
      options.snapshots,
      options.logger,
      options.retryMaxBackoffMs,
      options.observer,
    );
    this.context = {
      options,
      chunkSize: options.chunkSize ?? 2000,
      policy: new RecordPolicy(options.recordIntervalMs ?? 0),
      restorer: new ActorRestorer(options.settings, options.results, cache, options.logger, options.observer),
      claimer: new PartitionClaimer(
        options.results,
        options.owner ?? "unnamed",
        options.logger,
        options.generationWaitMs,
      ),
      cache,
      stopping: () => this.stopping,
    };
  }

  /** The group handed this node a new assignment: every partition is claimed afresh before its next batch. */
  onAssignment(partitions: number[], generation: number): void {
    this.generation = generation;
    const kept = new Set(partitions);
    for (const [p, task] of this.partitions) task.revoke(kept.has(p));
    this.partitions.clear();
    for (const p of partitions) this.partitions.set(p, new PartitionTask(p, generation, this.context));
  }

  ownedPartitions(): number[] {
    return [...this.partitions.keys()].sort((a, b) => a - b);
  }

  actorCount(): number {
    let n = 0;
    for (const task of this.partitions.values()) n += task.actors.size;
    return n;
  }

  /** Partitions whose loop is waiting for a dependency right now. */
  stalledPartitions(): PartitionStall[] {
    const out: PartitionStall[] = [];
    for (const task of this.partitions.values()) {
      const stall = task.stall();
      if (stall) out.push(stall);
    }
    return out.sort((a, b) => a.partition - b.partition);
  }

  partitionOf(symbol: string): number {
    return partitionForKey(symbol, this.options.partitionCount);
  }

  /** Symbols with a live actor in memory, per owned partition. */
  activeSymbols(): Record<number, string[]> {
    const out: Record<number, string[]> = {};
    for (const [p, task] of this.partitions) out[p] = [...task.actors.keys()].sort();
    return out;
  }

  /** Live state of a symbol this node owns, as far as its results are stored; null when unknown or not owned here. */
  async view(symbol: string): Promise<ActorView | null> {
    return (await this.partitions.get(this.partitionOf(symbol))?.view(symbol)) ?? null;
  }

  isOwned(symbol: string): boolean {
    return this.partitions.has(this.partitionOf(symbol));
  }

  /** Writes the snapshot of a live actor now (the REPL's `snapshot` command). */
  async snapshotNow(symbol: string): Promise<{ partition: number; epoch: number; bytes: number } | null> {
    return (await this.partitions.get(this.partitionOf(symbol))?.snapshotNow(symbol)) ?? null;
  }

  /** Drops actors idle for longer than `idleMs`. Every record holds them, so nothing is lost. */
  async passivateIdle(now = Date.now()): Promise<number> {
    let dropped = 0;
    for (const task of [...this.partitions.values()]) dropped += await task.passivate(now);
    return dropped;
  }

  /** Batches in flight finish (with their commit); retry loops give up instead of waiting for a dependency. */
  beginStop(): void {
    this.stopping = true;
  }

  /** Processes one batch; returns how many leading messages are durably done (and committed). */
  async handleBatch(batch: LogBatch, generation: number): Promise<number> {
    const task = this.partitions.get(batch.partition);
    if (!task || task.generation !== generation || generation !== this.generation) return 0;
    return task.handleBatch(batch);
  }

  /**
   * Records every partition whose unrecorded changes are older than the record interval (or all,
   * with `all`), and commits its offset: called on a timer, so that a partition whose messages
   * stopped does not keep its last changes unrecorded, and on shutdown. A failure is left for the
   * next call (the partition's own loop, or this timer), logged once per outage by the loop.
   */
  async flushDue(all = false, now = Date.now()): Promise<number> {
    // One flush at a time: a partition stalled on Postgres holds its lock, and timer calls must
    // not queue up behind it. The shutdown's flush (`all`) must not be skipped, though: a timer
    // flush under way passes over partitions whose interval has not run out, so it waits for that
    // one to end and then records every partition.
    while (this.flushing) {
      if (!all) return 0;
      await this.flushing.catch(() => undefined);
    }
    const flush = this.flushEach(all, now);
    this.flushing = flush;
    try {
      return await flush;
    } finally {
      this.flushing = null;
    }
  }

  private async flushEach(all: boolean, now: number): Promise<number> {
    let flushed = 0;
    for (const task of [...this.partitions.values()])
      if (task.flushPending(all, now) && (await task.flush(all, now))) flushed += 1;
    return flushed;
  }
}
