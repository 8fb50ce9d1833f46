import { FencedError } from "../../domain/errors";
import type { SnapshotEntry, SnapshotStore } from "./types";

/** The embedded snapshot store: the same fencing rules as Redis, kept in this process. */
export class MemorySnapshotStore implements SnapshotStore {
  readonly kind = "memory";
  private readonly epochs = new Map<number, number>();
  private readonly states = new Map<number, Map<string, string>>();

  async claim(partition: number): Promise<number> {
    const next = (this.epochs.get(partition) ?? 0) + 1;
    this.epochs.set(partition, next);
    return next;
  }

  async save(partition: number, epoch: number, entries: SnapshotEntry[]): Promise<void> {
    if ((this.epochs.get(partition) ?? 0) !== epoch) throw new FencedError(partition, epoch);
    let states = this.states.get(partition);
    if (!states) this.states.set(partition, (states = new Map()));
    for (const e of entries) states.set(e.symbol, e.state);
  }

  async load(partition: number, symbols: string[]): Promise<(string | null)[]> {
    const states = this.states.get(partition);
    return symbols.map(s => states?.get(s) ?? null);
  }

  async symbols(partition: number): Promise<string[]> {
    return [...(this.states.get(partition)?.keys() ?? [])].sort();
  }

  async epoch(partition: number): Promise<number> {
    return this.epochs.get(partition) ?? 0;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}
