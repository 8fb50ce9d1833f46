import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import fc from "fast-check";
import {
  type CommitIo,
  crc32Portable,
  EmbeddedLog,
  type EmbeddedLogOptions,
  LogCorruptionError,
} from "../../../../adapters/log/embedded-log";
import type { LogRecord } from "../../../../adapters/log/types";
import { partitionForKey } from "../../../../lib/partitioner";

const TOPIC = "ticks";
const tick = () => new Promise<void>(resolve => setImmediate(resolve));

/** Real file writes whose syncs the test counts and can hold until it releases them. */
class ControlledIo implements CommitIo {
  writes = 0;
  syncs = 0;
  holdSyncs = false;
  maxBytesPerWrite = Infinity;
  failSyncWith: Error | null = null;
  private held: (() => void)[] = [];

  async write(fd: number, data: Buffer): Promise<number> {
    this.writes++;
    return fs.writeSync(fd, data, 0, Math.min(data.length, this.maxBytesPerWrite));
  }

  async fdatasync(fd: number): Promise<void> {
    this.syncs++;
    if (this.failSyncWith) throw this.failSyncWith;
    fs.fdatasyncSync(fd);
    if (this.holdSyncs) await new Promise<void>(resolve => this.held.push(resolve));
  }

  async syncHeld(): Promise<void> {
    while (this.held.length === 0) await tick();
  }

  release(): void {
    for (const resume of this.held.splice(0)) resume();
  }
}

async function state(p: Promise<unknown>): Promise<"pending" | "resolved" | "rejected"> {
  const settled = p.then(
    () => "resolved" as const,
    () => "rejected" as const,
  );
  return Promise.race([settled, tick().then(() => "pending" as const)]);
}

const record = (value: string, key = "AAPL"): LogRecord => ({ key, value });

const legacyLine = (key: string, value: string, t = 1700000000000) =>
  JSON.stringify({ k: key, v: value, t }) + "\n";

describe("EmbeddedLog on disk", () => {
  let dir = "";
  let warnings: string[] = [];
  const logger = { warn: (message: string) => warnings.push(message) };
  const file = (p = 0) => path.join(dir, `${TOPIC}-${p}.ndjson`);
  const open = (partitions = 1, options: EmbeddedLogOptions = {}) =>
    new EmbeddedLog(TOPIC, partitions, dir, { logger, ...options });
  const values = (log: EmbeddedLog, p = 0) =>
    log.read(p, 0, Number.MAX_SAFE_INTEGER).map(m => m.value!.toString());

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "embedded-log-"));
    warnings = [];
  });

  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("gives back every acknowledged message after a reopen, with its offset, key and timestamp", async () => {
    const log = open(3);
    const written = [record("a", "AAPL"), record("m", "MSFT"), record("b", "AAPL")];
    const offsets = await log.append(written);
    const before = [0, 1, 2].map(p => log.read(p, 0, 100));
    await log.close();

    const reopened = open(3);
    expect([0, 1, 2].map(p => reopened.read(p, 0, 100))).toEqual(before);
    written.forEach((r, i) =>
      expect(reopened.read(partitionForKey(r.key, 3), offsets[i], 1)[0]).toMatchObject({
        key: r.key,
        value: Buffer.from(r.value),
      }),
    );
    expect(warnings).toEqual([]);
    await reopened.close();
  });

  it("refuses to reopen under another partition count, saying which count the files hold", async () => {
    const log = open(3);
    await log.append([record("a", "AAPL")]);
    await log.close();
    for (const other of [2, 4])
      expect(() => open(other)).toThrow(
        new RegExp(
          `holds 3 partitions of topic "${TOPIC}" but KAFKA_PARTITIONS is ${other}: set KAFKA_PARTITIONS=3`,
        ),
      );
    // Refused before touching anything: the files are as they were, and reopen under 3.
    expect(fs.existsSync(file(3))).toBe(false);
    const reopened = open(3);
    expect(values(reopened, partitionForKey("AAPL", 3))).toEqual(["a"]);
    await reopened.close();
  });

  it("truncates a torn last line on open and says how many bytes it dropped, once", async () => {
    const log = open();
    await log.append([record("one"), record("two")]);
    await log.close();
    const intact = fs.statSync(file()).size;
    fs.appendFileSync(file(), '{"k":"AAPL","v":"thr');

    const reopened = open();
    expect(values(reopened)).toEqual(["one", "two"]);
    expect(fs.statSync(file()).size).toBe(intact);
    expect(warnings).toEqual([expect.stringContaining(`dropped the last 20 bytes (from byte ${intact})`)]);
    await reopened.close();

    await open().close();
    expect(warnings).toHaveLength(1);
  });

  it("keeps a message appended after a torn tail through a second reopen", async () => {
    const log = open();
    await log.append([record("one")]);
    await log.close();
    fs.appendFileSync(file(), '{"k":"AAPL","v":"to');

    const afterCrash = open();
    expect(await afterCrash.append([record("two")])).toEqual([1]);
    await afterCrash.append([record("three")]);
    await afterCrash.close();

    const again = open();
    expect(values(again)).toEqual(["one", "two", "three"]);
    await again.close();
    const third = open();
    expect(values(third)).toEqual(["one", "two", "three"]);
    await third.close();
  });

  it("recovers any cut of the file to the complete lines before it, and appends after them", async () => {
    const unit = fc.constantFrom("a", "é", "€", "😀", '"', "\\", "\n", "{", "}");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit, maxLength: 12 }), { minLength: 1, maxLength: 12 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (written, where) => {
          fs.rmSync(dir, { recursive: true, force: true });
          const log = open();
          await log.append(written.map(v => record(v)));
          await log.close();
          const bytes = fs.readFileSync(file());
          const cut = Math.floor(where * bytes.length);
          fs.truncateSync(file(), cut);
          const complete = bytes.subarray(0, cut).filter(b => b === 10).length;

          const reopened = open();
          expect(values(reopened)).toEqual(written.slice(0, complete));
          await reopened.append([record("after")]);
          await reopened.close();
          const last = open();
          expect(values(last)).toEqual([...written.slice(0, complete), "after"]);
          await last.close();
        },
      ),
      { numRuns: 100 },
    );
  });

  it("drops complete lines that fail their checksum when no valid record follows them", async () => {
    const log = open();
    await log.append([record("one"), record("two")]);
    await log.close();
    const text = fs.readFileSync(file(), "utf8");
    const firstEnd = text.indexOf("\n") + 1;
    fs.writeFileSync(file(), text.replace('"v":"two"', '"v":"twO"'));

    const reopened = open();
    expect(values(reopened)).toEqual(["one"]);
    expect(fs.statSync(file()).size).toBe(firstEnd);
    expect(warnings).toEqual([expect.stringContaining(`from byte ${firstEnd}`)]);
    await reopened.close();
  });

  it("refuses to open a file with a damaged line before valid ones, naming the file, line and byte", async () => {
    const log = open();
    await log.append([record("one"), record("two"), record("three")]);
    await log.close();
    const text = fs.readFileSync(file(), "utf8");
    const damaged = text.replace('"v":"two"', '"v":"twO"');
    fs.writeFileSync(file(), damaged);
    const secondLine = Buffer.byteLength(text.slice(0, text.indexOf("\n") + 1));

    let error: unknown;
    try {
      open();
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(LogCorruptionError);
    expect(error).toMatchObject({ file: file(), byteOffset: secondLine, line: 2, retriable: false });
    expect((error as Error).message).toContain(`truncate -s ${secondLine}`);
    expect(fs.readFileSync(file(), "utf8")).toBe(damaged);

    fs.writeFileSync(file(), text.replace("\n", "\nnot json\n"));
    expect(() => open()).toThrow(/line 2 \(byte \d+\) is not JSON/);
  });

  it("reads files written before checksums, and appends checksummed lines after them", async () => {
    fs.writeFileSync(file(), legacyLine("AAPL", "old-1") + legacyLine("AAPL", "old-2"));
    const log = open();
    expect(values(log)).toEqual(["old-1", "old-2"]);
    expect(log.read(0, 0, 1)[0]).toMatchObject({ key: "AAPL", timestamp: 1700000000000, offset: 0 });
    expect(await log.append([record("new")])).toEqual([2]);
    await log.close();

    const lines = fs.readFileSync(file(), "utf8").trimEnd().split("\n");
    expect(lines.slice(0, 2)).toEqual([
      legacyLine("AAPL", "old-1").trim(),
      legacyLine("AAPL", "old-2").trim(),
    ]);
    // What an older version's reader takes from the new line.
    expect(JSON.parse(lines[2])).toMatchObject({ k: "AAPL", v: "new", t: expect.any(Number) });
    const reopened = open();
    expect(values(reopened)).toEqual(["old-1", "old-2", "new"]);
    await reopened.close();
  });

  it("keeps the record an older version glued to a torn line, and every record after it", async () => {
    const fragment = '{"k":"AAPL","v":"{\\"seq\\":2,\\"pri';
    const content =
      legacyLine("AAPL", '{"seq":1}') +
      fragment +
      legacyLine("AAPL", '{"seq":3}') +
      legacyLine("AAPL", '{"seq":4}');
    fs.writeFileSync(file(), content);

    const log = open();
    expect(values(log)).toEqual(['{"seq":1}', '{"seq":3}', '{"seq":4}']);
    expect(warnings).toEqual([
      expect.stringContaining(
        `line 2 (byte ${legacyLine("AAPL", '{"seq":1}').length}) starts with ${Buffer.byteLength(fragment)} bytes`,
      ),
    ]);
    expect(fs.readFileSync(file(), "utf8")).toBe(content);
    await log.close();
  });

  it("acknowledges an append only after its fdatasync, and shows it to readers only then", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const log = open(1, { io });
    const appended = log.append([record("one")]);
    await io.syncHeld();
    expect(io.writes).toBe(1);
    expect(await state(appended)).toBe("pending");
    expect(log.highWatermark(0)).toBe(0);

    io.release();
    expect(await appended).toEqual([0]);
    expect(log.highWatermark(0)).toBe(1);
    await log.close();
  });

  it("writes and syncs the appends that arrive during a sync together, in order, with contiguous offsets", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const log = open(1, { io });
    const first = log.append([record("v0")]);
    await io.syncHeld();

    const rest: Promise<number[]>[] = [];
    for (let i = 1; i <= 100; i++) {
      rest.push(log.append([record(`v${i}`)]));
      if (i % 10 === 0) await tick();
    }
    await tick();
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes: 1, syncs: 1 });

    io.release();
    expect(await first).toEqual([0]);
    await io.syncHeld();
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes: 2, syncs: 2 });
    expect(await state(rest[0])).toBe("pending");

    io.release();
    expect(await Promise.all(rest)).toEqual(Array.from({ length: 100 }, (_, i) => [i + 1]));
    expect(io.syncs).toBe(2);
    await log.close();

    const reopened = open();
    expect(values(reopened)).toEqual(Array.from({ length: 101 }, (_, i) => `v${i}`));
    await reopened.close();
  });

  it("puts the appends of one event-loop turn into one write and one sync per partition file", async () => {
    const io = new ControlledIo();
    const log = open(4, { io });
    const keys = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META"];
    const used = new Set(keys.map(k => partitionForKey(k, 4))).size;
    const offsets = await Promise.all(
      Array.from({ length: 70 }, (_, i) => log.append([record(`v${i}`, keys[i % keys.length])])),
    );
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes: used, syncs: used });
    await log.close();

    // Per partition: the order of the calls, offsets from 0 with no gap, as each call was told.
    const reopened = open(4);
    for (let p = 0; p < 4; p++) {
      const messages = reopened.read(p, 0, 1000);
      const calls = messages.map(m => Number(m.value!.toString().slice(1)));
      expect(calls).toEqual([...calls].sort((a, b) => a - b));
      expect(messages.map(m => m.offset)).toEqual(messages.map((_, i) => i));
      for (const m of messages) expect(offsets[Number(m.value!.toString().slice(1))]).toEqual([m.offset]);
    }
    await reopened.close();
  });

  it("finishes a write the kernel took only in part", async () => {
    const io = new ControlledIo();
    io.maxBytesPerWrite = 7;
    const log = open(1, { io });
    await Promise.all([log.append([record("short"), record("writes")]), log.append([record("é😀")])]);
    await log.close();
    const reopened = open();
    expect(values(reopened)).toEqual(["short", "writes", "é😀"]);
    await reopened.close();
  });

  it("stops acknowledging after a failed fdatasync, and reports the log as not ready", async () => {
    const io = new ControlledIo();
    io.failSyncWith = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    const log = open(1, { io });
    await expect(log.append([record("one")])).rejects.toThrow(/EIO.*no more messages are accepted/);
    io.failSyncWith = null;
    await expect(log.append([record("two")])).rejects.toThrow(/no more messages are accepted/);
    await expect(log.partitionCount()).rejects.toThrow(/EIO/);
    expect(log.highWatermark(0)).toBe(0);
    await log.close();
  });

  it("acknowledges appends already made when closed, then refuses new ones", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const log = open(1, { io });
    const appended = log.append([record("one")]);
    await io.syncHeld();
    const closed = log.close();
    await expect(log.append([record("late")])).rejects.toThrow(/closed/);
    io.release();
    await Promise.all([appended, closed]);
    const reopened = open();
    expect(values(reopened)).toEqual(["one"]);
    await reopened.close();
  });
});

describe("crc32Portable", () => {
  it("is CRC-32 as zlib computes it", () => {
    expect(crc32Portable(Buffer.from("123456789"))).toBe(0xcbf43926);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), data => {
        expect(crc32Portable(data)).toBe(zlib.crc32(data));
      }),
    );
  });
});

describe("EmbeddedLog in memory (DATA_DIR=memory)", () => {
  it("acknowledges at once and shows the messages to readers", async () => {
    const log = new EmbeddedLog(TOPIC, 1, undefined, { io: new ControlledIo() });
    expect(await log.append([record("one"), record("two")])).toEqual([0, 1]);
    expect(log.read(0, 0, 10).map(m => m.value!.toString())).toEqual(["one", "two"]);
    await log.close();
  });
});
