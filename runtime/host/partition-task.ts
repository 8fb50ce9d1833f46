import { setTimeout as sleep } from "node:timers/promises";
import type { LogBatch, LogMessage } from "../../adapters/log/types";
import { isDataError } from "../../adapters/sql/errors";
import { FencedError } from "../../domain/errors";
import {
  SettingsChangedError,
  SymbolActor,
  type ActorSnapshot,
  type ActorView,
} from "../../domain/symbol-actor";
import {
  applyChunk,
  parseLogMessage,
  UnappliableMessageError,
  type IdempotencyMark,
  type ParsedMessage,
} from "../apply-chunk";
import { emptyOutputs, type DeadLetterRow } from "../batch-outputs";
import type { ActorRecord } from "../store/results-store";
import type { ActorRestorer } from "./actor-restorer";
import { Abandoned, retryWhileOwned, StallWatch, type CacheBreaker } from "./dependency-retry";
import {
  assert,
  type ActorHostOptions,
  type ActorSlot,
  type Dependency,
  type PartitionStall,
} from "./options";
import { PartitionMarks } from "./partition-marks";
import { Refusals } from "./refusals";
import type { PartitionClaimer } from "./partition-claim";
import { Unrecorded, type RecordPolicy } from "./record-policy";

/**
 * A partition's phase in this node's current assignment, and its only moves:
 *
 *     unclaimed --claim--> owned --FencedError: another node claimed it--> fenced
 *         |                                                                  ^
 *         +----claim refused: a later generation of the group holds it-------+
 *
 *     any phase --the group's next assignment--> revoked
 *
 * Only `owned` has an epoch, and only it processes and records. `fenced` waits for the next
 * assignment (claiming back would fence the rightful owner in turn); `revoked` is over for good.
 */
export type Phase = "unclaimed" | "owned" | "fenced" | "revoked";

const MOVES: Record<Phase, readonly Phase[]> = {
  unclaimed: ["owned", "fenced", "revoked"],
  owned: ["fenced", "revoked"],
  fenced: ["revoked"],
  revoked: [],
};

/** What every partition of the host shares. */
export interface HostContext {
  options: ActorHostOptions;
  chunkSize: number;
  policy: RecordPolicy;
  restorer: ActorRestorer;
  claimer: PartitionClaimer;
  cache: CacheBreaker;
  stopping(): boolean;
}

/**
 * One partition this node was assigned: its phase, its live actors, its idempotency marks, its
 * unrecorded changes, and the loop that takes its batches through claim, activate, apply,
 * persist, record and commit (docs/architecture.md, "The actor model"). Its operations never
 * overlap (`exclusive`).
 */
export class PartitionTask {
  private phase: Phase = "unclaimed";
  private claimedEpoch: number | null = null;
  /** How far the partition's results are written (the last message's offset), as of its claim and its writes since. */
  private written = -1;
  readonly actors = new Map<string, ActorSlot>();
  private readonly unrecorded = new Unrecorded();
  private readonly marks = new PartitionMarks();
  private readonly refusals: Refusals;
  /** The symbols of the chunk between its apply and its stored results: their live actors are ahead of what is stored. */
  private applying: ReadonlySet<string> | null = null;
  /** The log's end as the last batch saw it, for the lag reported with a commit. */
  private highWatermark = 0;
  private readonly watch: StallWatch;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly partition: number,
    readonly generation: number,
    private readonly host: HostContext,
  ) {
    this.watch = new StallWatch(partition, host.options.logger, host.options.observer);
    this.refusals = new Refusals(partition, host.options.logger);
  }

  get current(): Phase {
    return this.phase;
  }

  /** The epoch this node claimed the partition with; only while it owns it. */
  get epoch(): number {
    assert(
      this.phase === "owned" && this.claimedEpoch !== null,
      `partition ${this.partition} has an epoch only while owned`,
    );
    return this.claimedEpoch;
  }

  private move(next: Phase): void {
    assert(
      MOVES[this.phase].includes(next),
      `partition ${this.partition}: no move from ${this.phase} to ${next}`,
    );
    this.phase = next;
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  stall(): PartitionStall | null {
    return this.watch.current();
  }

  /** The group's next assignment: this one is over, whatever its loop is doing. */
  revoke(keepsPartition: boolean): void {
    this.move("revoked");
    // Actors of a partition kept across the rebalance are dropped too: another node may have
    // owned it in between, so its state is reloaded from the record under the new epoch.
    if (!keepsPartition) this.actors.clear();
    // A stalled loop of the old assignment ends at its next attempt; its stall is over now.
    this.watch.end("the partition was reassigned");
  }

  /** Another node claimed the partition after us: drop what this node held of it until the next assignment. */
  private fence(why: string): void {
    if (this.phase === "revoked") return;
    this.move("fenced");
    this.claimedEpoch = null;
    this.actors.clear();
    this.unrecorded.drop();
    this.host.options.logger.error(
      `${why}; dropping its actors and leaving it alone until the next assignment`,
    );
  }

  /** Processes one batch; returns how many leading messages are durably done (and committed). */
  handleBatch(batch: LogBatch): Promise<number> {
    return this.exclusive(async () => {
      if (this.phase === "fenced") {
        // Kafka learns of the rebalance through heartbeats; pausing here keeps the loop that
        // refetches this batch from spinning until then.
        await batch.heartbeat().catch(() => undefined);
        await sleep(Math.min(1000, this.host.options.retryMaxBackoffMs));
        return 0;
      }
      let done = 0;
      try {
        if (this.phase === "unclaimed" && !(await this.claim(batch))) return 0;
        while (done < batch.messages.length) {
          const size = this.refusals.chunkSizeAt(batch.messages[done].offset, this.host.chunkSize);
          const chunk = batch.messages.slice(done, done + size);
          if (!(await this.tryChunk(batch, chunk))) continue;
          done += chunk.length;
          await batch.heartbeat().catch(() => undefined);
        }
      } catch (err) {
        // The failed chunk's changes to the actors are not stored: forget them. Actors go back to
        // their state after the last stored chunk (unrecorded, or else their record), and the log
        // hands the failed chunk again.
        this.rewind();
        if (err instanceof FencedError) this.fence(err.message);
        else if (!(err instanceof Abandoned) && batch.isActive()) throw err;
      }
      return done;
    });
  }

  private retry<T>(batch: LogBatch, what: string, dependency: Dependency, fn: () => Promise<T>): Promise<T> {
    const bounds = { maxBackoffMs: this.host.options.retryMaxBackoffMs, stopping: this.host.stopping };
    return retryWhileOwned(this.watch, batch, bounds, { what, dependency }, fn);
  }

  /** Claims the partition (see PartitionClaimer); false when a later generation holds it. */
  private async claim(batch: LogBatch): Promise<boolean> {
    this.actors.clear();
    const claimed = await this.host.claimer.claim({
      partition: this.partition,
      batch,
      retry: (what, fn) => this.retry(batch, what, "postgres", fn),
      stopping: this.host.stopping,
    });
    if (this.phase === "revoked")
      throw new Abandoned(`partition ${this.partition}: reassigned during its claim`);
    if ("stale" in claimed) {
      this.fence(claimed.stale);
      return false;
    }
    this.marks.load(claimed.marks);
    this.refusals.load(claimed.refused);
    this.written = claimed.writtenOffset;
    this.unrecorded.recordedAt = this.host.policy.firstRecordedAt(Date.now());
    this.claimedEpoch = claimed.epoch;
    this.move("owned");
    this.host.options.logger.info(`partition ${this.partition}: claimed with epoch ${claimed.epoch}`);
    return true;
  }

  /**
   * One chunk, and what its failure says about its messages: true when its results are stored;
   * false when it must be processed again, now that a message is known to be unappliable (its
   * state would stop being finite) or Postgres keeps refusing its results with a data error.
   * Other failures propagate.
   */
  private async tryChunk(batch: LogBatch, chunk: LogMessage[]): Promise<boolean> {
    try {
      await this.processChunk(batch, chunk);
      this.refusals.stored(chunk[0].offset);
      return true;
    } catch (err) {
      if (err instanceof UnappliableMessageError) {
        this.rewind();
        this.refusals.refuse(err.offset, { kind: "unappliable", reason: err.message });
        return false;
      }
      // Refused already, and its dead letter alone still fails: nothing is left to take apart.
      if (!isDataError(err) || this.refusals.exhausted(chunk)) throw err;
      this.rewind();
      this.refusals.onDataError(chunk, err as Error);
      await sleep(Math.min(100, this.host.options.retryMaxBackoffMs));
      return false;
    }
  }

  private async processChunk(batch: LogBatch, chunk: LogMessage[]): Promise<void> {
    const { observer } = this.host.options;
    const parsed = await this.activate(batch, chunk);
    const applyStarted = process.hrtime.bigint();
    const now = Date.now();
    this.applying = new Set(parsed.flatMap(p => ("symbol" in p ? [p.symbol] : [])));
    const outcome = applyChunk(
      this.partition,
      chunk,
      parsed,
      symbol => this.liveActor(symbol, now),
      this.marks.current,
      this.refusals.refused,
    );
    if (outcome.duplicates > 0) observer?.duplicates?.(this.partition, outcome.duplicates);
    observer?.applied?.(outcome.outputs.ticks.length, Number(process.hrtime.bigint() - applyStarted) / 1e9);
    const persistStarted = process.hrtime.bigint();
    const next = chunk[chunk.length - 1].offset + 1;
    const changed = outcome.touched.map(a => a.snapshot());
    const due = this.host.policy.dueWithChunk(this.unrecorded.recordedAt, Date.now(), this.host.stopping());
    const record = due
      ? this.unrecorded.recordWith(this.partition, changed, outcome.marks)
      : { actors: [], marks: [] };
    const writtenBefore = this.written;
    const epoch = this.epoch;
    const { newSignals } = await this.retry(batch, `persist partition ${this.partition}`, "postgres", () =>
      this.host.options.results.write(outcome.outputs, {
        partition: this.partition,
        epoch,
        actors: record.actors,
        marks: record.marks,
        writtenOffset: next - 1,
        writtenBefore,
      }),
    );
    this.stored(chunk, outcome.marks, batch.highWatermark);
    observer?.persisted?.(Number(process.hrtime.bigint() - persistStarted) / 1e9);
    // Announced as soon as they are stored, whatever becomes of the record and the commit below.
    // A replayed chunk's ticks are old news (browsers would see seq go back), and its signals
    // were announced the first time.
    const fresh = outcome.latest.filter(t => t.offset > writtenBefore);
    if (fresh.length > 0 || newSignals.length > 0) observer?.published?.(this.partition, fresh, newSignals);
    this.reportDeadLetters(outcome.outputs.deadLetters);
    this.unrecorded.pendingNext = next;
    if (!due) {
      this.unrecorded.keep(changed, outcome.marks);
      return;
    }
    this.unrecorded.recorded();
    await this.recorded(record.actors, () =>
      this.retry(batch, `commit partition ${this.partition}`, "kafka", () =>
        this.host.options.commit(this.partition, next),
      ),
    );
  }

  /** A chunk's results are stored: the partition's written offset, marks and log time move past it. */
  private stored(chunk: LogMessage[], marks: Map<string, IdempotencyMark>, highWatermark: number): void {
    this.written = Math.max(this.written, chunk[chunk.length - 1].offset);
    this.applying = null;
    this.marks.stored(chunk, marks);
    this.highWatermark = highWatermark;
  }

  /** The live actor of a symbol the chunk's activation brought into memory. */
  private liveActor(symbol: string, now: number): SymbolActor {
    const slot = this.actors.get(symbol);
    assert(slot !== undefined, `partition ${this.partition}: ${symbol} was activated before its chunk`);
    slot.lastUsed = now;
    return slot.actor;
  }

  private reportDeadLetters(deadLetters: DeadLetterRow[]): void {
    if (deadLetters.length === 0) return;
    this.host.options.observer?.deadLetters?.(deadLetters.length);
    const first = deadLetters[0];
    this.host.options.logger.warn(
      `partition ${this.partition}: ${deadLetters.length} message(s) to dead_letters, first at offset ${first.offset} (${first.kind}): ${first.reason}`,
    );
  }

  /** After a record: the same states to the cache (best effort), then the offset commit. */
  private async recorded(actors: ActorRecord[], commit: () => Promise<void>): Promise<void> {
    const { observer } = this.host.options;
    this.unrecorded.recordedAt = Date.now();
    this.pruneMarks();
    if (actors.length > 0) {
      const started = process.hrtime.bigint();
      const what = `save to the cache (partition ${this.partition})`;
      if (await this.host.cache.write(what, cache => cache.save(this.partition, actors)))
        observer?.snapshotted?.(Number(process.hrtime.bigint() - started) / 1e9);
    }
    const next = this.unrecorded.pendingNext;
    if (next === null || next === this.unrecorded.committedNext) return;
    await commit();
    this.unrecorded.committedNext = next;
    observer?.committed?.(this.partition, next, this.highWatermark);
  }

  /** Whether the timer would record this partition now (see `flush`). */
  flushPending(all: boolean, now: number): boolean {
    return (
      this.phase === "owned" &&
      this.unrecorded.pending &&
      this.host.policy.dueOnTimer(this.unrecorded.recordedAt, now, all)
    );
  }

  /**
   * Records the partition's unrecorded changes in a transaction of their own, and commits its
   * offset: the timer's record of a partition whose messages stopped, and the shutdown's. True
   * when it recorded. A failure is left for the next call, logged once per outage by the loop.
   */
  flush(all: boolean, now: number): Promise<boolean> {
    return this.exclusive(async () => {
      if (!this.flushPending(all, now)) return false;
      const { actors, marks } = this.unrecorded.record(this.partition);
      const next = this.unrecorded.pendingNext;
      if (actors.length > 0 || marks.length > 0) {
        const record = { partition: this.partition, epoch: this.epoch, actors, marks };
        await this.host.options.results.write(emptyOutputs(this.partition), record);
        this.unrecorded.recorded();
      }
      await this.recorded(actors, async () => {
        if (next !== null) await this.host.options.commit(this.partition, next);
      });
      return true;
    }).catch((err: unknown) => {
      if (err instanceof FencedError) this.fence(err.message);
      else
        this.host.options.logger.debug?.(
          `partition ${this.partition}: record failed, will be tried again: ${(err as Error).message}`,
        );
      return false;
    });
  }

  /** Back to the state after the last stored chunk: unrecorded actors from their snapshots, the others from their record. */
  private rewind(): void {
    // The failed chunk's marks never joined `this.marks`: only stored chunks' do.
    this.applying = null;
    this.actors.clear();
    const now = Date.now();
    for (const snap of this.unrecorded.states.values())
      this.actors.set(snap.symbol, {
        actor: SymbolActor.restore(snap, this.host.options.settings),
        lastUsed: now,
        unverified: false,
      });
  }

  /** Parses the chunk and makes sure every symbol in it has a live actor, checked against Postgres. */
  private async activate(batch: LogBatch, chunk: LogMessage[]): Promise<ParsedMessage[]> {
    const target = {
      partition: this.partition,
      actors: this.actors,
      retry: <T>(what: string, fn: () => Promise<T>) => this.retry(batch, what, "postgres", fn),
    };
    const parsed = chunk.map(m => parseLogMessage(m, this.host.options.partitionCount));
    const missing = new Set<string>();
    for (const p of parsed) if ("symbol" in p && !this.actors.has(p.symbol)) missing.add(p.symbol);
    if (missing.size > 0) await this.host.restorer.restore(target, [...missing]);
    await this.host.restorer.verifyUnrecorded(target, chunk, parsed);
    return parsed;
  }

  private pruneMarks(): void {
    const ttl = this.host.options.idempotencyTtlMs ?? 24 * 3600 * 1000;
    const before = this.marks.prune(ttl, this.unrecorded.marks);
    if (before !== null)
      void this.host.options.results.pruneIdempotencyMarks(this.partition, before).catch(() => undefined);
  }

  /**
   * Live state of one of the partition's symbols, as far as its results are stored: from memory,
   * else from its record; null when unknown. While a chunk of the symbol is applied but not yet
   * stored, the state before that chunk: the chunk may yet fail and be rolled back.
   */
  async view(symbol: string): Promise<ActorView | null> {
    const { settings, results } = this.host.options;
    const ahead = this.applying?.has(symbol) ?? false;
    const slot = this.actors.get(symbol);
    if (slot && !ahead) return slot.actor.view();
    const settled = ahead ? this.unrecorded.states.get(symbol) : undefined;
    if (settled) return SymbolActor.restore(settled, settings).view();
    const [record] = await results.actorRecords([symbol]);
    if (!record) return null;
    const snapshot = JSON.parse(record.state) as ActorSnapshot;
    try {
      return SymbolActor.restore(snapshot, settings).view();
    } catch (err) {
      if (!(err instanceof SettingsChangedError)) throw err;
      const ticks = await results.storedTicks(symbol, snapshot.seq);
      return SymbolActor.resettle(snapshot, settings, ticks).view();
    }
  }

  /** Writes the snapshot of a live actor now (the REPL's `snapshot` command). */
  snapshotNow(symbol: string): Promise<{ partition: number; epoch: number; bytes: number } | null> {
    return this.exclusive(async () => {
      const slot = this.actors.get(symbol);
      if (!slot || this.phase !== "owned") return null;
      const json = JSON.stringify(slot.actor.snapshot());
      await this.host.options.snapshots.save(this.partition, [{ symbol, state: json }]);
      return { partition: this.partition, epoch: this.epoch, bytes: Buffer.byteLength(json) };
    });
  }

  /** Drops actors idle for longer than `idleMs`; an actor with an unrecorded change stays until the next record holds it. */
  passivate(now: number): Promise<number> {
    return this.exclusive(async () => {
      let dropped = 0;
      for (const [symbol, slot] of this.actors) {
        if (now - slot.lastUsed >= this.host.options.idleMs && !this.unrecorded.states.has(symbol)) {
          this.actors.delete(symbol);
          dropped += 1;
        }
      }
      return dropped;
    });
  }
}
