import type { LogMessage } from "../../adapters/log/types";
import { StockError } from "../../domain/errors";
import { isPriceTick } from "../../domain/messages";
import {
  IncompatibleSnapshotError,
  SettingsChangedError,
  SymbolActor,
  type ActorSnapshot,
  type IndicatorSettings,
} from "../../domain/symbol-actor";
import type { Logger } from "../../lib/logger";
import type { ParsedMessage } from "../apply-chunk";
import type { ActorRecord, ResultsStore } from "../store/results-store";
import type { CacheBreaker } from "./dependency-retry";
import { assert, type ActorSlot, type HostObserver, type RestoreReason, type RestoreSource } from "./options";

/** An actor without a record whose state does not match the ticks Postgres holds; see `verifyUnrecorded`. */
export class SnapshotLostError extends StockError {}

/** What restoring needs of one partition's loop: its live actors, and its retry of a Postgres step. */
export interface RestoreTarget {
  partition: number;
  actors: Map<string, ActorSlot>;
  retry<T>(what: string, fn: () => Promise<T>): Promise<T>;
}

type Position = Omit<ActorRecord, "state">;

/** Where one symbol's state comes from, as `classify` decides it. */
export type RestoreDecision =
  /** Continued from the cache's state, or a new actor. */
  | { symbol: string; source: "cache" | "new"; actor: SymbolActor; unverified: boolean }
  /** The cache's state, taken under other indicator settings: recomputed from the stored ticks. */
  | { symbol: string; source: "resettle"; snapshot: ActorSnapshot }
  /** The record's own state must be read from Postgres, for `reason`. */
  | { symbol: string; source: "postgres"; reason: RestoreReason };

/**
 * Decides, without I/O, where each symbol's state comes from. Postgres' record says where each
 * actor stands (seq, last offset); the cache's state is taken only when it is exactly that one
 * and can be read, otherwise the record's own state. A symbol with no record is new (or was last
 * written before records existed: then the cache's state, unverified, is checked later).
 */
export function classify(
  symbols: string[],
  positions: Position[],
  cached: (string | null)[] | null,
  partition: number,
  settings: IndicatorSettings,
): RestoreDecision[] {
  const recorded = new Map(positions.map(p => [p.symbol, p]));
  return symbols.map((symbol, i): RestoreDecision => {
    const json = cached ? cached[i] : null;
    const snapshot = json ? parseSnapshot(json) : null;
    const ours = snapshot !== null && snapshot.symbol === symbol ? snapshot : null;
    const position = recorded.get(symbol);
    if (!position) {
      const restored = ours ? continued(ours, settings) : null;
      if (restored === "resettle" && ours) return { symbol, source: "resettle", snapshot: ours };
      if (restored instanceof SymbolActor)
        return { symbol, source: "cache", actor: restored, unverified: true };
      return { symbol, source: "new", actor: new SymbolActor(symbol, settings), unverified: true };
    }
    const matches =
      ours !== null &&
      ours.seq === position.seq &&
      ours.lastOffset === position.lastOffset &&
      position.partition === partition &&
      sameSettings(ours.settings, settings);
    const restored = matches ? continued(ours, settings) : null;
    if (restored instanceof SymbolActor)
      return { symbol, source: "cache", actor: restored, unverified: false };
    const reason: RestoreReason =
      position.partition !== partition
        ? "moved"
        : !cached
          ? "unavailable"
          : json === null
            ? "missing"
            : snapshot === null || matches
              ? "unreadable"
              : "stale";
    return { symbol, source: "postgres", reason };
  });
}

/** The actor `snapshot` continues as; "resettle" when it was taken under other settings; null when it cannot be read. */
function continued(snapshot: ActorSnapshot, settings: IndicatorSettings): SymbolActor | "resettle" | null {
  try {
    return SymbolActor.restore(snapshot, settings);
  } catch (err) {
    if (err instanceof SettingsChangedError) return "resettle";
    if (err instanceof IncompatibleSnapshotError || err instanceof TypeError || err instanceof RangeError)
      return null;
    throw err;
  }
}

/** Counts of activated actors per "source/reason", for the observer. */
class RestoreCounts {
  private readonly counts = new Map<string, number>();

  add(source: RestoreSource, reason: RestoreReason): void {
    const key = `${source}/${reason}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  report(partition: number, observer: HostObserver | undefined): void {
    for (const [key, n] of this.counts) {
      const [source, reason] = key.split("/") as [RestoreSource, RestoreReason];
      observer?.restored?.(partition, source, reason, n);
    }
  }
}

/** A state taken under other indicator settings, recomputed from its stored ticks once loaded. */
interface Resettle {
  snapshot: ActorSnapshot;
  /** The record is of another partition (the partition count changed). */
  moved: boolean;
  unverified: boolean;
}

/**
 * Brings actors into memory when their partition's chunk needs them (docs/architecture.md,
 * "Restoring an actor"): `classify` decides, then the records the cache could not stand in for
 * are read, and states of other settings are recomputed from the stored ticks. Losing, rolling
 * back or corrupting the cache costs reads, never results.
 */
export class ActorRestorer {
  constructor(
    private readonly settings: IndicatorSettings,
    private readonly results: ResultsStore,
    private readonly cache: CacheBreaker,
    private readonly logger: Logger,
    private readonly observer: HostObserver | undefined,
  ) {}

  async restore(target: RestoreTarget, symbols: string[]): Promise<void> {
    const { partition } = target;
    const [positions, cached] = await Promise.all([
      target.retry(`read the actor records of partition ${partition}`, () =>
        this.results.actorPositions(symbols),
      ),
      this.cache.read(`load from the cache (partition ${partition})`, c => c.load(partition, symbols)),
    ]);
    const counts = new RestoreCounts();
    const resettles: Resettle[] = [];
    const fromRecords = new Map<string, RestoreReason>();
    const now = Date.now();
    for (const d of classify(symbols, positions, cached, partition, this.settings)) {
      if (d.source === "postgres") {
        fromRecords.set(d.symbol, d.reason);
      } else if (d.source === "resettle") {
        counts.add("cache", "hit");
        resettles.push({ snapshot: d.snapshot, moved: false, unverified: true });
      } else {
        counts.add(d.source, d.source === "cache" ? "hit" : "none");
        target.actors.set(d.symbol, { actor: d.actor, lastUsed: now, unverified: d.unverified });
      }
    }
    if (fromRecords.size > 0) await this.fromRecords(target, fromRecords, counts, resettles);
    await this.resettle(target, resettles);
    counts.report(partition, this.observer);
  }

  /** The records' own states, for the symbols whose cached state could not stand in for them. */
  private async fromRecords(
    target: RestoreTarget,
    reasons: Map<string, RestoreReason>,
    counts: RestoreCounts,
    resettles: Resettle[],
  ): Promise<void> {
    const { partition } = target;
    const records = await target.retry(`read the actor states of partition ${partition}`, () =>
      this.results.actorRecords([...reasons.keys()]),
    );
    for (const record of records) {
      const snapshot = recordedSnapshot(record);
      const moved = record.partition !== partition;
      const reason = reasons.get(record.symbol);
      assert(reason !== undefined, `partition ${partition}: a record of ${record.symbol} was not asked for`);
      counts.add("postgres", reason);
      let actor: SymbolActor;
      try {
        actor = SymbolActor.restore(snapshot, this.settings);
      } catch (err) {
        if (!(err instanceof SettingsChangedError)) throw err;
        resettles.push({ snapshot, moved, unverified: false });
        continue;
      }
      // Offsets of the record's partition mean nothing in this one.
      if (moved) actor.movedPartition();
      target.actors.set(record.symbol, { actor, lastUsed: Date.now(), unverified: false });
    }
    const byReason = new Map<RestoreReason, number>();
    for (const reason of reasons.values()) byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    const why = [...byReason].map(([reason, n]) => `${reason} for ${n}`).join(", ");
    this.logger.info(
      `partition ${partition}: restored ${records.length} actor(s) from their record in Postgres; the cache's state was ${why}`,
    );
  }

  /**
   * States recorded under other indicator settings: the indicators are recomputed from the
   * symbol's stored ticks, so the actor continues as if it had always run with these settings.
   */
  private async resettle(target: RestoreTarget, resettles: Resettle[]): Promise<void> {
    const { partition } = target;
    for (const { snapshot, moved, unverified } of resettles) {
      const ticks = await target.retry(
        `read the stored ticks of ${snapshot.symbol} (partition ${partition})`,
        () => this.results.storedTicks(snapshot.symbol, snapshot.seq),
      );
      const actor = SymbolActor.resettle(snapshot, this.settings, ticks);
      if (moved) actor.movedPartition();
      target.actors.set(snapshot.symbol, { actor, lastUsed: Date.now(), unverified });
    }
    if (resettles.length > 0) {
      this.logger.info(
        `partition ${partition}: indicator settings changed; recomputed ${resettles.length} actor(s) from their stored ticks`,
      );
    }
  }

  /**
   * An actor restored without a record in Postgres (a new symbol, or one last written before
   * records existed) is right only if it stands where the stored ticks end: its seq must be the
   * symbol's last stored seq (0 when none). Otherwise continuing would restart or rewind the
   * symbol's sequence, and new results would collide with stored rows and be dropped. Unless the
   * replay starts at the very message the next stored tick came from (the symbol was first written
   * after the partition's last record): then it recomputes those ticks identically. So this
   * refuses only a state that nothing can vouch for. Checked on the symbol's first message of a
   * chunk, of either kind: side data is stored under the actor's counters too.
   */
  async verifyUnrecorded(target: RestoreTarget, chunk: LogMessage[], parsed: ParsedMessage[]): Promise<void> {
    const pending = new Map<string, { offset: number; tick: boolean }>();
    parsed.forEach((p, i) => {
      if (!("symbol" in p) || pending.has(p.symbol)) return;
      if (target.actors.get(p.symbol)?.unverified)
        pending.set(p.symbol, { offset: chunk[i].offset, tick: isPriceTick(p.message) });
    });
    if (pending.size === 0) return;
    const stored = await target.retry(`check new symbols of partition ${target.partition}`, () =>
      this.results.lastStoredSeqs([...pending.keys()]),
    );
    const last = new Map(stored.map(r => [r.symbol, r.seq]));
    for (const [symbol, first] of pending) await this.verifyOne(target, symbol, last.get(symbol) ?? 0, first);
  }

  private async verifyOne(
    target: RestoreTarget,
    symbol: string,
    storedSeq: number,
    first: { offset: number; tick: boolean },
  ): Promise<void> {
    const slot = target.actors.get(symbol);
    assert(slot !== undefined, `partition ${target.partition}: ${symbol} was activated before its check`);
    const { actor } = slot;
    // Stored ticks beyond the state are fine when the next of them came from this very message
    // (or, for side data, from a later one of this partition): the symbol's ticks were written
    // after the partition's last record (a new symbol, then a crash before the record), and the
    // replay recomputes them from where they began.
    const replaysFromHere =
      actor.seq < storedSeq &&
      (await target
        .retry(`check where ${symbol}'s stored ticks begin`, () =>
          this.results.tickOrigin(symbol, actor.seq + 1),
        )
        .then(
          o =>
            o !== null &&
            o.partition === target.partition &&
            (first.tick ? o.offset === first.offset : o.offset > first.offset),
        ));
    if (actor.seq !== storedSeq && !replaysFromHere) {
      throw new SnapshotLostError(
        `symbol ${symbol}: Postgres holds its ticks up to seq ${storedSeq} but no record of its actor, and the only ` +
          `state found stands at seq ${actor.seq}; continuing at offset ${first.offset} would drop or misnumber results. ` +
          "Recover by replaying from the start: stop the actors, reset their consumer group (KAFKA_GROUP_ID) to the earliest offsets, start them.",
      );
    }
    slot.unverified = false;
  }
}

/** A record's state document; a record that is not JSON cannot be continued. */
function recordedSnapshot(record: ActorRecord): ActorSnapshot {
  try {
    return JSON.parse(record.state) as ActorSnapshot;
  } catch (err) {
    throw new IncompatibleSnapshotError(`the recorded state of ${record.symbol} is not JSON`, { cause: err });
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
