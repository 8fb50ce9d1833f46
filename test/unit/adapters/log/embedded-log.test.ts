import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { EmbeddedLog, type EmbeddedLogOptions } from "../../../../adapters/log/embedded-log";
import type { LogRecord } from "../../../../adapters/log/types";
import { partitionForKey } from "../../../../lib/partitioner";
import { ControlledIo, state } from "./controlled-io";

const TOPIC = "ticks";
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

  it("shows an append to readers, and wakes those waiting for one, only once it is synced", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const log = open(1, { io });
    const appended = log.append([record("one")]);
    const woken = log.waitForAppend(60000);
    await io.syncHeld();
    expect(await state(appended)).toBe("pending");
    expect(await state(woken)).toBe("pending");
    expect(log.highWatermark(0)).toBe(0);
    expect(log.read(0, 0, 10)).toEqual([]);

    io.release();
    expect(await appended).toEqual([0]);
    await woken;
    expect(log.highWatermark(0)).toBe(1);
    expect(values(log)).toEqual(["one"]);
    await log.close();
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

describe("EmbeddedLog in memory (DATA_DIR=memory)", () => {
  it("acknowledges at once, in call order, and shows the messages to readers", async () => {
    const log = new EmbeddedLog(TOPIC, 1, undefined, { io: new ControlledIo() });
    expect(await log.append([record("one"), record("two")])).toEqual([0, 1]);
    expect(await log.append([record("three")])).toEqual([2]);
    expect(log.read(0, 0, 10).map(m => m.value!.toString())).toEqual(["one", "two", "three"]);
    expect(log.read(0, 1, 1)).toEqual([
      expect.objectContaining({ partition: 0, offset: 1, key: "AAPL", value: Buffer.from("two") }),
    ]);
    await log.close();
  });

  it("places each key on the partition Kafka's partitioner gives it, with its own offsets", async () => {
    const log = new EmbeddedLog(TOPIC, 4);
    const keys = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "AAPL"];
    const offsets = await log.append(keys.map(key => record(key, key)));
    keys.forEach((key, i) => {
      const [m] = log.read(partitionForKey(key, 4), offsets[i], 1);
      expect(m).toMatchObject({ key, offset: offsets[i] });
    });
    // Offsets count per partition, from 0, in call order.
    const seen = [0, 0, 0, 0];
    expect(offsets).toEqual(keys.map(key => seen[partitionForKey(key, 4)]++));
    await log.close();
  });

  it("wakes a reader waiting for an append as soon as one is made", async () => {
    const log = new EmbeddedLog(TOPIC, 1);
    const woken = log.waitForAppend(60000);
    expect(await state(woken)).toBe("pending");
    await log.append([record("one")]);
    expect(await state(woken)).toBe("resolved");
    await log.close();
  });

  it("reports each partition's lag from what its group committed, groups apart", async () => {
    const log = new EmbeddedLog(TOPIC, 2);
    const p = partitionForKey("AAPL", 2);
    const other = 1 - p;
    await log.append([record("a"), record("b"), record("c")]);
    const lagOf = async (group: string) => (await log.lag(group)).sort((x, y) => x.partition - y.partition);
    expect((await lagOf("g"))[p]).toEqual({ partition: p, committed: -1, highWatermark: 3, lag: 3 });
    expect((await lagOf("g"))[other]).toEqual({ partition: other, committed: -1, highWatermark: 0, lag: 0 });
    log.committedOffsets("g")[p] = 2;
    expect((await lagOf("g"))[p]).toEqual({ partition: p, committed: 2, highWatermark: 3, lag: 1 });
    expect((await lagOf("other"))[p]).toMatchObject({ committed: -1, lag: 3 });
    await log.close();
  });
});
