/**
 * The cache of actors' states: Redis in production, memory in embedded mode. Postgres holds the
 * record of every state (table `actor_state`, written with the results); a cached state is used
 * only when it is that very state (same symbol, seq and offset), so a cache that is emptied,
 * rolled back or written late by a node that lost the partition costs a read, never a result.
 *
 * Types only, so no test of its own: test/support/snapshot-store-contract.ts holds both
 * implementations to it.
 */
export interface SnapshotEntry {
  symbol: string;
  /** The actor's serialized state (JSON). */
  state: string;
}

export interface SnapshotStore {
  readonly kind: "redis" | "memory";
  /** Writes the entries (last writer wins: the reader checks each state against Postgres). */
  save(partition: number, entries: SnapshotEntry[]): Promise<void>;
  /** The cached states of `symbols` of `partition` (null where none), in the same order. */
  load(partition: number, symbols: string[]): Promise<(string | null)[]>;
  /** Every symbol with a cached state in `partition`. */
  symbols(partition: number): Promise<string[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
