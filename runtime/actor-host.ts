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
import { isDataError } from "../adapters/sql/errors";
import {
  applyChunk,
  parseLogMessage,
  UnappliableMessageError,
  type IdempotencyMark,
  type KeyedMark,
  type ParsedMessage,
  type Refusal,
} from "./apply-chunk";
import { emptyOutputs, type DeadLetterRow } from "./batch-outputs";
import type { ActorRecord, ClaimHolder, ResultsStore } from "./results-store";

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
  /**
   * How long the key store (the gateway) hands out one use of an idempotency key (default 24 h):
   * a partition keeps each key's mark for twice that, of its own log time.
   */
  idempotencyTtlMs?: number;
  /** How long a claim waits for the log to confirm this member's group generation (default 10 s). */
  generationWaitMs?: number;
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
  /** Idempotency keys this partition has applied messages of (see apply-chunk.ts), as of its stored chunks. */
  readonly marks = new Map<string, IdempotencyMark>();
  /** Marks set by stored chunks since the last record. */
  readonly unrecordedMarks = new Map<string, IdempotencyMark>();
  /**
   * Messages dead-lettered unapplied (their actor's state would stop being finite, or Postgres
   * refused their results), by offset: skipped again wherever the log hands them again.
   */
  readonly refused = new Map<number, Refusal>();
  /** Data errors per chunk (by its first offset): a chunk that keeps meeting one is taken apart. */
  readonly dataErrors = new Map<number, number>();
  /** Chunks up to this offset are of one message each, to find the one Postgres refuses. */
  isolateUntil = -1;
  /** The symbols of the chunk between its apply and its stored results: their live actors are ahead of what is stored. */
  applying: ReadonlySet<string> | null = null;
  /** The latest time the log gave a message of this partition (ms): the clock its marks expire by. */
  logTime = 0;
  /** When the partition's old marks were last pruned from Postgres (log time). */
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

/** How often a chunk meets a data error from Postgres before it is taken apart, or its one message dead-lettered. */
const DATA_ERROR_TRIES = 3;
/** How long a claim waits for the log to confirm this member's group generation (Kafka: a heartbeat). */
const GENERATION_WAIT_MS = 10000;

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

  /**
   * Live state of a symbol this node owns, as far as its results are stored: from memory, else
   * from its record; null when unknown or not owned here. While a chunk of the symbol is applied
   * but not yet stored, the state before that chunk: the chunk may yet fail and be rolled back.
   */
  async view(symbol: string): Promise<ActorView | null> {
    const state = this.partitions.get(this.partitionOf(symbol));
    if (!state) return null;
    const ahead = state.applying?.has(symbol) ?? false;
    const slot = state.actors.get(symbol);
    if (slot && !ahead) return slot.actor.view();
    const settled = ahead ? state.unrecorded.get(symbol) : undefined;
    if (settled) return SymbolActor.restore(settled, this.options.settings).view();
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
        if (state.epoch === null && !(await this.claim(state, batch))) return 0;
        while (done < batch.messages.length) {
          const size = batch.messages[done].offset <= state.isolateUntil ? 1 : this.chunkSize;
          const chunk = batch.messages.slice(done, done + size);
          if (!(await this.tryChunk(state, batch, chunk))) continue;
          done += chunk.length;
          await batch.heartbeat().catch(() => undefined);
        }
      } catch (err) {
        // The failed chunk's changes to the actors are not stored: forget them. Actors go back to
        // their state after the last stored chunk (unrecorded, or else their record), and the log
        // hands the failed chunk again.
        this.rewind(state);
        if (err instanceof FencedError) this.onFenced(state, err.message);
        else if (!(err instanceof Abandoned) && batch.isActive()) throw err;
      }
      return done;
    });
  }

  /**
   * One chunk, and what its failure says about its messages: true when its results are stored;
   * false when it must be processed again, now that a message is known to be unappliable (its
   * state would stop being finite) or Postgres keeps refusing its results with a data error.
   * Other failures propagate.
   */
  private async tryChunk(state: PartitionState, batch: LogBatch, chunk: LogMessage[]): Promise<boolean> {
    try {
      await this.processChunk(state, batch, chunk);
      state.dataErrors.delete(chunk[0].offset);
      return true;
    } catch (err) {
      if (err instanceof UnappliableMessageError) {
        this.rewind(state);
        this.refuse(state, err.offset, { kind: "unappliable", reason: err.message });
        return false;
      }
      // Refused already, and its dead letter alone still fails: nothing is left to take apart.
      if (!isDataError(err) || (chunk.length === 1 && state.refused.has(chunk[0].offset))) throw err;
      this.rewind(state);
      this.onDataError(state, chunk, err as Error);
      await sleep(Math.min(100, this.options.retryMaxBackoffMs));
      return false;
    }
  }

  /**
   * Postgres refused a chunk's results with a data error. A chunk of several messages that keeps
   * meeting it is taken apart into chunks of one message; a single message that keeps meeting it
   * is dead-lettered with the error, so that the rest of the partition flows.
   */
  private onDataError(state: PartitionState, chunk: LogMessage[], err: Error): void {
    const first = chunk[0].offset;
    const tries = (state.dataErrors.get(first) ?? 0) + 1;
    state.dataErrors.set(first, tries);
    this.options.logger.warn(
      `partition ${state.partition}: Postgres refused the results of offsets ${first}..${chunk[chunk.length - 1].offset} ` +
        `(try ${tries} of ${DATA_ERROR_TRIES}): ${err.message}`,
    );
    if (tries < DATA_ERROR_TRIES) return;
    state.dataErrors.delete(first);
    if (chunk.length > 1) state.isolateUntil = Math.max(state.isolateUntil, chunk[chunk.length - 1].offset);
    else
      this.refuse(state, first, { kind: "refused", reason: `Postgres refused its results: ${err.message}` });
  }

  private refuse(state: PartitionState, offset: number, refusal: Refusal): void {
    state.refused.set(offset, refusal);
    this.options.logger.warn(
      `partition ${state.partition}: offset ${offset} goes to dead_letters: ${refusal.reason}`,
    );
  }

  /** The partition moved to another node: drop what this node held of it until the next assignment. */
  private onFenced(state: PartitionState, why: string): void {
    state.actors.clear();
    state.unrecorded.clear();
    state.unrecordedMarks.clear();
    state.pendingNext = null;
    state.epoch = null;
    state.fenced = true;
    this.options.logger.error(`${why}; dropping its actors and leaving it alone until the next assignment`);
  }

  /**
   * Claims the partition under the group generation the log gives the batch's assignment, and
   * loads what processing it needs (its idempotency marks, the messages refused before). Only
   * then does it count as claimed: a failure on the way leaves it unclaimed, to be claimed again.
   * False when a later generation holds it (this member froze past the session timeout, and the
   * group moved it on): the assignment is over then, as when fenced.
   */
  private async claim(state: PartitionState, batch: LogBatch): Promise<boolean> {
    const { partition } = state;
    state.actors.clear();
    const claimed = await this.claimUnderGeneration(state, batch);
    if ("refused" in claimed) {
      this.onFenced(
        state,
        `partition ${partition}: not claimed in generation ${claimed.mine} of the consumer group: ` +
          `${claimed.refused.owner ?? "a node"} claimed it in generation ${claimed.refused.generation}, so this assignment is stale`,
      );
      return false;
    }
    const [marks, refused] = await Promise.all([
      this.retry(state, batch, `read the idempotency marks of partition ${partition}`, "postgres", () =>
        this.options.results.idempotencyMarks(partition),
      ),
      this.retry(state, batch, `read the refused messages of partition ${partition}`, "postgres", () =>
        this.options.results.refusedMessages(partition, batch.messages[0].offset),
      ),
    ]);
    state.marks.clear();
    for (const { key, ...mark } of marks) state.marks.set(key, mark);
    state.refused.clear();
    for (const [offset, refusal] of refused) state.refused.set(offset, refusal);
    state.written = claimed.writtenOffset;
    // Partitions claimed together would record together, every interval, in one burst that
    // holds up the results behind it: each starts at its own point of the interval instead.
    state.recordedAt = Date.now() - Math.random() * (this.options.recordIntervalMs ?? 0);
    state.epoch = claimed.epoch;
    this.options.logger.info(`partition ${partition}: claimed with epoch ${state.epoch}`);
    return true;
  }

  /**
   * The claim, in the batch's group generation. Refused by a later generation, it is either a
   * stale member's (it froze past the session timeout) or the group was deleted and made anew
   * (its generations start again at 1): a heartbeat the log accepts now tells them apart, as it
   * confirms this member's generation as the group's current one. Then the claim overrules.
   */
  private async claimUnderGeneration(
    state: PartitionState,
    batch: LogBatch,
  ): Promise<{ epoch: number; writtenOffset: number } | { refused: ClaimHolder; mine: number | null }> {
    const { partition } = state;
    const owner = this.options.owner ?? "unnamed";
    const generation = await this.groupGeneration(state, batch, 0);
    const claim = (overrule: boolean) =>
      this.retry(state, batch, `claim partition ${partition}`, "postgres", () =>
        this.options.results.claim(partition, owner, generation, overrule),
      );
    const first = await claim(false);
    if (!("refused" in first)) return first;
    if (generation === null || (await this.groupGeneration(state, batch, Date.now())) !== generation)
      return { ...first, mine: generation };
    this.options.logger.warn(
      `partition ${partition}: its claim is of group generation ${first.refused.generation}, this node's is ` +
        `${generation}, and the log confirms ${generation} as current: the consumer group was made anew; claiming it`,
    );
    const second = await claim(true);
    return "refused" in second ? { ...second, mine: generation } : second;
  }

  /**
   * The group generation of the batch's assignment, as the log confirmed it after `since` (ms):
   * Kafka says it with the first heartbeat or commit of the assignment. Null when the log numbers
   * no generations. Gives the batch up (Abandoned) when it is no longer active, or the log does
   * not confirm this member within GENERATION_WAIT_MS: its batches are refetched then.
   */
  private async groupGeneration(
    state: PartitionState,
    batch: LogBatch,
    since: number,
  ): Promise<number | null> {
    if (!batch.groupGeneration) return null;
    const deadline = Date.now() + (this.options.generationWaitMs ?? GENERATION_WAIT_MS);
    for (;;) {
      if (!batch.isActive() || this.stopping)
        throw new Abandoned(`claim partition ${state.partition}: no longer ours, or stopping`);
      const known = batch.groupGeneration();
      if (known && known.confirmedAt > since) return known.id;
      if (Date.now() > deadline)
        throw new Abandoned(
          `claim partition ${state.partition}: the log did not confirm this member's generation`,
        );
      await batch.heartbeat().catch(() => undefined);
      await sleep(50);
    }
  }

  private async processChunk(state: PartitionState, batch: LogBatch, chunk: LogMessage[]): Promise<void> {
    const { observer } = this.options;
    const partition = state.partition;
    const parsed = await this.activate(state, batch, chunk);

    const applyStarted = process.hrtime.bigint();
    const now = Date.now();
    state.applying = new Set(parsed.flatMap(p => ("symbol" in p ? [p.symbol] : [])));
    const {
      outputs: out,
      touched,
      latest,
      marks,
      duplicates,
    } = applyChunk(
      partition,
      chunk,
      parsed,
      symbol => this.liveActor(state, symbol, now),
      state.marks,
      state.refused,
    );
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
    const recordMarks = due ? keyedMarks(new Map([...state.unrecordedMarks, ...marks])) : [];
    const writtenBefore = state.written;
    const epoch = state.epoch;
    assert(
      epoch !== null,
      `partition ${partition}: a chunk is processed only while the partition is claimed`,
    );
    const { newSignals } = await this.retry(state, batch, `persist partition ${partition}`, "postgres", () =>
      this.options.results.write(out, {
        partition,
        epoch,
        actors,
        marks: recordMarks,
        writtenOffset: next - 1,
        writtenBefore,
      }),
    );
    state.written = Math.max(state.written, next - 1);
    state.applying = null;
    for (const [key, mark] of marks) state.marks.set(key, mark);
    for (const m of chunk) if (m.timestamp > state.logTime) state.logTime = m.timestamp;
    observer?.persisted?.(Number(process.hrtime.bigint() - persistStarted) / 1e9);
    state.highWatermark = batch.highWatermark;
    // Announced as soon as they are stored, whatever becomes of the record and the commit below.
    // A replayed chunk's ticks are old news (browsers would see seq go back), and its signals
    // were announced the first time.
    const fresh = latest.filter(t => t.offset > writtenBefore);
    if (fresh.length > 0 || newSignals.length > 0) observer?.published?.(partition, fresh, newSignals);
    this.reportDeadLetters(partition, out.deadLetters);
    state.pendingNext = next;
    if (due) {
      state.unrecorded.clear();
      state.unrecordedMarks.clear();
      await this.recorded(state, actors, () =>
        this.retry(state, batch, `commit partition ${partition}`, "kafka", () =>
          this.options.commit(partition, next),
        ),
      );
    } else {
      for (const snap of changed) state.unrecorded.set(snap.symbol, snap);
      for (const [key, mark] of marks) state.unrecordedMarks.set(key, mark);
    }
  }

  /** The live actor of a symbol the chunk's activation brought into memory. */
  private liveActor(state: PartitionState, symbol: string, now: number): SymbolActor {
    const slot = state.actors.get(symbol);
    assert(slot !== undefined, `partition ${state.partition}: ${symbol} was activated before its chunk`);
    slot.lastUsed = now;
    return slot.actor;
  }

  private reportDeadLetters(partition: number, deadLetters: DeadLetterRow[]): void {
    if (deadLetters.length === 0) return;
    this.options.observer?.deadLetters?.(deadLetters.length);
    const first = deadLetters[0];
    this.options.logger.warn(
      `partition ${partition}: ${deadLetters.length} message(s) to dead_letters, first at offset ${first.offset} (${first.kind}): ${first.reason}`,
    );
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
          const { epoch, pendingNext } = state;
          assert(epoch !== null, `partition ${state.partition}: recorded only while claimed`);
          const actors = recordsOf(state.partition, [...state.unrecorded.values()]);
          const marks = keyedMarks(state.unrecordedMarks);
          if (actors.length > 0 || marks.length > 0) {
            await this.options.results.write(emptyOutputs(state.partition), {
              partition: state.partition,
              epoch,
              actors,
              marks,
            });
            state.unrecorded.clear();
            state.unrecordedMarks.clear();
          }
          await this.recorded(state, actors, async () => {
            if (pendingNext !== null) await this.options.commit(state.partition, pendingNext);
          });
          flushed += 1;
        })
        .catch((err: unknown) => {
          if (err instanceof FencedError) {
            this.onFenced(state, err.message);
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
    // The failed chunk's marks never reached `state.marks`: only stored chunks' do.
    state.applying = null;
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
        const reason = fromPostgres.get(record.symbol);
        assert(
          reason !== undefined,
          `partition ${partition}: a record of ${record.symbol} was not asked for`,
        );
        count("postgres", reason);
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
    // The symbol's first message in the chunk, of either kind: side data is stored under the
    // actor's counters too, so an unverified actor is checked before it writes anything.
    const pending = new Map<string, { offset: number; tick: boolean }>();
    parsed.forEach((p, i) => {
      if (!("symbol" in p) || pending.has(p.symbol)) return;
      const slot = state.actors.get(p.symbol);
      if (slot?.unverified) pending.set(p.symbol, { offset: chunk[i].offset, tick: isPriceTick(p.message) });
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
    for (const [symbol, { offset, tick }] of pending) {
      const slot = state.actors.get(symbol);
      assert(slot !== undefined, `partition ${state.partition}: ${symbol} was activated before its check`);
      const actor = slot.actor;
      const storedSeq = last.get(symbol) ?? 0;
      // Stored ticks beyond the state are fine when the next of them came from this very message
      // (or, for side data, from a later one of this partition): the symbol's ticks were written
      // after the partition's last record (a new symbol, then a crash before the record), and the
      // replay recomputes them from where they began.
      const replaysFromHere =
        actor.seq < storedSeq &&
        (await this.retry(state, batch, `check where ${symbol}'s stored ticks begin`, "postgres", () =>
          this.options.results.tickOrigin(symbol, actor.seq + 1),
        ).then(
          o =>
            o !== null && o.partition === state.partition && (tick ? o.offset === offset : o.offset > offset),
        ));
      if (actor.seq !== storedSeq && !replaysFromHere) {
        throw new SnapshotLostError(
          `symbol ${symbol}: Postgres holds its ticks up to seq ${storedSeq} but no record of its actor, and the only ` +
            `state found stands at seq ${actor.seq}; continuing at offset ${offset} would drop or misnumber results. ` +
            "Recover by replaying from the start: stop the actors, reset their consumer group (KAFKA_GROUP_ID) to the earliest offsets, start them.",
        );
      }
      slot.unverified = false;
    }
  }

  /**
   * Forgets marks whose message the log accepted longer ago than twice the key store's TTL, by the
   * partition's own clock (the latest log time of its messages): in memory at every record, in
   * Postgres every ten minutes of it (best effort). No decision depends on when this runs: a mark
   * decides only against copies of its own use, and the key store hands out a use for its TTL, so
   * a copy of a use reaches the log within the TTL of its first (give or take the clock skew
   * between gateway nodes, which the second TTL covers).
   */
  private pruneMarks(state: PartitionState): void {
    const before = state.logTime - 2 * (this.options.idempotencyTtlMs ?? 24 * 3600 * 1000);
    for (const [key, mark] of state.marks)
      if (mark.at < before && !state.unrecordedMarks.has(key)) state.marks.delete(key);
    if (state.logTime - state.prunedAt < 600000) return;
    state.prunedAt = state.logTime;
    void this.options.results.pruneIdempotencyMarks(state.partition, before).catch(() => undefined);
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

function keyedMarks(marks: Map<string, IdempotencyMark>): KeyedMark[] {
  return [...marks].map(([key, m]) => ({ key, ...m }));
}

/** An invariant of the host: a broken one is a bug here, never bad input. */
function assert(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`invariant broken: ${what}`);
}
