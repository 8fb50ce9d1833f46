import { StockError } from "../../domain/errors";
import { partitionForKey } from "../../lib/partitioner";
import type { CommitIo, PartitionFile } from "./embedded-log-files";
import { encodeLine, type StoredMessage } from "./embedded-log-lines";
import type { LogRecord } from "./types";

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

/** Appends that are written and synced together: one write and one fdatasync per partition file. */
interface Group {
  lines: Buffer[][];
  messages: StoredMessage[][];
  waiters: Waiter[];
}

export interface GroupCommitOptions {
  io: CommitIo;
  /** `false` skips fdatasync (the benchmark's baseline only). */
  fsync: boolean;
  /** The log's directory, named when a write fails. */
  dir: string;
  /** Called after each group is acknowledged: its messages are in `acknowledged`. */
  onAcknowledged(): void;
}

/**
 * The embedded log's appends to its partition files. An append is acknowledged only once its
 * lines are written and fdatasync'ed. Appends that arrive while a sync is in flight form the
 * next group, written and synced together: a sync costs the same for one message as for
 * thousands. A group's messages join `acknowledged` (what consumers read) only once it is
 * synced, like Kafka's high watermark, so nothing derived from them can outlive them.
 */
export class GroupCommit {
  /** Per partition, the offset the next append gets, acknowledged or not. */
  private readonly nextOffset: number[];
  /** Appends waiting for the next commit. */
  private open: Group | null = null;
  private committing = false;
  private commitScheduled = false;
  private idleWaiters: (() => void)[] = [];
  /** Set when a write or sync failed: the file's state is unknown, so no append is acknowledged any more. */
  private failed: Error | null = null;

  constructor(
    private readonly files: readonly PartitionFile[],
    private readonly acknowledged: StoredMessage[][],
    private readonly options: GroupCommitOptions,
  ) {
    this.nextOffset = acknowledged.map(messages => messages.length);
  }

  get failure(): Error | null {
    return this.failed;
  }

  /** Whether a group is being committed or about to be. */
  get busy(): boolean {
    return this.committing || this.commitScheduled;
  }

  /** Resolves once no group is being committed or about to be. */
  idle(): Promise<void> {
    return new Promise<void>(resolve => this.idleWaiters.push(resolve));
  }

  /** Adds `records` to the next group; resolves with their offsets once it is acknowledged. */
  append(records: LogRecord[], timestamp: number): Promise<number[]> {
    const offsets = new Array<number>(records.length);
    const group = (this.open ??= {
      lines: this.acknowledged.map(() => []),
      messages: this.acknowledged.map(() => []),
      waiters: [],
    });
    records.forEach((r, i) => {
      const p = partitionForKey(r.key, this.acknowledged.length);
      offsets[i] = this.nextOffset[p]++;
      group.messages[p].push({ key: r.key, value: Buffer.from(r.value), timestamp, headers: r.headers });
      group.lines[p].push(encodeLine(r.key, r.value, timestamp, r.headers));
    });
    const acknowledged = new Promise<number[]>((resolve, reject) =>
      group.waiters.push({ resolve: () => resolve(offsets), reject }),
    );
    this.scheduleCommit();
    return acknowledged;
  }

  private scheduleCommit(): void {
    if (this.committing || this.commitScheduled) return;
    this.commitScheduled = true;
    // setImmediate, not a microtask: every append of this event-loop turn (all the requests one
    // poll delivered) joins the first group.
    setImmediate(() => {
      this.commitScheduled = false;
      void this.commitGroups();
    });
  }

  private async commitGroups(): Promise<void> {
    this.committing = true;
    while (this.open && !this.failed) {
      const group = this.open;
      this.open = null;
      try {
        await this.persist(group);
      } catch (err) {
        this.fail(err as Error, group);
        break;
      }
      group.messages.forEach((messages, p) => {
        const stored = this.acknowledged[p];
        for (const m of messages) stored.push(m);
      });
      for (const w of group.waiters) w.resolve();
      this.options.onAcknowledged();
    }
    this.committing = false;
    for (const done of this.idleWaiters.splice(0)) done();
  }

  private async persist(group: Group): Promise<void> {
    const results = await Promise.allSettled(
      group.lines.map(async (lines, p) => {
        if (lines.length === 0) return;
        const { fd, path } = this.files[p];
        const data = Buffer.concat(lines);
        for (let done = 0; done < data.length;) {
          const written = await this.options.io.write(fd, data.subarray(done));
          if (written <= 0) throw new Error(`${path}: write made no progress`);
          done += written;
        }
        if (this.options.fsync) await this.options.io.fdatasync(fd);
      }),
    );
    // allSettled, not all: no write may still be running when the files get closed.
    for (const r of results) if (r.status === "rejected") throw r.reason;
  }

  /**
   * After a failed write or fdatasync the file may hold part of the group, and after a failed
   * fdatasync the kernel may have dropped the dirty pages and cleared the error, so a retry could
   * "succeed" over lost data. Stop acknowledging; a restart recovers the file from disk.
   */
  private fail(cause: Error, group: Group): void {
    const failure = new StockError(
      `embedded log: writing to ${this.options.dir} failed (${cause.message}); no more messages are ` +
        `accepted until the process restarts`,
      { retriable: false, cause },
    );
    this.failed = failure;
    const pending = this.open;
    this.open = null;
    for (const w of group.waiters) w.reject(failure);
    for (const w of pending?.waiters ?? []) w.reject(failure);
  }
}
