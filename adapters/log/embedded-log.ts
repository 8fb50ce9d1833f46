import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { ConfigError, StockError } from "../../domain/errors";
import type { Logger } from "../../lib/logger";
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
  headers?: Record<string, string>;
}

/** The two file operations of a commit; tests replace them to count or fail syncs. */
export interface CommitIo {
  /** Appends `data` to the file; returns how many bytes were written (possibly fewer). */
  write(fd: number, data: Buffer): Promise<number>;
  fdatasync(fd: number): Promise<void>;
}

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
 * A partition file is damaged where no crash can have damaged it: an invalid line with valid
 * records after it. Reading on would silently skip those records, so the log does not open.
 */
export class LogCorruptionError extends StockError {
  constructor(
    readonly file: string,
    readonly byteOffset: number,
    readonly line: number,
    detail: string,
  ) {
    super(
      `embedded log: ${file}: line ${line} (byte ${byteOffset}) ${detail}, and valid records follow it. ` +
        `A crash can only tear the end of a file, so this is damage from elsewhere and the log will not open. ` +
        `Restore the file from a backup, or keep only the records before the damage with ` +
        `\`truncate -s ${byteOffset} '${file}'\` (the records after it are lost).`,
      { retriable: false },
    );
  }
}

const fileIo: CommitIo = {
  write: (fd, data) =>
    new Promise((resolve, reject) =>
      fs.write(fd, data, 0, data.length, null, (err, written) => (err ? reject(err) : resolve(written))),
    ),
  fdatasync: fd => new Promise((resolve, reject) => fs.fdatasync(fd, err => (err ? reject(err) : resolve()))),
};

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

/**
 * Kafka's partition and offset semantics in one process: keys map to partitions with Kafka's
 * own partitioner, each partition is an append-only array whose index is the offset, and a
 * consumer group (one member: this process) commits offsets per partition.
 *
 * With a `dir`, every partition is also appended to `<dir>/<topic>-<p>.ndjson`, one JSON line per
 * message, and reloaded at start. An append is acknowledged only once its lines are written and
 * fdatasync'ed, so every acknowledged message survives a killed process, an OS crash or a power
 * loss. Appends that arrive while a sync is in flight form the next group, written and synced
 * together (group commit): a sync costs the same for one message as for thousands. Consumers see
 * a message only once it is acknowledged, like Kafka's high watermark, so nothing derived from
 * it can outlive it.
 *
 * Committed offsets stay in memory, like the embedded snapshots: after a restart the actors
 * replay the log from the start, recompute the same results (they are deterministic) and the
 * database ignores what it already holds.
 *
 * Opening a file recovers it; see `recoverFile` for what it drops, keeps and refuses.
 */
export class EmbeddedLog implements MessageLog {
  readonly kind = "embedded";
  /** Acknowledged messages only: what consumers may read. */
  private readonly partitions: StoredMessage[][];
  /** Per partition, the offset the next append gets, acknowledged or not (with a `dir`). */
  private readonly nextOffset: number[];
  private readonly committed = new Map<string, number[]>();
  private readonly waiters = new Set<() => void>();
  private readonly files: (number | null)[];
  private readonly logger: Pick<Logger, "warn">;
  private readonly fsync: boolean;
  private readonly io: CommitIo;
  /** Appends waiting for the next commit. */
  private open: Group | null = null;
  private committing = false;
  private commitScheduled = false;
  private idleWaiters: (() => void)[] = [];
  /** Set when a write or sync failed: the file's state is unknown, so no append is acknowledged any more. */
  private failure: Error | null = null;
  private closed = false;

  constructor(
    readonly topic: string,
    partitionCount: number,
    private readonly dir?: string,
    options: EmbeddedLogOptions = {},
  ) {
    this.partitions = Array.from({ length: partitionCount }, () => []);
    this.nextOffset = Array.from({ length: partitionCount }, () => 0);
    this.files = Array.from({ length: partitionCount }, () => null);
    this.logger = options.logger ?? console;
    this.fsync = options.fsync ?? true;
    this.io = options.io ?? fileIo;
    if (dir) this.load(dir);
  }

  private fileOf(partition: number): string {
    return path.join(this.dir!, `${this.topic}-${partition}.ndjson`);
  }

  private load(dir: string): void {
    const firstCreated = fs.mkdirSync(dir, { recursive: true });
    // Symbols are placed by the partition count: a log written under another count cannot be
    // continued, or a symbol's new messages would go to another partition than its old ones.
    // Topic names are letters, digits, ".", "_" and "-": only the dot needs escaping.
    const pattern = new RegExp(`^${this.topic.replace(/\./g, "\\.")}-(\\d+)\\.ndjson$`);
    const found = fs
      .readdirSync(dir)
      .map(name => pattern.exec(name))
      .filter(m => m !== null)
      .map(m => Number(m[1]));
    if (found.length > 0 && Math.max(...found) + 1 !== this.partitions.length) {
      const written = Math.max(...found) + 1;
      throw new ConfigError(
        `the embedded log in ${dir} holds ${written} partitions of topic "${this.topic}" but KAFKA_PARTITIONS is ` +
          `${this.partitions.length}: set KAFKA_PARTITIONS=${written}, or move ${dir} (and the embedded database) away to start afresh`,
      );
    }
    let createdFile = false;
    try {
      for (let p = 0; p < this.partitions.length; p++) {
        const file = this.fileOf(p);
        createdFile ||= !fs.existsSync(file);
        const fd = fs.openSync(file, "a+");
        this.files[p] = fd;
        this.partitions[p] = recoverFile(fd, file, this.logger);
        this.nextOffset[p] = this.partitions[p].length;
      }
      // A new file's directory entry must be durable too, or a power loss can take the file, and
      // every message acknowledged into it, away.
      if (createdFile) fsyncDirectory(dir);
      if (firstCreated !== undefined) {
        // mkdir may have made several levels; each new directory's entry lives in its parent.
        const top = path.resolve(firstCreated);
        for (let d = path.resolve(dir); ; d = path.dirname(d)) {
          fsyncDirectory(path.dirname(d));
          if (d === top || d === path.dirname(d)) break;
        }
      }
    } catch (err) {
      this.closeFiles();
      throw err;
    }
  }

  private closeFiles(): void {
    for (const fd of this.files) if (fd !== null) fs.closeSync(fd);
    this.files.fill(null);
  }

  async ensureTopic(): Promise<number> {
    return this.partitionCount();
  }

  async partitionCount(): Promise<number> {
    // Readiness probes ask this: a log that can no longer acknowledge is not ready.
    if (this.failure) throw this.failure;
    return this.partitions.length;
  }

  /**
   * Appends records and resolves once they are acknowledged (in memory, and with a `dir` written
   * and fdatasync'ed), with each record's offset. Offsets follow the order of the calls.
   */
  append(records: LogRecord[]): Promise<number[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error("embedded log is closed"));
    const timestamp = Date.now();
    const offsets = new Array<number>(records.length);
    if (!this.dir) {
      records.forEach((r, i) => {
        const p = partitionForKey(r.key, this.partitions.length);
        offsets[i] = this.partitions[p].length;
        this.partitions[p].push({ key: r.key, value: Buffer.from(r.value), timestamp, headers: r.headers });
      });
      for (const wake of this.waiters) wake();
      return Promise.resolve(offsets);
    }
    const group = (this.open ??= {
      lines: this.partitions.map(() => []),
      messages: this.partitions.map(() => []),
      waiters: [],
    });
    records.forEach((r, i) => {
      const p = partitionForKey(r.key, this.partitions.length);
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
    while (this.open && !this.failure) {
      const group = this.open;
      this.open = null;
      try {
        await this.persist(group);
      } catch (err) {
        this.fail(err as Error, group);
        break;
      }
      group.messages.forEach((messages, p) => {
        const stored = this.partitions[p];
        for (const m of messages) stored.push(m);
      });
      for (const w of group.waiters) w.resolve();
      for (const wake of this.waiters) wake();
    }
    this.committing = false;
    for (const done of this.idleWaiters.splice(0)) done();
  }

  private async persist(group: Group): Promise<void> {
    const results = await Promise.allSettled(
      group.lines.map(async (lines, p) => {
        if (lines.length === 0) return;
        const fd = this.files[p]!;
        const data = Buffer.concat(lines);
        for (let done = 0; done < data.length;) {
          const written = await this.io.write(fd, data.subarray(done));
          if (written <= 0) throw new Error(`${this.fileOf(p)}: write made no progress`);
          done += written;
        }
        if (this.fsync) await this.io.fdatasync(fd);
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
    this.failure = new StockError(
      `embedded log: writing to ${this.dir} failed (${cause.message}); no more messages are ` +
        `accepted until the process restarts`,
      { retriable: false, cause },
    );
    const pending = this.open;
    this.open = null;
    for (const w of group.waiters) w.reject(this.failure);
    for (const w of pending?.waiters ?? []) w.reject(this.failure);
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
    if (this.committing || this.commitScheduled) {
      await new Promise<void>(resolve => this.idleWaiters.push(resolve));
    }
    for (const wake of this.waiters) wake();
    this.closeFiles();
  }
}

/**
 * The line format, `{"k":key,"v":value,"t":ms,"h":{headers},"c":crc}` (`h` only when the record has
 * headers): `c` is the CRC-32 of the line's UTF-8
 * bytes before `,"c":`. Lines written before checksums existed lack `c` and are read as they are;
 * older versions read the new lines too, since JSON.parse ignores the extra field.
 */
function encodeLine(key: string, value: string, timestamp: number, headers?: Record<string, string>): Buffer {
  const json = JSON.stringify(
    headers ? { k: key, v: value, t: timestamp, h: headers } : { k: key, v: value, t: timestamp },
  );
  const head = json.slice(0, -1);
  const headBytes = Buffer.byteLength(head);
  // `,"c":` + up to 10 digits + `}\n`
  const line = Buffer.allocUnsafe(headBytes + 17);
  line.write(head, 0);
  const end = headBytes + line.write(`,"c":${crc32(line.subarray(0, headBytes))}}\n`, headBytes, "latin1");
  return line.subarray(0, end);
}

function isHeaders(h: unknown): boolean {
  return typeof h === "object" && h !== null && Object.values(h).every(v => typeof v === "string");
}

/** What a line holds: a message, or why it is not one. */
type Parsed = { message: StoredMessage; checksummed: boolean } | { invalid: string };

function parseLine(line: Buffer): Parsed {
  let m: { k?: unknown; v?: unknown; t?: unknown; h?: unknown; c?: unknown };
  try {
    m = JSON.parse(line.toString("utf8"));
  } catch {
    return { invalid: "is not JSON" };
  }
  if (
    typeof m !== "object" ||
    m === null ||
    !(typeof m.k === "string" || m.k === null) ||
    typeof m.v !== "string" ||
    typeof m.t !== "number" ||
    (m.h !== undefined && !isHeaders(m.h))
  ) {
    return { invalid: "is not a log record" };
  }
  const message: StoredMessage = { key: m.k, value: Buffer.from(m.v), timestamp: m.t };
  if (m.h !== undefined) message.headers = m.h as Record<string, string>;
  if (m.c === undefined) return { message, checksummed: false };
  const suffix = `,"c":${String(m.c)}}`;
  const head = line.length - suffix.length;
  if (
    !Number.isInteger(m.c) ||
    head <= 0 ||
    line.toString("latin1", head) !== suffix ||
    crc32(line.subarray(0, head)) !== m.c
  ) {
    return { invalid: "fails its checksum" };
  }
  return { message, checksummed: true };
}

/**
 * Versions before checksums appended after a torn last line without truncating it, gluing the
 * next record to the fragment: `<fragment>{"k":...}`. A serialized record holds `{"k":` only at
 * its start (quotes inside strings are escaped), so the glued record starts at its last
 * occurrence. Returns the record and the fragment's length, or null if the line is not that.
 */
function splitGluedLine(line: Buffer): { message: StoredMessage; fragmentBytes: number } | null {
  const start = line.lastIndexOf('{"k":');
  if (start <= 0 || line[0] !== 0x7b) return null;
  const parsed = parseLine(line.subarray(start));
  if ("invalid" in parsed || parsed.checksummed) return null;
  return { message: parsed.message, fragmentBytes: start };
}

/**
 * Reads a partition file and repairs what a crash can leave:
 * - the torn tail, i.e. an unterminated last line, or complete lines that are not valid records
 *   (not JSON, wrong checksum: an OS crash can persist a write only in part) with no valid
 *   record after them. No acknowledged message is in it: an append is acknowledged after its
 *   whole write is synced. It is truncated (and synced) and reported once with its size, so the
 *   next append starts on a line of its own.
 * - a record glued to a fragment by an older version (see `splitGluedLine`): the record is kept,
 *   the fragment skipped and reported; the file stays as it is, so this repeats at each open.
 * An invalid line followed by valid records is damage a crash cannot cause: LogCorruptionError
 * with the file, line and byte offset, instead of dropping the records after it.
 */
function recoverFile(fd: number, file: string, logger: Pick<Logger, "warn">): StoredMessage[] {
  const size = fs.fstatSync(fd).size;
  const messages: StoredMessage[] = [];
  let validEnd = 0;
  let firstInvalid: { offset: number; line: number; why: string } | null = null;
  let lineNumber = 0;
  for (const { bytes, offset, terminated } of readLines(fd, size)) {
    lineNumber++;
    if (!terminated) {
      firstInvalid ??= { offset, line: lineNumber, why: "is torn" };
      break;
    }
    if (bytes.length === 0) {
      if (!firstInvalid) validEnd = offset + 1;
      continue;
    }
    const parsed = parseLine(bytes);
    let message: StoredMessage;
    if ("invalid" in parsed) {
      const glued = splitGluedLine(bytes);
      if (!glued) {
        firstInvalid ??= { offset, line: lineNumber, why: parsed.invalid };
        continue;
      }
      message = glued.message;
      logger.warn(
        `embedded log: ${file}: line ${lineNumber} (byte ${offset}) starts with ${glued.fragmentBytes} bytes ` +
          `of a write torn by a crash, which an older version appended to; skipped them, kept the record after them`,
      );
    } else {
      message = parsed.message;
    }
    if (firstInvalid) {
      throw new LogCorruptionError(file, firstInvalid.offset, firstInvalid.line, firstInvalid.why);
    }
    messages.push(message);
    validEnd = offset + bytes.length + 1;
  }
  if (validEnd < size) {
    fs.ftruncateSync(fd, validEnd);
    fs.fsyncSync(fd);
    logger.warn(
      `embedded log: ${file}: dropped the last ${size - validEnd} bytes (from byte ${validEnd}), ` +
        `what a crash left of an append that was never acknowledged`,
    );
  }
  return messages;
}

const READ_CHUNK_BYTES = 1 << 20;

/**
 * The file's lines with their byte offsets, read in chunks: a long log is never one string (V8
 * caps strings at about 512 MB). A yielded line is only valid until the next one is asked for.
 */
function* readLines(
  fd: number,
  size: number,
): Generator<{ bytes: Buffer; offset: number; terminated: boolean }> {
  const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  let carry = Buffer.alloc(0);
  let carryOffset = 0;
  let position = 0;
  while (position < size) {
    const read = fs.readSync(fd, chunk, 0, Math.min(chunk.length, size - position), position);
    if (read === 0) break;
    position += read;
    const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, read)]) : chunk.subarray(0, read);
    let start = 0;
    for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, start)) {
      yield { bytes: data.subarray(start, newline), offset: carryOffset + start, terminated: true };
      start = newline + 1;
    }
    carryOffset += start;
    carry = Buffer.from(data.subarray(start));
  }
  if (carry.length > 0) yield { bytes: carry, offset: carryOffset, terminated: false };
}

function fsyncDirectory(dir: string): void {
  // Windows cannot open a directory as a file; NTFS journals directory entries anyway.
  if (process.platform === "win32") return;
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    // Some file systems (e.g. some network mounts) do not sync directories at all.
    if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
  } finally {
    fs.closeSync(fd);
  }
}

/** @internal CRC-32 (zlib's polynomial) for Node versions before 20.15, which lack zlib.crc32. */
export function crc32Portable(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

const crc32: (data: Uint8Array) => number =
  typeof zlib.crc32 === "function" ? data => zlib.crc32(data) : crc32Portable;

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
