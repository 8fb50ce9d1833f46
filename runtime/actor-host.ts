import { setTimeout as sleep } from "node:timers/promises";
import type { LogBatch, LogMessage } from "../adapters/log/types";
import type { SnapshotStore } from "../adapters/snapshots/types";
import { isPriceTick } from "../domain/messages";
import {
  IncompatibleSnapshotError,
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
import { applyChunk, parseLogMessage, type IdempotencyMark, type ParsedMessage } from "./apply-chunk";
import { emptyOutputs } from "./batch-outputs";
import type { ActorRecord, ResultsStore } from "./results-store";

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
  /** Actors brought into memory: `count` of them from `source`, for `reason`. */
  restored?(partition: number, source: RestoreSource, reason: RestoreReason, count: number): void;
  /** The snapshot cache (Redis) failed (`up` false) or works again. */
  cache?(up: boolean): void;
  /** Messages skipped as repeats of a client request already applied (same Idempotency-Key). */
  duplicates?(partition: number, count: number): void;
}

/** What a partition's loop waits for while it is stalled. The snapshot cache is never waited for. */
export type Dependency = "postgres" | "kafka";

/** Where an activated actor's state came from: the cache, the record in Postgres, or nowhere (a new symbol). */
export type RestoreSource = "cache" | "postgres" | "new";
/**
 * Why: `hit` (the cache held the recorded state); the cache's entry was `missing`, `stale` (another
 * seq or offset than the record, or another symbol), `unreadable` (damaged, another version), or the
 * cache was `unavailable`; `moved`: the record is of another partition (the partition count
 * changed); `none` for a new symbol.
 */
export type RestoreReason = "hit" | "missing" | "stale" | "unreadable" | "unavailable" | "moved" | "none";

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
  /**
   * How often a partition's actor states are recorded in Postgres (and the cache), and its offset
   * committed, while a backlog is worked off: every this many ms, batched over every chunk since.
   * A chunk that reaches the end of the log is recorded at once. Results are written with every
   * chunk regardless. 0 (the default here) records every chunk.
   * A crash replays at most this long a stretch of the log, whose results Postgres ignores.
   */
  recordIntervalMs?: number;
  /** How long a partition remembers an idempotency key (default 24 h). */
  idempotencyTtlMs?: number;
  logger: Logger;
  observer?: HostObserver;
  /** This node's name, recorded as the owner of the partitions it claims. */
  owner?: string;
}

interface ActorSlot {
  actor: SymbolActor;
  lastUsed: number;
  /** Restored without a record in Postgres, and not yet checked against the ticks Postgres holds. */
  unverified: boolean;
}

/** One owned partition: its fencing epoch, its live actors, and a lock so batches never overlap. */
class PartitionState {
  epoch: number | null = null;
  /** How far this partition's results are written (the last message's offset), as of its claim and its writes since. */
  written = -1;
  /**
   * Another node claimed the partition after us. Claiming it back would fence the rightful owner
   * in turn, so this assignment is over: only the group's next assignment may claim it again.
   */
  fenced = false;
  readonly actors = new Map<string, ActorSlot>();
  /**
   * States of actors changed by chunks whose results are stored but that are not recorded yet,
   * taken right after each chunk's results were written: what the next record holds, and what a
   * failed chunk's actors go back to.
   */
  readonly unrecorded = new Map<string, ActorSnapshot>();
  /** The offset after the last chunk whose results are stored, to commit at the next record. */
  pendingNext: number | null = null;
  /** The offset last committed by this node (null: none yet). */
  committedNext: number | null = null;
  /** When the partition's actors were last recorded (ms since the epoch; 0: not yet). */
  recordedAt = 0;
  /** The log's end as the last batch saw it, for the lag reported with a commit. */
  highWatermark = 0;
  /** Idempotency keys this partition has applied messages of (see apply-chunk.ts). */
  readonly marks = new Map<string, IdempotencyMark>();
  /** Marks set by stored chunks since the last record. */
  readonly unrecordedMarks = new Map<string, IdempotencyMark>();
  /** The running chunk's changes to `marks`, undone if it fails. */
  chunkUndo: Map<string, IdempotencyMark | undefined> | null = null;
  /** When the partition's old marks were last pruned from Postgres. */
  prunedAt = 0;
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

/** An actor without a record whose state does not match the ticks Postgres holds; see `verifyUnrecorded`. */
export class SnapshotLostError extends StockError {}

/** Why a batch stopped before its end: the partition moved to another node, or this node is stopping. */
class Abandoned extends Error {}

/**
 * Hosts the symbol actors of the partitions this node owns (docs/architecture.md, "The actor
 * model"). Per batch, in this order: apply -> one Postgres transaction with the results and the
 * touched actors' states (the record), refused unless this node's epoch is still the partition's
 * -> the same states to the snapshot cache (Redis), best effort -> commit the offset. So a
 * committed offset always lies below what Postgres holds, and a replay after a crash or a
 * rebalance recomputes identical results that the database ignores. Activation takes an actor's
 * state from the cache only when it is the recorded one, else from Postgres: losing, rolling back
 * or corrupting the cache costs reads, never results, and never stops a partition.
 */
export class ActorHost {
  private readonly partitions = new Map<number, PartitionState>();
  private generation = 0;
  private stopping = false;
  private readonly chunkSize: number;
  /** The cache failed: it is left alone until then (ms since the epoch), then tried again. */
  private cacheRestAt = 0;
  private readonly cacheOutage: Outage;
  /** The flush under way, if any (flushDue). */
  private flushing: Promise<number> | null = null;

  constructor(private readonly options: ActorHostOptions) {
    this.chunkSize = options.chunkSize ?? 2000;
    this.cacheOutage = new Outage(`snapshot cache (${options.snapshots.kind})`, options.logger, {
      failing: "unavailable",
      recovered: "available again",
    });
  }

  /** The group handed this node a new assignment: every partition is claimed afresh before its next batch. */
  onAssignment(partitions: number[], generation: number): void {
    this.generation = generation;
    const previous = this.partitions;
    const next = new Map<number, PartitionState>();
    for (const p of partitions) next.set(p, new PartitionState(p, generation, this.options.logger));
    // Actors of a partition kept across the rebalance are dropped too: another node may have
    // owned it in between, so its state is reloaded from the record under the new epoch.
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
    const [record] = await this.options.results.actorRecords([symbol]);
    if (!record) return null;
    const snapshot = JSON.parse(record.state) as ActorSnapshot;
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
      await this.options.snapshots.save(state.partition, [{ symbol, state: json }]);
      return { partition: state.partition, epoch: state.epoch, bytes: Buffer.byteLength(json) };
    });
  }

  /** Drops actors idle for longer than `idleMs`. Every batch already recorded them, so nothing is lost. */
  async passivateIdle(now = Date.now()): Promise<number> {
    let dropped = 0;
    for (const state of [...this.partitions.values()]) {
      await state.exclusive(async () => {
        for (const [symbol, slot] of state.actors) {
          // An actor with an unrecorded change stays until the next record holds it.
          if (now - slot.lastUsed >= this.options.idleMs && !state.unrecorded.has(symbol)) {
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
          const claim = await this.retry(state, batch, `claim partition ${batch.partition}`, "postgres", () =>
            this.options.results.claim(batch.partition, this.options.owner ?? "unnamed"),
          );
          state.epoch = claim.epoch;
          state.written = claim.writtenOffset;
          // Partitions claimed together would record together, every interval, in one burst that
          // holds up the results behind it: each starts at its own point of the interval instead.
          state.recordedAt = Date.now() - Math.random() * (this.options.recordIntervalMs ?? 0);
          const ttl = this.ttlMs();
          const marks = await this.retry(
            state,
            batch,
            `read the idempotency marks of partition ${batch.partition}`,
            "postgres",
            () => this.options.results.idempotencyMarks(batch.partition, ttl),
          );
          state.marks.clear();
          for (const m of marks) state.marks.set(m.key, { hi: m.hi, hiOffset: m.hiOffset, at: m.at });
          this.options.logger.info(`partition ${batch.partition}: claimed with epoch ${state.epoch}`);
        }
        for (let start = 0; start < batch.messages.length; start += this.chunkSize) {
          const chunk = batch.messages.slice(start, start + this.chunkSize);
          await this.processChunk(state, batch, chunk);
          done += chunk.length;
          await batch.heartbeat().catch(() => undefined);
        }
      } catch (err) {
        // The failed chunk's changes to the actors are not stored: forget them. Actors go back to
        // their state after the last stored chunk (unrecorded, or else their record), and the log
        // hands the failed chunk again.
        this.rewind(state);
        if (err instanceof FencedError) {
          state.actors.clear();
          state.unrecorded.clear();
          state.pendingNext = null;
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
      marks,
      undo,
      duplicates,
    } = applyChunk(
      partition,
      chunk,
      parsed,
      symbol => {
        const slot = state.actors.get(symbol)!;
        slot.lastUsed = now;
        return slot.actor;
      },
      state.marks,
    );
    state.chunkUndo = undo;
    if (duplicates > 0) observer?.duplicates?.(partition, duplicates);
    observer?.applied?.(out.ticks.length, Number(process.hrtime.bigint() - applyStarted) / 1e9);

    const persistStarted = process.hrtime.bigint();
    const next = chunk[chunk.length - 1].offset + 1;
    const changed = touched.map(a => a.snapshot());
    const interval = this.options.recordIntervalMs ?? 0;
    // Recorded when the interval has passed: results are stored with every chunk, and the record
    // (states, cache, offset commit) is batched over the chunks of an interval, whether the
    // partition works off a backlog or keeps up with a trickle. The node's timer (flushDue)
    // records a partition whose messages stopped.
    const due = interval === 0 || this.stopping || Date.now() - state.recordedAt >= interval;
    const actors = due ? recordsOf(partition, [...pendingAfter(state.unrecorded, changed).values()]) : [];
    const recordMarks = due ? marksOf(new Map([...state.unrecordedMarks, ...marks])) : [];
    const { newSignals } = await this.retry(state, batch, `persist partition ${partition}`, "postgres", () =>
      this.options.results.write(out, {
        partition,
        epoch: state.epoch!,
        actors,
        marks: recordMarks,
        writtenOffset: next - 1,
        writtenBefore: state.written,
      }),
    );
    state.written = Math.max(state.written, next - 1);
    state.chunkUndo = null;
    observer?.persisted?.(Number(process.hrtime.bigint() - persistStarted) / 1e9);
    state.highWatermark = batch.highWatermark;
    if (out.deadLetters.length > 0) {
      observer?.deadLetters?.(out.deadLetters.length);
      this.options.logger.warn(
        `partition ${partition}: ${out.deadLetters.length} message(s) to dead_letters, first at offset ${out.deadLetters[0].offset}: ${out.deadLetters[0].reason}`,
      );
    }
    if (due) {
      state.unrecorded.clear();
      state.unrecordedMarks.clear();
      state.pendingNext = next;
      await this.recorded(state, actors, () =>
        this.retry(state, batch, `commit partition ${partition}`, "kafka", () =>
          this.options.commit(partition, next),
        ),
      );
    } else {
      for (const snap of changed) state.unrecorded.set(snap.symbol, snap);
      for (const [key, mark] of marks) state.unrecordedMarks.set(key, mark);
      state.pendingNext = next;
    }
    // Only signals this batch stored are news: a replayed batch's were notified the first time.
    if (latest.length > 0 || newSignals.length > 0) observer?.published?.(partition, latest, newSignals);
  }

  /** After a record: the same states to the cache (best effort), then the offset commit. */
  private async recorded(
    state: PartitionState,
    actors: ActorRecord[],
    commit: () => Promise<void>,
  ): Promise<void> {
    const { observer } = this.options;
    const partition = state.partition;
    state.recordedAt = Date.now();
    this.pruneMarks(state);
    if (actors.length > 0) {
      const snapshotStarted = process.hrtime.bigint();
      if (
        await this.toCache(`save to the cache (partition ${partition})`, () =>
          this.options.snapshots.save(partition, actors),
        )
      )
        observer?.snapshotted?.(Number(process.hrtime.bigint() - snapshotStarted) / 1e9);
    }
    const next = state.pendingNext;
    if (next === null || next === state.committedNext) return;
    await commit();
    state.committedNext = next;
    observer?.committed?.(partition, next, state.highWatermark);
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
    const interval = this.options.recordIntervalMs ?? 0;
    let flushed = 0;
    for (const state of [...this.partitions.values()]) {
      const pending = () =>
        state.epoch !== null &&
        !state.fenced &&
        (state.unrecorded.size > 0 ||
          state.unrecordedMarks.size > 0 ||
          (state.pendingNext !== null && state.pendingNext !== state.committedNext)) &&
        (all || now - state.recordedAt >= interval);
      if (!pending()) continue;
      await state
        .exclusive(async () => {
          if (!pending() || this.partitions.get(state.partition) !== state) return;
          const actors = recordsOf(state.partition, [...state.unrecorded.values()]);
          const marks = marksOf(state.unrecordedMarks);
          if (actors.length > 0 || marks.length > 0) {
            await this.options.results.write(emptyOutputs(state.partition), {
              partition: state.partition,
              epoch: state.epoch!,
              actors,
              marks,
            });
            state.unrecorded.clear();
            state.unrecordedMarks.clear();
          }
          await this.recorded(state, actors, () => this.options.commit(state.partition, state.pendingNext!));
          flushed += 1;
        })
        .catch((err: unknown) => {
          if (err instanceof FencedError) {
            state.actors.clear();
            state.unrecorded.clear();
            state.epoch = null;
            state.fenced = true;
            this.options.logger.error(
              `${err.message}; dropping its actors and leaving it alone until the next assignment`,
            );
          } else {
            this.options.logger.debug?.(
              `partition ${state.partition}: record failed, will be tried again: ${(err as Error).message}`,
            );
          }
        });
    }
    return flushed;
  }

  /** Back to the state after the last stored chunk: unrecorded actors from their snapshots, the others from their record. */
  private rewind(state: PartitionState): void {
    // Marks the failed chunk set go back too (unrecordedMarks only ever holds stored chunks' marks).
    if (state.chunkUndo) {
      for (const [key, mark] of state.chunkUndo) {
        if (mark === undefined) state.marks.delete(key);
        else state.marks.set(key, mark);
      }
      state.chunkUndo = null;
    }
    state.actors.clear();
    const now = Date.now();
    for (const snap of state.unrecorded.values())
      state.actors.set(snap.symbol, {
        actor: SymbolActor.restore(snap, this.options.settings),
        lastUsed: now,
        unverified: false,
      });
  }

  /** Parses the chunk and makes sure every symbol in it has a live actor. */
  private async activate(
    state: PartitionState,
    batch: LogBatch,
    chunk: LogMessage[],
  ): Promise<ParsedMessage[]> {
    const parsed = chunk.map(m => parseLogMessage(m, this.options.partitionCount));
    const missing = new Set<string>();
    for (const p of parsed) if ("symbol" in p && !state.actors.has(p.symbol)) missing.add(p.symbol);
    if (missing.size > 0) await this.restore(state, batch, [...missing]);
    await this.verifyUnrecorded(state, batch, chunk, parsed);
    return parsed;
  }

  /**
   * Brings `symbols` into memory. Postgres' record says where each actor stands (seq, last
   * offset); the cache's state is taken only when it is exactly that one, otherwise the record's
   * own state is read. A symbol with no record is new (or was last written before records
   * existed: then its cached state is checked by `verifyUnrecorded`).
   */
  private async restore(state: PartitionState, batch: LogBatch, symbols: string[]): Promise<void> {
    const { partition } = state;
    const [positions, cached] = await Promise.all([
      this.retry(state, batch, `read the actor records of partition ${partition}`, "postgres", () =>
        this.options.results.actorPositions(symbols),
      ),
      this.fromCache(`load from the cache (partition ${partition})`, () =>
        this.options.snapshots.load(partition, symbols),
      ),
    ]);
    const recorded = new Map(positions.map(p => [p.symbol, p]));
    const now = Date.now();
    const counts = new Map<string, number>();
    const count = (source: RestoreSource, reason: RestoreReason) =>
      counts.set(`${source}/${reason}`, (counts.get(`${source}/${reason}`) ?? 0) + 1);
    const fromPostgres = new Map<string, RestoreReason>();
    const settingsChanged: ActorSnapshot[] = [];
    /** Continues an actor from `snapshot`; one taken under other settings is resettled below. */
    const install = (snapshot: ActorSnapshot, unverified: boolean): void => {
      try {
        const actor = SymbolActor.restore(snapshot, this.options.settings);
        state.actors.set(snapshot.symbol, { actor, lastUsed: now, unverified });
      } catch (err) {
        if (!(err instanceof SettingsChangedError)) throw err;
        settingsChanged.push(snapshot);
      }
    };
    /** A cached state may be damaged or of another version: false then, and the record decides. */
    const installCached = (snapshot: ActorSnapshot, unverified: boolean): boolean => {
      try {
        install(snapshot, unverified);
        return true;
      } catch (err) {
        if (err instanceof IncompatibleSnapshotError || err instanceof TypeError || err instanceof RangeError)
          return false;
        throw err;
      }
    };

    symbols.forEach((symbol, i) => {
      const json = cached ? cached[i] : null;
      const position = recorded.get(symbol);
      const snapshot = json ? parseSnapshot(json) : null;
      if (!position) {
        if (snapshot && snapshot.symbol === symbol && installCached(snapshot, true)) {
          count("cache", "hit");
          return;
        }
        state.actors.set(symbol, {
          actor: new SymbolActor(symbol, this.options.settings),
          lastUsed: now,
          unverified: true,
        });
        count("new", "none");
        return;
      }
      const matches =
        snapshot !== null &&
        snapshot.symbol === symbol &&
        snapshot.seq === position.seq &&
        snapshot.lastOffset === position.lastOffset &&
        position.partition === partition &&
        sameSettings(snapshot.settings, this.options.settings);
      if (matches && installCached(snapshot, false)) {
        count("cache", "hit");
        return;
      }
      fromPostgres.set(
        symbol,
        position.partition !== partition
          ? "moved"
          : !cached
            ? "unavailable"
            : json === null
              ? "missing"
              : snapshot === null || matches
                ? "unreadable"
                : "stale",
      );
    });

    if (fromPostgres.size > 0) {
      const records = await this.retry(
        state,
        batch,
        `read the actor states of partition ${partition}`,
        "postgres",
        () => this.options.results.actorRecords([...fromPostgres.keys()]),
      );
      for (const record of records) {
        let snapshot: ActorSnapshot;
        try {
          snapshot = JSON.parse(record.state) as ActorSnapshot;
        } catch (err) {
          throw new IncompatibleSnapshotError(`the recorded state of ${record.symbol} is not JSON`, {
            cause: err,
          });
        }
        install(snapshot, false);
        // Offsets of the record's partition mean nothing in this one.
        if (record.partition !== partition) state.actors.get(record.symbol)?.actor.movedPartition();
        count("postgres", fromPostgres.get(record.symbol)!);
      }
      const byReason = new Map<RestoreReason, number>();
      for (const reason of fromPostgres.values()) byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
      this.options.logger.info(
        `partition ${partition}: restored ${records.length} actor(s) from their record in Postgres; the cache's state was ${[
          ...byReason,
        ]
          .map(([reason, n]) => `${reason} for ${n}`)
          .join(", ")}`,
      );
    }

    // States recorded under other indicator settings: the indicators are recomputed from the
    // symbol's stored ticks, so the actor continues as if it had always run with these settings.
    for (const snapshot of settingsChanged) {
      const ticks = await this.retry(
        state,
        batch,
        `read the stored ticks of ${snapshot.symbol} (partition ${partition})`,
        "postgres",
        () => this.options.results.storedTicks(snapshot.symbol, snapshot.seq),
      );
      const actor = SymbolActor.resettle(snapshot, this.options.settings, ticks);
      const place = recorded.get(snapshot.symbol);
      if (place && place.partition !== partition) actor.movedPartition();
      const unverified = !place;
      state.actors.set(snapshot.symbol, { actor, lastUsed: now, unverified });
    }
    if (settingsChanged.length > 0) {
      this.options.logger.info(
        `partition ${partition}: indicator settings changed; recomputed ${settingsChanged.length} actor(s) from their stored ticks`,
      );
    }
    for (const [key, n] of counts) {
      const [source, reason] = key.split("/") as [RestoreSource, RestoreReason];
      this.options.observer?.restored?.(partition, source, reason, n);
    }
  }

  /**
   * An actor restored without a record in Postgres (a new symbol, or one last written before
   * records existed) is right only if it stands where the stored ticks end: its seq must be the
   * symbol's last stored seq (0 when none). Otherwise continuing would restart or rewind the
   * symbol's sequence, and new results would collide with stored rows and be dropped. Unless the
   * replay starts at the very message the next stored tick came from (the symbol was first written
   * after the partition's last record): then it recomputes those ticks identically. So this
   * refuses only a state that nothing can vouch for.
   */
  private async verifyUnrecorded(
    state: PartitionState,
    batch: LogBatch,
    chunk: LogMessage[],
    parsed: ParsedMessage[],
  ) {
    const pending = new Map<string, number>();
    parsed.forEach((p, i) => {
      if (!("symbol" in p) || pending.has(p.symbol) || !isPriceTick(p.message)) return;
      const slot = state.actors.get(p.symbol);
      if (slot?.unverified) pending.set(p.symbol, chunk[i].offset);
    });
    if (pending.size === 0) return;
    const stored = await this.retry(
      state,
      batch,
      `check new symbols of partition ${state.partition}`,
      "postgres",
      () => this.options.results.lastStoredSeqs([...pending.keys()]),
    );
    const last = new Map(stored.map(r => [r.symbol, r.seq]));
    for (const [symbol, offset] of pending) {
      const actor = state.actors.get(symbol)!.actor;
      const storedSeq = last.get(symbol) ?? 0;
      // Stored ticks beyond the state are fine when the next of them came from this very message:
      // the symbol's ticks were written after the partition's last record (a new symbol, then a
      // crash before the record), and the replay recomputes them from where they began.
      const replaysFromHere =
        actor.seq < storedSeq &&
        (await this.retry(state, batch, `check where ${symbol}'s stored ticks begin`, "postgres", () =>
          this.options.results.tickOrigin(symbol, actor.seq + 1),
        ).then(o => o !== null && o.partition === state.partition && o.offset === offset));
      if (actor.seq !== storedSeq && !replaysFromHere) {
        throw new SnapshotLostError(
          `symbol ${symbol}: Postgres holds its ticks up to seq ${storedSeq} but no record of its actor, and the only ` +
            `state found stands at seq ${actor.seq}; continuing at offset ${offset} would drop or misnumber results. ` +
            "Recover by replaying from the start: stop the actors, reset their consumer group (KAFKA_GROUP_ID) to the earliest offsets, start them.",
        );
      }
      state.actors.get(symbol)!.unverified = false;
    }
  }

  private ttlMs(): number {
    return this.options.idempotencyTtlMs ?? 24 * 3600 * 1000;
  }

  /** Forgets marks older than the TTL: in memory at every record, in Postgres every ten minutes (best effort). */
  private pruneMarks(state: PartitionState): void {
    const ttl = this.ttlMs();
    const now = Date.now();
    for (const [key, mark] of state.marks)
      if (mark.at < now - ttl && !state.unrecordedMarks.has(key)) state.marks.delete(key);
    if (now - state.prunedAt < 600000) return;
    state.prunedAt = now;
    void this.options.results.pruneIdempotencyMarks(state.partition, ttl).catch(() => undefined);
  }

  /** A cache write, best effort: a failure is logged once per outage, and the cache rests a while. */
  private async toCache(what: string, fn: () => Promise<void>): Promise<boolean> {
    return (await this.fromCache(what, async () => (await fn(), true))) ?? false;
  }

  /** A cache read, best effort: null while the cache is failing (callers then use Postgres). */
  private async fromCache<T>(what: string, fn: () => Promise<T>): Promise<T | null> {
    if (Date.now() < this.cacheRestAt) return null;
    try {
      const value = await fn();
      if (this.cacheOutage.succeeded()) this.options.observer?.cache?.(true);
      return value;
    } catch (err) {
      if (
        this.cacheOutage.failed(
          what,
          err,
          "; the actors go on with their records in Postgres, and try the cache again every few seconds",
        )
      )
        this.options.observer?.cache?.(false);
      this.cacheRestAt = Date.now() + Math.max(1000, this.options.retryMaxBackoffMs);
      return null;
    }
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

/** Whether a cached state was computed under the configured settings (else the record decides). */
function sameSettings(taken: Partial<IndicatorSettings> | undefined, settings: IndicatorSettings): boolean {
  return (Object.keys(settings) as (keyof IndicatorSettings)[]).every(k => taken?.[k] === settings[k]);
}

/** A cached state, or null when it is not even JSON of an object. */
function parseSnapshot(json: string): ActorSnapshot | null {
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === "object" && value !== null ? (value as ActorSnapshot) : null;
  } catch {
    return null;
  }
}

/** The unrecorded states with this chunk's changes on top. */
function pendingAfter(
  unrecorded: Map<string, ActorSnapshot>,
  changed: ActorSnapshot[],
): Map<string, ActorSnapshot> {
  const all = new Map(unrecorded);
  for (const snap of changed) all.set(snap.symbol, snap);
  return all;
}

function recordsOf(partition: number, snapshots: ActorSnapshot[]): ActorRecord[] {
  return snapshots.map(snap => ({
    symbol: snap.symbol,
    partition,
    seq: snap.seq,
    lastOffset: snap.lastOffset,
    state: JSON.stringify(snap),
  }));
}

function marksOf(
  marks: Map<string, IdempotencyMark>,
): { key: string; hi: number; hiOffset: number; at: number }[] {
  return [...marks].map(([key, m]) => ({ key, hi: m.hi, hiOffset: m.hiOffset, at: m.at }));
}
