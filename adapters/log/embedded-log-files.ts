import fs from "node:fs";
import path from "node:path";
import { ConfigError, StockError } from "../../domain/errors";
import type { Logger } from "../../lib/logger";
import { parseLine, splitGluedLine, type StoredMessage } from "./embedded-log-lines";

/** The two file operations of a commit; tests replace them to count or fail syncs. */
export interface CommitIo {
  /** Appends `data` to the file; returns how many bytes were written (possibly fewer). */
  write(fd: number, data: Buffer): Promise<number>;
  fdatasync(fd: number): Promise<void>;
}

export const fileIo: CommitIo = {
  write: (fd, data) =>
    new Promise((resolve, reject) =>
      fs.write(fd, data, 0, data.length, null, (err, written) => (err ? reject(err) : resolve(written))),
    ),
  fdatasync: fd => new Promise((resolve, reject) => fs.fdatasync(fd, err => (err ? reject(err) : resolve()))),
};

/** One partition's file, `<dir>/<topic>-<partition>.ndjson`, open for appending. */
export interface PartitionFile {
  readonly path: string;
  readonly fd: number;
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

/**
 * Opens (creating them if need be) the `partitionCount` files of `topic` in `dir`, each recovered
 * (see `recoverFile`), and returns them with the messages they hold, one array per partition.
 * Refuses a directory written under another partition count before opening anything.
 */
export function openPartitionFiles(
  dir: string,
  topic: string,
  partitionCount: number,
  logger: Pick<Logger, "warn">,
): { files: PartitionFile[]; messages: StoredMessage[][] } {
  const firstCreated = fs.mkdirSync(dir, { recursive: true });
  checkPartitionCount(dir, topic, partitionCount);
  const files: PartitionFile[] = [];
  const messages: StoredMessage[][] = [];
  let createdFile = false;
  try {
    for (let p = 0; p < partitionCount; p++) {
      const file = path.join(dir, `${topic}-${p}.ndjson`);
      createdFile ||= !fs.existsSync(file);
      const fd = fs.openSync(file, "a+");
      files.push({ path: file, fd });
      messages.push(recoverFile(fd, file, logger));
    }
    // A new file's directory entry must be durable too, or a power loss can take the file, and
    // every message acknowledged into it, away.
    if (createdFile) fsyncDirectory(dir);
    if (firstCreated !== undefined) fsyncCreatedDirectories(dir, firstCreated);
  } catch (err) {
    closePartitionFiles(files);
    throw err;
  }
  return { files, messages };
}

/** Closes the files and empties the array, so closing twice closes nothing twice. */
export function closePartitionFiles(files: PartitionFile[]): void {
  for (const { fd } of files.splice(0)) fs.closeSync(fd);
}

function checkPartitionCount(dir: string, topic: string, partitionCount: number): void {
  // Symbols are placed by the partition count: a log written under another count cannot be
  // continued, or a symbol's new messages would go to another partition than its old ones.
  // Topic names are letters, digits, ".", "_" and "-": only the dot needs escaping.
  const pattern = new RegExp(`^${topic.replace(/\./g, "\\.")}-(\\d+)\\.ndjson$`);
  const found = fs
    .readdirSync(dir)
    .map(name => pattern.exec(name))
    .filter(m => m !== null)
    .map(m => Number(m[1]));
  if (found.length > 0 && Math.max(...found) + 1 !== partitionCount) {
    const written = Math.max(...found) + 1;
    throw new ConfigError(
      `the embedded log in ${dir} holds ${written} partitions of topic "${topic}" but KAFKA_PARTITIONS is ` +
        `${partitionCount}: set KAFKA_PARTITIONS=${written}, or move ${dir} (and the embedded database) away to start afresh`,
    );
  }
}

/** mkdir may have made several levels, from `firstCreated` down to `dir`; each new directory's entry lives in its parent. */
function fsyncCreatedDirectories(dir: string, firstCreated: string): void {
  const top = path.resolve(firstCreated);
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    fsyncDirectory(path.dirname(d));
    if (d === top || d === path.dirname(d)) break;
  }
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
