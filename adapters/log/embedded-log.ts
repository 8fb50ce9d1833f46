import type { Logger } from "../../lib/logger";
import { partitionForKey } from "../../lib/partitioner";
import { EmbeddedConsumer } from "./embedded-consumer";
import { GroupCommit } from "./embedded-group-commit";
import {
  closePartitionFiles,
  type CommitIo,
  fileIo,
  openPartitionFiles,
  type PartitionFile,
} from "./embedded-log-files";
import type { StoredMessage } from "./embedded-log-lines";
import type {
  ConsumerOptions,
  LogConsumer,
  LogMessage,
  LogProducer,
  LogRecord,
  MessageLog,
  PartitionLag,
} from "./types";

export { type CommitIo, LogCorruptionError } from "./embedded-log-files";

export interface EmbeddedLogOptions {
  /** Told once per file when opening it dropped or skipped bytes. Default: the console. */
  logger?: Pick<Logger, "warn">;
  /**
   * @internal The benchmark's baseline only: `false` skips fdatasync, so an acknowledged message
   * survives a killed process but not a machine crash or power loss.
   */
  fsync?: boolean;
  /** @internal */
  io?: CommitIo;
}

/**
 * Kafka's partition and offset semantics in one process: keys map to partitions with Kafka's
 * own partitioner, each partition is an append-only array whose index is the offset, and a
 * consumer group (one member: this process, see `EmbeddedConsumer`) commits offsets per partition.
 *
 * With a `dir`, every partition is also appended to `<dir>/<topic>-<p>.ndjson`, one JSON line per
 * message (the format: `encodeLine`), and reloaded at start. An append is acknowledged only once
 * its lines are written and fdatasync'ed, so every acknowledged message survives a killed process,
 * an OS crash or a power loss. Appends that arrive while a sync is in flight form the next group,
 * written and synced together (`GroupCommit`): a sync costs the same for one message as for
 * thousands. Consumers see a message only once it is acknowledged, like Kafka's high watermark, so
 * nothing derived from it can outlive it.
 *
 * Committed offsets stay in memory, like the embedded snapshots: after a restart the actors
 * replay the log from the start, recompute the same results (they are deterministic) and the
 * database ignores what it already holds.
 *
 * Opening a file recovers it; see `openPartitionFiles` for what it drops, keeps and refuses.
 */
export class EmbeddedLog implements MessageLog {
  readonly kind = "embedded";
  /** Acknowledged messages only: what consumers may read. */
  private readonly partitions: StoredMessage[][];
  private readonly committed = new Map<string, number[]>();
  private readonly waiters = new Set<() => void>();
  /** With a `dir`: the partition files, and the commits that append to them. */
  private readonly files: PartitionFile[] = [];
  private readonly commits: GroupCommit | null = null;
  private closed = false;

  constructor(
    readonly topic: string,
    partitionCount: number,
    dir?: string,
    options: EmbeddedLogOptions = {},
  ) {
    if (!dir) {
      this.partitions = Array.from({ length: partitionCount }, () => []);
      return;
    }
    const opened = openPartitionFiles(dir, topic, partitionCount, options.logger ?? console);
    this.files = opened.files;
    this.partitions = opened.messages;
    this.commits = new GroupCommit(this.files, this.partitions, {
      io: options.io ?? fileIo,
      fsync: options.fsync ?? true,
      dir,
      onAcknowledged: () => this.wakeReaders(),
    });
  }

  async ensureTopic(): Promise<number> {
    return this.partitionCount();
  }

  async partitionCount(): Promise<number> {
    // Readiness probes ask this: a log that can no longer acknowledge is not ready.
    const failure = this.commits?.failure;
    if (failure) throw failure;
    return this.partitions.length;
  }

  /**
   * Appends records and resolves once they are acknowledged (in memory, and with a `dir` written
   * and fdatasync'ed), with each record's offset. Offsets follow the order of the calls.
   */
  append(records: LogRecord[]): Promise<number[]> {
    const failure = this.commits?.failure;
    if (failure) return Promise.reject(failure);
    if (this.closed) return Promise.reject(new Error("embedded log is closed"));
    const timestamp = Date.now();
    if (this.commits) return this.commits.append(records, timestamp);
    const offsets = new Array<number>(records.length);
    records.forEach((r, i) => {
      const p = partitionForKey(r.key, this.partitions.length);
      offsets[i] = this.partitions[p].length;
      this.partitions[p].push({ key: r.key, value: Buffer.from(r.value), timestamp, headers: r.headers });
    });
    this.wakeReaders();
    return Promise.resolve(offsets);
  }

  private wakeReaders(): void {
    for (const wake of this.waiters) wake();
  }

  async createProducer(): Promise<LogProducer> {
    return {
      send: async records => {
        await this.append(records);
      },
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
      out.push({
        partition,
        offset: o,
        key: m.key,
        value: m.value,
        timestamp: m.timestamp,
        headers: m.headers,
      });
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

  /** @internal Resolves on the next acknowledged append, or after `ms`. */
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

  /** Takes no more appends, acknowledges (or fails) those already made, then closes the files. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.commits?.busy) await this.commits.idle();
    this.wakeReaders();
    closePartitionFiles(this.files);
  }
}
