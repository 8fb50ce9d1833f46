import fs from "node:fs";
import path from "node:path";
import { partitionForKey } from "../../lib/partitioner";
import type {
  ConsumerHooks,
  ConsumerOptions,
  LogConsumer,
  LogMessage,
  LogProducer,
  LogRecord,
  MessageLog,
  PartitionLag,
} from "./types";

interface StoredMessage {
  key: string | null;
  value: Buffer;
  timestamp: number;
}

/**
 * Kafka's partition and offset semantics in one process: keys map to partitions with Kafka's
 * own partitioner, each partition is an append-only array whose index is the offset, and a
 * consumer group (one member: this process) commits offsets per partition.
 *
 * With a `dir`, every partition is also appended to `<dir>/<topic>-<p>.ndjson` and reloaded at
 * start, so what was acknowledged survives a restart. Committed offsets stay in memory, like the
 * embedded snapshots: after a restart the actors replay the log from the start, recompute the
 * same results (they are deterministic) and the database ignores what it already holds.
 */
export class EmbeddedLog implements MessageLog {
  readonly kind = "embedded";
  private readonly partitions: StoredMessage[][];
  private readonly committed = new Map<string, number[]>();
  private readonly waiters = new Set<() => void>();
  private readonly files: (number | null)[];
  private closed = false;

  constructor(
    readonly topic: string,
    partitionCount: number,
    private readonly dir?: string,
  ) {
    this.partitions = Array.from({ length: partitionCount }, () => []);
    this.files = Array.from({ length: partitionCount }, () => null);
    if (dir) this.load(dir);
  }

  private fileOf(partition: number): string {
    return path.join(this.dir!, `${this.topic}-${partition}.ndjson`);
  }

  private load(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    for (let p = 0; p < this.partitions.length; p++) {
      const file = this.fileOf(p);
      if (fs.existsSync(file)) {
        const text = fs.readFileSync(file, "utf8");
        for (const line of text.split("\n")) {
          // A torn last line (the process died mid-append) was never acknowledged: drop it.
          if (!line) continue;
          try {
            const m = JSON.parse(line) as { k: string | null; v: string; t: number };
            this.partitions[p].push({ key: m.k, value: Buffer.from(m.v), timestamp: m.t });
          } catch {
            break;
          }
        }
      }
      this.files[p] = fs.openSync(file, "a");
    }
  }

  async ensureTopic(): Promise<number> {
    return this.partitions.length;
  }

  async partitionCount(): Promise<number> {
    return this.partitions.length;
  }

  /** Appends records; returns once they are in memory (and written to the file when persistent). */
  append(records: LogRecord[]): void {
    if (this.closed) throw new Error("embedded log is closed");
    const timestamp = Date.now();
    const lines: string[][] = this.dir ? Array.from({ length: this.partitions.length }, () => []) : [];
    for (const r of records) {
      const p = partitionForKey(r.key, this.partitions.length);
      this.partitions[p].push({ key: r.key, value: Buffer.from(r.value), timestamp });
      if (this.dir) lines[p].push(JSON.stringify({ k: r.key, v: r.value, t: timestamp }));
    }
    if (this.dir) {
      lines.forEach((l, p) => {
        if (l.length > 0) fs.writeSync(this.files[p]!, l.join("\n") + "\n");
      });
    }
    for (const wake of this.waiters) wake();
  }

  async createProducer(): Promise<LogProducer> {
    return {
      send: async records => this.append(records),
      close: async () => undefined,
    };
  }

  createConsumer(options: ConsumerOptions): LogConsumer {
    return new EmbeddedConsumer(this, options);
  }

  /** @internal */
  read(partition: number, from: number, max: number): LogMessage[] {
    const stored = this.partitions[partition];
    const out: LogMessage[] = [];
    for (let o = from; o < stored.length && out.length < max; o++) {
      const m = stored[o];
      out.push({ partition, offset: o, key: m.key, value: m.value, timestamp: m.timestamp });
    }
    return out;
  }

  /** @internal */
  highWatermark(partition: number): number {
    return this.partitions[partition].length;
  }

  /** @internal */
  committedOffsets(groupId: string): number[] {
    let offsets = this.committed.get(groupId);
    if (!offsets) {
      offsets = Array.from({ length: this.partitions.length }, () => -1);
      this.committed.set(groupId, offsets);
    }
    return offsets;
  }

  /** @internal Resolves on the next append, or after `ms`. */
  waitForAppend(ms: number): Promise<void> {
    return new Promise(resolve => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waiters.add(wake);
    });
  }

  async lag(groupId: string): Promise<PartitionLag[]> {
    const committed = this.committedOffsets(groupId);
    return this.partitions.map((stored, partition) => ({
      partition,
      committed: committed[partition],
      highWatermark: stored.length,
      lag: stored.length - Math.max(committed[partition], 0),
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiters) wake();
    for (const fd of this.files) if (fd !== null) fs.closeSync(fd);
    this.files.fill(null);
  }
}

class EmbeddedConsumer implements LogConsumer {
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly maxBatch: number;

  constructor(
    private readonly log: EmbeddedLog,
    private readonly options: ConsumerOptions,
  ) {
    this.maxBatch = options.maxBatchMessages ?? 1000;
  }

  async run(hooks: ConsumerHooks): Promise<void> {
    if (this.running) return;
    this.running = true;
    const count = await this.log.partitionCount();
    const partitions = Array.from({ length: count }, (_, p) => p);
    const generation = 1;
    hooks.onAssignment(partitions, generation);
    this.loops = partitions.map(p => this.loop(p, hooks, generation));
  }

  private async loop(partition: number, hooks: ConsumerHooks, generation: number): Promise<void> {
    const committed = this.log.committedOffsets(this.options.groupId);
    let position = Math.max(committed[partition], 0);
    while (this.running) {
      const messages = this.log.read(partition, position, this.maxBatch);
      if (messages.length === 0) {
        await this.log.waitForAppend(500);
        continue;
      }
      let done = 0;
      try {
        done = await hooks.onBatch(
          {
            partition,
            messages,
            highWatermark: this.log.highWatermark(partition),
            heartbeat: async () => undefined,
            isActive: () => true,
          },
          generation,
        );
      } catch (err) {
        // Like Kafka's consumer: the batch is fetched again after a pause, never skipped.
        hooks.onError?.(err, false);
        await new Promise(resolve => setTimeout(resolve, 1000));
        continue;
      }
      position += done;
      if (done < messages.length) await this.log.waitForAppend(100);
    }
  }

  async commit(partition: number, nextOffset: number): Promise<void> {
    const committed = this.log.committedOffsets(this.options.groupId);
    committed[partition] = Math.max(committed[partition], nextOffset);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}
