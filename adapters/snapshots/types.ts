/**
 * Where actors' state survives their node: Redis in production, memory in embedded mode.
 * Writes are fenced by a per-partition epoch, bumped by every new owner, so a node that lost
 * a partition (a zombie after a long pause) cannot overwrite the new owner's state.
 */
export interface SnapshotEntry {
  symbol: string;
  /** The actor's serialized state (JSON). */
  state: string;
}

export interface SnapshotStore {
  readonly kind: "redis" | "memory";
  /** Takes ownership of `partition`: bumps its epoch and returns the new value. */
  claim(partition: number): Promise<number>;
  /** Writes the entries iff `epoch` is still the partition's epoch; otherwise throws FencedError. */
  save(partition: number, epoch: number, entries: SnapshotEntry[]): Promise<void>;
  /** The stored states of `symbols` of `partition` (null where none), in the same order. */
  load(partition: number, symbols: string[]): Promise<(string | null)[]>;
  /** Every symbol with a snapshot in `partition`. */
  symbols(partition: number): Promise<string[]>;
  epoch(partition: number): Promise<number>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
