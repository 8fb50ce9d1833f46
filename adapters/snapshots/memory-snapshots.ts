import type { SnapshotEntry, SnapshotStore } from "./types";

/** The embedded snapshot cache, kept in this process. */
export class MemorySnapshotStore implements SnapshotStore {
  readonly kind = "memory";
  private readonly states = new Map<number, Map<string, string>>();

  async save(partition: number, entries: SnapshotEntry[]): Promise<void> {
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

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}
