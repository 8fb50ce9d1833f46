import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  closePartitionFiles,
  LogCorruptionError,
  openPartitionFiles,
  type PartitionFile,
} from "../../../../adapters/log/embedded-log-files";
import { encodeLine } from "../../../../adapters/log/embedded-log-lines";

const TOPIC = "ticks";

const line = (value: string, key = "AAPL") => encodeLine(key, value, 1700000000000).toString("utf8");
const legacyLine = (key: string, value: string, t = 1700000000000) =>
  JSON.stringify({ k: key, v: value, t }) + "\n";

describe("the embedded log's partition files", () => {
  let dir = "";
  let warnings: string[] = [];
  const logger = { warn: (message: string) => warnings.push(message) };
  const file = (p = 0) => path.join(dir, `${TOPIC}-${p}.ndjson`);
  const opened: PartitionFile[][] = [];
  const open = (partitions = 1, topic = TOPIC) => {
    const result = openPartitionFiles(dir, topic, partitions, logger);
    opened.push(result.files);
    return result;
  };
  const values = (partitions = 1) => open(partitions).messages.map(ms => ms.map(m => m.value.toString()));

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "embedded-log-files-"));
    warnings = [];
  });

  afterEach(() => {
    for (const files of opened.splice(0)) closePartitionFiles(files);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("creates one empty file per partition, with the directories it needs", () => {
    dir = path.join(dir, "a", "b");
    const { files, messages } = open(3);
    expect(files.map(f => f.path)).toEqual([0, 1, 2].map(p => file(p)));
    expect(messages).toEqual([[], [], []]);
    for (const p of [0, 1, 2]) expect(fs.statSync(file(p)).size).toBe(0);
    expect(warnings).toEqual([]);
  });

  it("gives back each partition's records in file order, key, value, timestamp and headers", () => {
    fs.writeFileSync(file(0), line("a0") + line("a1"));
    fs.writeFileSync(file(1), encodeLine("MSFT", "m0", 5, { "idempotency-key": "k" }).toString());
    expect(open(2).messages).toEqual([
      [
        { key: "AAPL", value: Buffer.from("a0"), timestamp: 1700000000000 },
        { key: "AAPL", value: Buffer.from("a1"), timestamp: 1700000000000 },
      ],
      [{ key: "MSFT", value: Buffer.from("m0"), timestamp: 5, headers: { "idempotency-key": "k" } }],
    ]);
  });

  it("opens its files for appending: a write lands after the records already there", () => {
    fs.writeFileSync(file(), line("one"));
    const { files } = open();
    fs.writeSync(files[0].fd, line("two"));
    expect(fs.readFileSync(file(), "utf8")).toBe(line("one") + line("two"));
  });

  it("refuses another partition count before opening anything, saying which count the files hold", () => {
    open(3);
    for (const files of opened.splice(0)) closePartitionFiles(files);
    for (const other of [2, 4])
      expect(() => open(other)).toThrow(
        new RegExp(
          `holds 3 partitions of topic "${TOPIC}" but KAFKA_PARTITIONS is ${other}: set KAFKA_PARTITIONS=3`,
        ),
      );
    expect(fs.existsSync(file(3))).toBe(false);
    // Another topic's files in the same directory are not counted.
    expect(open(2, "other.topic").files).toHaveLength(2);
  });

  it("truncates a torn last line and says how many bytes it dropped, once", () => {
    fs.writeFileSync(file(), line("one") + line("two"));
    const intact = fs.statSync(file()).size;
    fs.appendFileSync(file(), '{"k":"AAPL","v":"thr');

    expect(values()).toEqual([["one", "two"]]);
    expect(fs.statSync(file()).size).toBe(intact);
    expect(warnings).toEqual([expect.stringContaining(`dropped the last 20 bytes (from byte ${intact})`)]);

    expect(values()).toEqual([["one", "two"]]);
    expect(warnings).toHaveLength(1);
  });

  it("drops complete lines that fail their checksum when no valid record follows them", () => {
    const text = line("one") + line("two");
    const firstEnd = Buffer.byteLength(line("one"));
    fs.writeFileSync(file(), text.replace('"v":"two"', '"v":"twO"'));

    expect(values()).toEqual([["one"]]);
    expect(fs.statSync(file()).size).toBe(firstEnd);
    expect(warnings).toEqual([expect.stringContaining(`from byte ${firstEnd}`)]);
  });

  it("reads past an empty line between records, leaving the file as it is", () => {
    const content = line("one") + "\n" + line("two");
    fs.writeFileSync(file(), content);
    expect(values()).toEqual([["one", "two"]]);
    expect(fs.readFileSync(file(), "utf8")).toBe(content);
    expect(warnings).toEqual([]);
  });

  it("refuses a file with a damaged line before valid ones, naming the file, line and byte, and closes what it opened", () => {
    const text = line("one") + line("two") + line("three");
    const damaged = text.replace('"v":"two"', '"v":"twO"');
    fs.writeFileSync(file(1), damaged);
    const secondLine = Buffer.byteLength(line("one"));
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;

    let error: unknown;
    try {
      open(2);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(LogCorruptionError);
    expect(error).toMatchObject({ file: file(1), byteOffset: secondLine, line: 2, retriable: false });
    expect((error as Error).message).toContain(`truncate -s ${secondLine}`);
    expect(fs.readFileSync(file(1), "utf8")).toBe(damaged);
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore);

    fs.writeFileSync(file(1), text.replace("\n", "\nnot json\n"));
    expect(() => open(2)).toThrow(/line 2 \(byte \d+\) is not JSON/);
  });

  it("reads files written before checksums as they are", () => {
    fs.writeFileSync(file(), legacyLine("AAPL", "old-1") + legacyLine("AAPL", "old-2"));
    expect(open().messages[0]).toEqual([
      { key: "AAPL", value: Buffer.from("old-1"), timestamp: 1700000000000 },
      { key: "AAPL", value: Buffer.from("old-2"), timestamp: 1700000000000 },
    ]);
    expect(warnings).toEqual([]);
  });

  it("keeps the record an older version glued to a torn line, and every record after it", () => {
    const fragment = '{"k":"AAPL","v":"{\\"seq\\":2,\\"pri';
    const content =
      legacyLine("AAPL", '{"seq":1}') +
      fragment +
      legacyLine("AAPL", '{"seq":3}') +
      legacyLine("AAPL", '{"seq":4}');
    fs.writeFileSync(file(), content);

    expect(values()).toEqual([['{"seq":1}', '{"seq":3}', '{"seq":4}']]);
    expect(warnings).toEqual([
      expect.stringContaining(
        `line 2 (byte ${legacyLine("AAPL", '{"seq":1}').length}) starts with ${Buffer.byteLength(fragment)} bytes`,
      ),
    ]);
    expect(fs.readFileSync(file(), "utf8")).toBe(content);
  });

  it("reads a file longer than one read chunk, with a line across the chunk boundary", () => {
    // 1 MiB chunks: records of ~10 kB put a boundary inside some line.
    const big = Array.from({ length: 150 }, (_, i) => `${i}:${"x".repeat(10000)}`);
    fs.writeFileSync(file(), big.map(v => line(v)).join(""));
    expect(fs.statSync(file()).size).toBeGreaterThan(1 << 20);
    expect(values()).toEqual([big]);
    expect(warnings).toEqual([]);
  });
});

describe("closePartitionFiles", () => {
  it("closes every file once and empties the list", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "embedded-log-files-"));
    try {
      const { files } = openPartitionFiles(dir, TOPIC, 2, { warn: () => undefined });
      const fds = files.map(f => f.fd);
      closePartitionFiles(files);
      expect(files).toEqual([]);
      for (const fd of fds) expect(() => fs.fstatSync(fd)).toThrow(/EBADF/);
      expect(() => closePartitionFiles(files)).not.toThrow();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
