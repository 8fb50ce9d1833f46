import type { SnapshotStore } from "../../adapters/snapshots/types";
import type { IndicatorSettings, Signal, SymbolActor, TickResult } from "../../domain/symbol-actor";
import type { Logger } from "../../lib/logger";
import type { ResultsStore } from "../store/results-store";

/** What a partition's loop waits for while it is stalled. The snapshot cache is never waited for. */
export type Dependency = "postgres" | "kafka";

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

/** Where an activated actor's state came from: the cache, the record in Postgres, or nowhere (a new symbol). */
export type RestoreSource = "cache" | "postgres" | "new";
/**
 * Why: `hit` (the cache held the recorded state); the cache's entry was `missing`, `stale` (another
 * seq or offset than the record, or another symbol), `unreadable` (damaged, another version), or the
 * cache was `unavailable`; `moved`: the record is of another partition (the partition count
 * changed); `none` for a new symbol.
 */
export type RestoreReason = "hit" | "missing" | "stale" | "unreadable" | "unavailable" | "moved" | "none";

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
   * committed: every this many ms, batched over every chunk since, whether the partition works off
   * a backlog or keeps up with a trickle (the node's timer records one whose messages stopped).
   * Results are written with every chunk regardless. 0 (the default here) records every chunk.
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

/** A live actor of a partition. */
export interface ActorSlot {
  actor: SymbolActor;
  lastUsed: number;
  /** Restored without a record in Postgres, and not yet checked against the ticks Postgres holds. */
  unverified: boolean;
}

/** An invariant of the host: a broken one is a bug here, never bad input. */
export function assert(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`invariant broken: ${what}`);
}
