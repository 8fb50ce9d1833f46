import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { GroupCommit } from "../../../../adapters/log/embedded-group-commit";
import {
  closePartitionFiles,
  openPartitionFiles,
  type PartitionFile,
} from "../../../../adapters/log/embedded-log-files";
import type { StoredMessage } from "../../../../adapters/log/embedded-log-lines";
import type { LogRecord } from "../../../../adapters/log/types";
import { partitionForKey } from "../../../../lib/partitioner";
import { ControlledIo, state, tick } from "./controlled-io";

const TOPIC = "ticks";
const record = (value: string, key = "AAPL"): LogRecord => ({ key, value });

describe("GroupCommit", () => {
  let dir = "";
  let files: PartitionFile[] = [];
  let acknowledged: StoredMessage[][] = [];
  let acknowledgements = 0;

  /** A group commit over real partition files in a fresh directory. */
  const start = (partitions: number, io: ControlledIo, fsync = true) => {
    ({ files, messages: acknowledged } = openPartitionFiles(dir, TOPIC, partitions, console));
    return new GroupCommit(files, acknowledged, {
      io,
      fsync,
      dir,
      onAcknowledged: () => acknowledgements++,
    });
  };
  /** What the files hold, read back as the log reads them at start. */
  const onDisk = (partitions: number) => {
    const reread = openPartitionFiles(dir, TOPIC, partitions, console);
    closePartitionFiles(reread.files);
    return reread.messages.map(ms => ms.map(m => m.value.toString()));
  };
  const values = (p = 0) => acknowledged[p].map(m => m.value.toString());

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "embedded-group-commit-"));
    acknowledgements = 0;
  });

  afterEach(() => {
    closePartitionFiles(files);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("acknowledges an append only after its fdatasync, and adds it to what readers see only then", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const commits = start(1, io);
    const appended = commits.append([record("one")], 1700000000000);
    await io.syncHeld();
    expect(io.writes).toBe(1);
    expect(await state(appended)).toBe("pending");
    expect(acknowledged[0]).toEqual([]);
    expect(commits.busy).toBe(true);

    io.release();
    expect(await appended).toEqual([0]);
    expect(acknowledged[0]).toEqual([{ key: "AAPL", value: Buffer.from("one"), timestamp: 1700000000000 }]);
    expect(acknowledgements).toBe(1);
    await tick();
    expect(commits.busy).toBe(false);
  });

  it("writes and syncs the appends that arrive during a sync together, in order, with contiguous offsets", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const commits = start(1, io);
    const first = commits.append([record("v0")], 1);
    await io.syncHeld();

    const rest: Promise<number[]>[] = [];
    for (let i = 1; i <= 100; i++) {
      rest.push(commits.append([record(`v${i}`)], 1));
      if (i % 10 === 0) await tick();
    }
    await tick();
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes: 1, syncs: 1 });

    io.release();
    expect(await first).toEqual([0]);
    await io.syncHeld();
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes: 2, syncs: 2 });
    expect(await state(rest[0])).toBe("pending");
    expect(values()).toEqual(["v0"]);

    io.release();
    expect(await Promise.all(rest)).toEqual(Array.from({ length: 100 }, (_, i) => [i + 1]));
    expect(io.syncs).toBe(2);
    expect(acknowledgements).toBe(2);
    expect(onDisk(1)).toEqual([Array.from({ length: 101 }, (_, i) => `v${i}`)]);
  });

  it("puts the appends of one event-loop turn into one write and one sync per partition file", async () => {
    const io = new ControlledIo();
    const commits = start(4, io);
    const keys = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META"];
    const used = new Set(keys.map(k => partitionForKey(k, 4))).size;
    const offsets = await Promise.all(
      Array.from({ length: 70 }, (_, i) => commits.append([record(`v${i}`, keys[i % keys.length])], 1)),
    );
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes: used, syncs: used });

    // Per partition: the order of the calls, offsets from 0 with no gap, as each call was told.
    const disk = onDisk(4);
    for (let p = 0; p < 4; p++) {
      expect(disk[p]).toEqual(values(p));
      const calls = values(p).map(v => Number(v.slice(1)));
      expect(calls).toEqual([...calls].sort((a, b) => a - b));
      calls.forEach((call, offset) => expect(offsets[call]).toEqual([offset]));
    }
  });

  it("numbers offsets on from the messages the files already hold", async () => {
    const io = new ControlledIo();
    await start(1, io).append([record("one"), record("two")], 1);
    closePartitionFiles(files);
    const commits = start(1, io);
    expect(await commits.append([record("three")], 1)).toEqual([2]);
    expect(values()).toEqual(["one", "two", "three"]);
  });

  it("finishes a write the kernel took only in part", async () => {
    const io = new ControlledIo();
    io.maxBytesPerWrite = 7;
    const commits = start(1, io);
    await Promise.all([
      commits.append([record("short"), record("writes")], 1),
      commits.append([record("é😀")], 1),
    ]);
    expect(io.writes).toBeGreaterThan(2);
    expect(onDisk(1)).toEqual([["short", "writes", "é😀"]]);
  });

  it("fails a write that makes no progress instead of retrying it for ever", async () => {
    const io = new ControlledIo();
    io.maxBytesPerWrite = 0;
    const commits = start(1, io);
    await expect(commits.append([record("one")], 1)).rejects.toThrow(/write made no progress/);
    expect(commits.failure?.message).toContain(path.join(dir, `${TOPIC}-0.ndjson`));
  });

  it("stops acknowledging after a failed fdatasync, that group and the one behind it, and writes nothing more", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const commits = start(1, io);
    const first = commits.append([record("one")], 1);
    await io.syncHeld();
    const next = commits.append([record("two")], 1);
    io.failSyncWith = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    io.holdSyncs = false;
    io.release();
    // The first sync was held after it succeeded; the second group's sync fails.
    expect(await first).toEqual([0]);
    await expect(next).rejects.toThrow(/writing to .* failed \(EIO.*no more messages are accepted/);
    expect(commits.failure).toMatchObject({ retriable: false, cause: io.failSyncWith });
    expect(values()).toEqual(["one"]);

    // The log refuses appends once `failure` is set; one that got here anyway is never written.
    io.failSyncWith = null;
    const writes = io.writes;
    void commits.append([record("three")], 1);
    await new Promise(resolve => setTimeout(resolve, 10));
    expect({ writes: io.writes, syncs: io.syncs }).toEqual({ writes, syncs: 2 });
  });

  it("skips fdatasync when told to (the benchmark's baseline), and still writes every line", async () => {
    const io = new ControlledIo();
    const commits = start(2, io, false);
    await commits.append([record("a", "AAPL"), record("m", "MSFT")], 1);
    expect(io.syncs).toBe(0);
    expect(onDisk(2).flat().sort()).toEqual(["a", "m"]);
  });

  it("tells a caller waiting for idle when the groups in flight are done", async () => {
    const io = new ControlledIo();
    io.holdSyncs = true;
    const commits = start(1, io);
    const appended = commits.append([record("one")], 1);
    expect(commits.busy).toBe(true);
    const idle = commits.idle();
    await io.syncHeld();
    expect(await state(idle)).toBe("pending");
    io.release();
    await idle;
    expect(await state(appended)).toBe("resolved");
    expect(commits.busy).toBe(false);
  });
});
