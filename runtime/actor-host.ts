import { setTimeout as sleep } from "node:timers/promises";
import type { LogBatch, LogMessage } from "../adapters/log/types";
import type { SnapshotStore } from "../adapters/snapshots/types";
import { isPriceTick } from "../domain/messages";
import {
  SymbolActor,
  type ActorSnapshot,
  type ActorView,
  type IndicatorSettings,
  type Signal,
  type TickResult,
  SettingsChangedError,
} from "../domain/symbol-actor";
import { FencedError, isRetriable, StockError } from "../domain/errors";
import type { Logger } from "../lib/logger";
import { partitionForKey } from "../lib/partitioner";
import { nextBackoff, Outage } from "../lib/waiting";
import { applyChunk, parseLogMessage, type ParsedMessage } from "./apply-chunk";
import type { ResultsStore } from "./results-store";

/** What the host reports to its service: metrics and live events, all optional. */
export interface HostObserver {
  applied?(ticks: number, seconds: number): void;
  persisted?(seconds: number): void;
  snapshotted?(seconds: number): void;
  committed?(partition: number, nextOffset: number, highWatermark: number): void;
  deadLetters?(count: number): void;
  /** After a batch is durable: the latest tick of each symbol it touched, and the signals it stored first. */
  published?(partition: number, latest: TickResult[], signals: Signal[]): void;
  /** A partition started (`stalled` true) or stopped waiting for a dependency. */
  stall?(partition: number, dependency: Dependency, stalled: boolean): void;
}

/** What a partition's loop waits for while it is stalled. */
export type Dependency = "postgres" | "redis" | "kafka";

/** A partition whose loop keeps retrying a step because a dependency is away (`actors.partitions`). */
export interface PartitionStall {
  partition: number;
  /** The dependency the failing step needs. */
  dependency: Dependency;
  /** The failing step, e.g. "persist partition 3". */
  step: string;
  /** The last failure's message. */
  error: string;
  /** When the stall began (ISO 8601). */
  since: string;
  /** Failed attempts so far. */
  attempts: number;
}

export interface ActorHostOptions {
  settings: IndicatorSettings;
  results: ResultsStore;
  snapshots: SnapshotStore;
  /** Durably commits the log offset (Kafka commitOffsets). */
  commit(partition: number, nextOffset: number): Promise<void>;
  partitionCount: number;
  idleMs: number;
  retryMaxBackoffMs: number;
  /** Messages per database transaction; a larger batch is split. */
  chunkSize?: number;
  logger: Logger;
  observer?: HostObserver;
}

interface ActorSlot {
  actor: SymbolActor;
  lastUsed: number;
  /** Started from nothing (no snapshot) and not yet checked against what Postgres already holds. */
  unverified: boolean;
}

/** One owned partition: its fencing epoch, its live actors, and a lock so batches never overlap. */
class PartitionState {
  epoch: number | null = null;
  /**
   * Another node claimed the partition after us. Claiming it back would fence the rightful owner
   * in turn, so this assignment is over: only the group's next assignment may claim it again.
   */
  fenced = false;
  readonly actors = new Map<string, ActorSlot>();
  /** Set while a step of this partition's loop keeps failing: one log line when it starts, one when it ends. */
  readonly outage: Outage;
  stalledOn: Dependency | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly partition: number,
    readonly generation: number,
    logger: Logger,
  ) {
    this.outage = new Outage(`partition ${partition}`, logger);
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** The snapshot store lost state that Postgres proves existed; see `verifyFreshActors`. */
export class SnapshotLostError extends StockError {}

/** Why a batch stopped before its end: the partition moved to another node, or this node is stopping. */
class Abandoned extends Error {}

/**
 * Hosts the symbol actors of the partitions this node owns (docs/architecture.md, "The actor
 * model"). Per batch, in this order: apply -> results to Postgres in one transaction -> fenced
 * snapshots of the touched actors to Redis -> commit the offset. So a committed offset always
 * lies below what Postgres and the snapshots hold, and a replay after a crash or a rebalance
 * recomputes identical results that the database ignores.
 */
export class ActorHost {
  private readonly partitions = new Map<number, PartitionState>();
  private generation = 0;
  private stopping = false;
  private readonly chunkSize: number;

  constructor(private readonly options: ActorHostOptions) {
    this.chunkSize = options.chunkSize ?? 2000;
  }

  /** The group handed this node a new assignment: every partition is claimed afresh before its next batch. */
  onAssignment(partitions: number[], generation: number): void {
    this.generation = generation;
    const previous = this.partitions;
    const next = new Map<number, PartitionState>();
    for (const p of partitions) next.set(p, new PartitionState(p, generation, this.options.logger));
    // Actors of a partition kept across the rebalance are dropped too: another node may have
    // owned it in between, so its state is reloaded from the snapshots under the new epoch.
    for (const [p, state] of previous) {
      if (!next.has(p)) state.actors.clear();
      // A stalled loop of the old assignment ends at its next attempt; its stall is over now.
      this.endStall(state, "the partition was reassigned");
    }
    previous.clear();
    for (const [p, state] of next) this.partitions.set(p, state);
  }

  ownedPartitions(): number[] {
    return [...this.partitions.keys()].sort((a, b) => a - b);
  }

  actorCount(): number {
    let n = 0;
    for (const state of this.partitions.values()) n += state.actors.size;
    return n;
  }

  /** Partitions whose loop is waiting for a dependency right now. */
  stalledPartitions(): PartitionStall[] {
    const out: PartitionStall[] = [];
    for (const state of this.partitions.values()) {
      const o = state.outage.state;
      if (!o || !state.stalledOn) continue;
      out.push({
        partition: state.partition,
        dependency: state.stalledOn,
        step: o.what,
        error: o.error,
        since: new Date(o.since).toISOString(),
        attempts: o.attempts,
      });
    }
    return out.sort((a, b) => a.partition - b.partition);
  }

  partitionOf(symbol: string): number {
    return partitionForKey(symbol, this.options.partitionCount);
  }

  /** Symbols with a live actor in memory, per owned partition. */
  activeSymbols(): Record<number, string[]> {
    const out: Record<number, string[]> = {};
    for (const [p, state] of this.partitions) out[p] = [...state.actors.keys()].sort();
    return out;
  }

  /** Live state of a symbol this node owns: from memory, else from its snapshot; null when unknown or not owned here. */
  async view(symbol: string): Promise<ActorView | null> {
    const state = this.partitions.get(this.partitionOf(symbol));
    if (!state) return null;
    const slot = state.actors.get(symbol);
    if (slot) return slot.actor.view();
    const [stored] = await this.options.snapshots.load(state.partition, [symbol]);
    if (!stored) return null;
    const snapshot = JSON.parse(stored) as ActorSnapshot;
    try {
      return SymbolActor.restore(snapshot, this.options.settings).view();
    } catch (err) {
      if (!(err instanceof SettingsChangedError)) throw err;
      const ticks = await this.options.results.storedTicks(symbol, snapshot.seq);
      return SymbolActor.resettle(snapshot, this.options.settings, ticks).view();
    }
  }

  isOwned(symbol: string): boolean {
    return this.partitions.has(this.partitionOf(symbol));
  }

  /** Writes the snapshot of a live actor now (the REPL's `snapshot` command). */
  async snapshotNow(symbol: string): Promise<{ partition: number; epoch: number; bytes: number } | null> {
    const state = this.partitions.get(this.partitionOf(symbol));
    if (!state) return null;
    return state.exclusive(async () => {
      const slot = state.actors.get(symbol);
      if (!slot || state.epoch === null) return null;
      const json = JSON.stringify(slot.actor.snapshot());
      await this.options.snapshots.save(state.partition, state.epoch, [{ symbol, state: json }]);
      return { partition: state.partition, epoch: state.epoch, bytes: Buffer.byteLength(json) };
    });
  }

  /** Drops actors idle for longer than `idleMs`. Every batch already snapshotted them, so nothing is lost. */
  async passivateIdle(now = Date.now()): Promise<number> {
    let dropped = 0;
    for (const state of [...this.partitions.values()]) {
      await state.exclusive(async () => {
        for (const [symbol, slot] of state.actors) {
          if (now - slot.lastUsed >= this.options.idleMs) {
            state.actors.delete(symbol);
            dropped += 1;
          }
        }
      });
    }
    return dropped;
  }

  /** Batches in flight finish (with their commit); retry loops give up instead of waiting for a dependency. */
  beginStop(): void {
    this.stopping = true;
  }

  /** Processes one batch; returns how many leading messages are durably done (and committed). */
  async handleBatch(batch: LogBatch, generation: number): Promise<number> {
    const state = this.partitions.get(batch.partition);
    if (!state || state.generation !== generation || generation !== this.generation) return 0;
    return state.exclusive(async () => {
      if (state.fenced) {
        // Kafka learns of the rebalance through heartbeats; pausing here keeps the loop that
        // refetches this batch from spinning until then.
        await batch.heartbeat().catch(() => undefined);
        await sleep(Math.min(1000, this.options.retryMaxBackoffMs));
        return 0;
      }
      let done = 0;
      try {
        if (state.epoch === null) {
          state.actors.clear();
          state.epoch = await this.retry(state, batch, `claim partition ${batch.partition}`, "redis", () =>
            this.options.snapshots.claim(batch.partition),
          );
          this.options.logger.info(`partition ${batch.partition}: claimed with epoch ${state.epoch}`);
        }
        for (let start = 0; start < batch.messages.length; start += this.chunkSize) {
          const chunk = batch.messages.slice(start, start + this.chunkSize);
          await this.processChunk(state, batch, chunk);
          done += chunk.length;
          await batch.heartbeat().catch(() => undefined);
        }
      } catch (err) {
        // Whatever the actors applied past the last commit is not durable: forget it, so the
        // next owner (or this node, after a new claim) starts again from the snapshots.
        state.actors.clear();
        if (err instanceof FencedError) {
          state.epoch = null;
          state.fenced = true;
          this.options.logger.error(
            `${err.message}; dropping its actors and leaving it alone until the next assignment`,
          );
        } else if (!(err instanceof Abandoned) && batch.isActive()) {
          throw err;
        }
      }
      return done;
    });
  }

  private async processChunk(state: PartitionState, batch: LogBatch, chunk: LogMessage[]): Promise<void> {
    const { observer } = this.options;
    const partition = state.partition;
    const parsed = await this.activate(state, batch, chunk);

    const applyStarted = process.hrtime.bigint();
    const now = Date.now();
    const {
      outputs: out,
      touched,
      latest,
    } = applyChunk(partition, chunk, parsed, symbol => {
      const slot = state.actors.get(symbol)!;
      slot.lastUsed = now;
      return slot.actor;
    });
    observer?.applied?.(out.ticks.length, Number(process.hrtime.bigint() - applyStarted) / 1e9);

    const persistStarted = process.hrtime.bigint();
    const { newSignals } = await this.retry(state, batch, `persist partition ${partition}`, "postgres", () =>
      this.options.results.write(out),
    );
    observer?.persisted?.(Number(process.hrtime.bigint() - persistStarted) / 1e9);
    if (out.deadLetters.length > 0) {
      observer?.deadLetters?.(out.deadLetters.length);
      this.options.logger.warn(
        `partition ${partition}: ${out.deadLetters.length} message(s) to dead_letters, first at offset ${out.deadLetters[0].offset}: ${out.deadLetters[0].reason}`,
      );
    }

    if (touched.length > 0) {
      const entries = touched.map(a => ({ symbol: a.symbol, state: JSON.stringify(a.snapshot()) }));
      const snapshotStarted = process.hrtime.bigint();
      await this.retry(state, batch, `snapshot partition ${partition}`, "redis", () =>
        this.options.snapshots.save(partition, state.epoch!, entries),
      );
      observer?.snapshotted?.(Number(process.hrtime.bigint() - snapshotStarted) / 1e9);
    }

    const next = chunk[chunk.length - 1].offset + 1;
    await this.retry(state, batch, `commit partition ${partition}`, "kafka", () =>
      this.options.commit(partition, next),
    );
    observer?.committed?.(partition, next, batch.highWatermark);
    // Only signals this batch stored are news: a replayed batch's were notified the first time.
    if (latest.length > 0 || newSignals.length > 0) observer?.published?.(partition, latest, newSignals);
  }

  /** Parses the chunk and makes sure every symbol in it has a live actor, restoring snapshots in one read. */
  private async activate(
    state: PartitionState,
    batch: LogBatch,
    chunk: LogMessage[],
  ): Promise<ParsedMessage[]> {
    const parsed = chunk.map(m => parseLogMessage(m, this.options.partitionCount));
    const missing = new Set<string>();
    for (const p of parsed) if ("symbol" in p && !state.actors.has(p.symbol)) missing.add(p.symbol);
    if (missing.size > 0) {
      const symbols = [...missing];
      const stored = await this.retry(
        state,
        batch,
        `load snapshots of partition ${state.partition}`,
        "redis",
        () => this.options.snapshots.load(state.partition, symbols),
      );
      const now = Date.now();
      const settingsChanged: ActorSnapshot[] = [];
      symbols.forEach((symbol, i) => {
        const json = stored[i];
        if (!json) {
          state.actors.set(symbol, {
            actor: new SymbolActor(symbol, this.options.settings),
            lastUsed: now,
            unverified: true,
          });
          return;
        }
        const snapshot = JSON.parse(json) as ActorSnapshot;
        try {
          state.actors.set(symbol, {
            actor: SymbolActor.restore(snapshot, this.options.settings),
            lastUsed: now,
            unverified: false,
          });
        } catch (err) {
          if (!(err instanceof SettingsChangedError)) throw err;
          settingsChanged.push(snapshot);
        }
      });
      // Snapshots taken under other indicator settings: the indicators are recomputed from the
      // symbol's stored ticks, so the actor continues as if it had always run with these settings.
      for (const snapshot of settingsChanged) {
        const ticks = await this.retry(
          state,
          batch,
          `read the stored ticks of ${snapshot.symbol} (partition ${state.partition})`,
          "postgres",
          () => this.options.results.storedTicks(snapshot.symbol, snapshot.seq),
        );
        const actor = SymbolActor.resettle(snapshot, this.options.settings, ticks);
        state.actors.set(snapshot.symbol, { actor, lastUsed: now, unverified: false });
      }
      if (settingsChanged.length > 0) {
        this.options.logger.info(
          `partition ${state.partition}: indicator settings changed; recomputed ${settingsChanged.length} actor(s) from their stored ticks`,
        );
      }
    }
    await this.verifyFreshActors(state, batch, chunk, parsed);
    return parsed;
  }

  /**
   * An actor without a snapshot is right only if its symbol really starts here: its first tick
   * must be the one Postgres holds as seq 1, if any. Otherwise the snapshot store lost the state
   * (Redis restarted without persistence, keys deleted): continuing would restart the symbol's
   * sequence at 1, and every new result would collide with an old row and be dropped in silence.
   * The batch fails instead, loudly and repeatedly, and nothing is committed until an operator
   * replays the partition from the start (which rebuilds the state exactly).
   */
  private async verifyFreshActors(
    state: PartitionState,
    batch: LogBatch,
    chunk: LogMessage[],
    parsed: ParsedMessage[],
  ) {
    const firstTick = new Map<string, number>();
    parsed.forEach((p, i) => {
      if (!("symbol" in p) || firstTick.has(p.symbol) || !isPriceTick(p.message)) return;
      const slot = state.actors.get(p.symbol);
      if (slot?.unverified && slot.actor.seq === 0) firstTick.set(p.symbol, chunk[i].offset);
    });
    if (firstTick.size === 0) return;
    const places = await this.retry(
      state,
      batch,
      `check new symbols of partition ${state.partition}`,
      "postgres",
      () => this.options.results.firstTickPlaces([...firstTick.keys()]),
    );
    for (const row of places) {
      const offset = firstTick.get(row.symbol)!;
      if (row.partition !== state.partition || row.offset !== offset) {
        throw new SnapshotLostError(
          `symbol ${row.symbol}: the snapshot store has no state for it, but Postgres already holds its first tick ` +
            `(partition ${row.partition}, offset ${row.offset}); starting it afresh at offset ${offset} would ` +
            `restart its sequence and drop every new result. The snapshot store lost data (is Redis persistent?). ` +
            "Recover by replaying from the start: stop the actors, reset their consumer group (KAFKA_GROUP_ID) to the earliest offsets, start them.",
        );
      }
    }
    for (const symbol of firstTick.keys()) state.actors.get(symbol)!.unverified = false;
  }

  /**
   * Retries `fn` while its failure is retriable (a dependency is down), with exponential backoff
   * and heartbeats, for as long as this node still owns the partition. Nothing is committed
   * meanwhile, so the log simply waits. Non-retriable failures propagate. The partition's
   * outage logs one line when the step starts failing and one when it succeeds again, and the
   * observer's `stall` turns the partition's stalled gauge on and off.
   */
  private async retry<T>(
    state: PartitionState,
    batch: LogBatch,
    what: string,
    dependency: Dependency,
    fn: () => Promise<T>,
  ): Promise<T> {
    let delay = 100;
    for (;;) {
      if (!batch.isActive()) {
        this.endStall(state, "the partition is no longer ours");
        throw new Abandoned(`${what}: partition ${batch.partition} is no longer ours`);
      }
      try {
        const value = await fn();
        if (state.outage.succeeded()) this.clearStall(state);
        return value;
      } catch (err) {
        if (!isRetriable(err)) throw err;
        if (this.stopping) {
          this.endStall(state, "stopping");
          throw new Abandoned(`${what}: stopping`);
        }
        if (
          state.outage.failed(what, err, `; retrying with backoff up to ${this.options.retryMaxBackoffMs} ms`)
        ) {
          if (state.stalledOn && state.stalledOn !== dependency)
            this.options.observer?.stall?.(state.partition, state.stalledOn, false);
          state.stalledOn = dependency;
          this.options.observer?.stall?.(state.partition, dependency, true);
        }
        await batch.heartbeat().catch(() => undefined);
        await sleep(delay);
        delay = nextBackoff(delay, this.options.retryMaxBackoffMs);
      }
    }
  }

  private clearStall(state: PartitionState): void {
    if (!state.stalledOn) return;
    this.options.observer?.stall?.(state.partition, state.stalledOn, false);
    state.stalledOn = null;
  }

  private endStall(state: PartitionState, why: string): void {
    state.outage.abandoned(why);
    this.clearStall(state);
  }
}
