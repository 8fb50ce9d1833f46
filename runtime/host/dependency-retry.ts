import { setTimeout as sleep } from "node:timers/promises";
import type { LogBatch } from "../../adapters/log/types";
import type { SnapshotStore } from "../../adapters/snapshots/types";
import { isRetriable } from "../../domain/errors";
import type { Logger } from "../../lib/logger";
import { nextBackoff, Outage } from "../../lib/waiting";
import type { Dependency, HostObserver, PartitionStall } from "./options";

/** Why a batch stopped before its end: the partition moved to another node, or this node is stopping. */
export class Abandoned extends Error {}

/**
 * One partition's waits for its dependencies: the step that keeps failing, logged once when it
 * starts and once when it ends (its `Outage`), and reported through the observer's `stall`, which
 * turns the partition's stalled gauge on and off.
 */
export class StallWatch {
  private readonly outage: Outage;
  private stalledOn: Dependency | null = null;

  constructor(
    private readonly partition: number,
    logger: Logger,
    private readonly observer: HostObserver | undefined,
  ) {
    this.outage = new Outage(`partition ${partition}`, logger);
  }

  /** The stall under way, if any. */
  current(): PartitionStall | null {
    const o = this.outage.state;
    if (!o || !this.stalledOn) return null;
    return {
      partition: this.partition,
      dependency: this.stalledOn,
      step: o.what,
      error: o.error,
      since: new Date(o.since).toISOString(),
      attempts: o.attempts,
    };
  }

  failed(what: string, err: unknown, dependency: Dependency, maxBackoffMs: number): void {
    if (!this.outage.failed(what, err, `; retrying with backoff up to ${maxBackoffMs} ms`)) return;
    if (this.stalledOn && this.stalledOn !== dependency)
      this.observer?.stall?.(this.partition, this.stalledOn, false);
    this.stalledOn = dependency;
    this.observer?.stall?.(this.partition, dependency, true);
  }

  succeeded(): void {
    if (this.outage.succeeded()) this.clear();
  }

  /** The wait is given up (the partition moved, the node stops): one line says why. */
  end(why: string): void {
    this.outage.abandoned(why);
    this.clear();
  }

  private clear(): void {
    if (!this.stalledOn) return;
    this.observer?.stall?.(this.partition, this.stalledOn, false);
    this.stalledOn = null;
  }
}

export interface RetryBounds {
  maxBackoffMs: number;
  /** The node is stopping: a failing step gives up instead of waiting. */
  stopping(): boolean;
}

/**
 * Retries `fn` while its failure is retriable (a dependency is down), with exponential backoff
 * and heartbeats, for as long as this node still owns the partition. Nothing is committed
 * meanwhile, so the log simply waits. Non-retriable failures propagate; a partition that is no
 * longer ours, or a stopping node, ends the wait with `Abandoned`.
 */
export async function retryWhileOwned<T>(
  watch: StallWatch,
  batch: LogBatch,
  bounds: RetryBounds,
  step: { what: string; dependency: Dependency },
  fn: () => Promise<T>,
): Promise<T> {
  let delay = Math.min(100, bounds.maxBackoffMs);
  for (;;) {
    if (!batch.isActive()) {
      watch.end("the partition is no longer ours");
      throw new Abandoned(`${step.what}: partition ${batch.partition} is no longer ours`);
    }
    try {
      const value = await fn();
      watch.succeeded();
      return value;
    } catch (err) {
      if (!isRetriable(err)) throw err;
      if (bounds.stopping()) {
        watch.end("stopping");
        throw new Abandoned(`${step.what}: stopping`);
      }
      watch.failed(step.what, err, step.dependency, bounds.maxBackoffMs);
      await batch.heartbeat().catch(() => undefined);
      await sleep(delay);
      delay = nextBackoff(delay, bounds.maxBackoffMs);
    }
  }
}

/**
 * The snapshot cache (Redis), best effort: a failing call is logged once per outage and answered
 * null (the caller uses Postgres), and the cache then rests a while before it is tried again, so
 * an outage costs one failed call per rest, not one per actor.
 */
export class CacheBreaker {
  /** The cache failed: it is left alone until then (ms since the epoch), then tried again. */
  private restUntil = 0;
  private readonly outage: Outage;

  constructor(
    readonly snapshots: SnapshotStore,
    logger: Logger,
    private readonly restMs: number,
    private readonly observer: HostObserver | undefined,
  ) {
    this.outage = new Outage(`snapshot cache (${snapshots.kind})`, logger, {
      failing: "unavailable",
      recovered: "available again",
    });
  }

  /** A cache read: null while the cache is failing. */
  async read<T>(what: string, fn: (cache: SnapshotStore) => Promise<T>): Promise<T | null> {
    if (Date.now() < this.restUntil) return null;
    try {
      const value = await fn(this.snapshots);
      if (this.outage.succeeded()) this.observer?.cache?.(true);
      return value;
    } catch (err) {
      const note =
        "; the actors go on with their records in Postgres, and try the cache again every few seconds";
      if (this.outage.failed(what, err, note)) this.observer?.cache?.(false);
      this.restUntil = Date.now() + Math.max(1000, this.restMs);
      return null;
    }
  }

  /** A cache write: false when it failed (or the cache is resting). */
  async write(what: string, fn: (cache: SnapshotStore) => Promise<void>): Promise<boolean> {
    return (await this.read(what, async cache => (await fn(cache), true))) ?? false;
  }
}
