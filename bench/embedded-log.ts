import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type CommitIo, EmbeddedLog } from "../adapters/log/embedded-log";
import type { LogRecord } from "../adapters/log/types";
import { parseOptions } from "./harness/args";
import { fmt, percentile, rounded, spread, spreadText, type Spread } from "./harness/figures";
import { machine, printLines } from "./harness/print";
import { randomWalkTick, seededRandom } from "./harness/ticks";

/**
 * What durability costs the embedded log: append throughput and acknowledgement latency with
 * fdatasync before each acknowledgement (as shipped) against the same log without it (a baseline
 * only the benchmark can choose), on the file system of --dir. Three workloads:
 *   - 32, then 256, concurrent appenders of one tick each: what group commit is for (the appends
 *     that arrive during a sync share the next one, so throughput grows with concurrency);
 *   - one appender of 1,000-tick batches, one call in flight at a time: the ingest path, whose
 *     ProduceCoalescer sends one produce call at a time (its batching happens before the log).
 * Runs alternate fsync on and off (on/off, then off/on, ...) after one unmeasured warm-up of each,
 * so drift on a shared machine hits both alike; each run uses a fresh directory, removed after.
 *
 *   npm run bench:embedded-log [-- --seconds 3 --repeats 5 --partitions 12 --dir /path/on/the/disk]
 *
 * --dir defaults to the system temp folder: where that is tmpfs, fdatasync costs nothing and the
 * figures say nothing; point it at the disk that holds DATA_DIR.
 */

interface Options {
  seconds: number;
  repeats: number;
  partitions: number;
  dir: string;
}

interface Workload {
  name: string;
  appenders: number;
  batch: number;
}

const WORKLOADS: Workload[] = [
  { name: "32 appenders x 1 tick", appenders: 32, batch: 1 },
  { name: "256 appenders x 1 tick", appenders: 256, batch: 1 },
  { name: "1 appender x 1,000 ticks", appenders: 1, batch: 1000 },
];

interface Run {
  recordsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  recordsPerSync: number | null;
  recordsPerCommit: number;
}

function parseArgs(argv: string[]): Options {
  return parseOptions(
    argv,
    { seconds: 3, repeats: 5, partitions: 12, dir: os.tmpdir() },
    { "--dir": (dir, o) => (o.dir = path.resolve(dir)) },
  );
}

/** Price ticks as the gateway stores them, over 100 symbols. */
function ticks(count: number): LogRecord[] {
  const random = seededRandom(42);
  return Array.from({ length: count }, (_, i) => {
    const symbol = `S${i % 100}`;
    const tick = randomWalkTick(random, symbol, 100 + (i % 100), 1_700_000_000 + Math.floor(i / 100));
    return { key: symbol, value: JSON.stringify(tick) };
  });
}

/**
 * The log's own file operations, counting syncs and commits. A commit issues its writes, one per
 * partition file it touches, in one synchronous step: a burst of writes is one commit.
 */
function countingIo(): CommitIo & { syncs: number; commits: number } {
  let inBurst = false;
  const io = {
    syncs: 0,
    commits: 0,
    write: (fd: number, data: Buffer) => {
      if (!inBurst) {
        io.commits++;
        inBurst = true;
        queueMicrotask(() => (inBurst = false));
      }
      return new Promise<number>((resolve, reject) =>
        fs.write(fd, data, 0, data.length, null, (err, n) => (err ? reject(err) : resolve(n))),
      );
    },
    fdatasync: (fd: number) => {
      io.syncs++;
      return new Promise<void>((resolve, reject) => fs.fdatasync(fd, err => (err ? reject(err) : resolve())));
    },
  };
  return io;
}

async function run(o: Options, w: Workload, fsync: boolean, records: LogRecord[]): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(o.dir, "bench-embedded-log-"));
  const io = countingIo();
  const log = new EmbeddedLog("bench", o.partitions, dir, { fsync, io });
  const latencies: number[] = [];
  let appended = 0;
  try {
    const started = process.hrtime.bigint();
    const end = started + BigInt(Math.round(o.seconds * 1e9));
    await Promise.all(
      Array.from({ length: w.appenders }, async (_, a) => {
        let next = a * w.batch;
        while (process.hrtime.bigint() < end) {
          const batch: LogRecord[] = [];
          for (let i = 0; i < w.batch; i++) batch.push(records[next++ % records.length]);
          const sent = process.hrtime.bigint();
          await log.append(batch);
          latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
          appended += batch.length;
        }
      }),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const sorted = Float64Array.from(latencies).sort();
    return {
      recordsPerSecond: appended / seconds,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      recordsPerSync: fsync ? appended / io.syncs : null,
      recordsPerCommit: appended / io.commits,
    };
  } finally {
    await log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const show = (s: Spread, digits = 0) => spreadText(s, digits, "[]");
const roundedSpread = (s: Spread, digits: number) => ({
  median: rounded(s.median, digits),
  min: rounded(s.min, digits),
  max: rounded(s.max, digits),
});

/** One unmeasured warm-up of each mode, then `repeats` runs of each, alternating which goes first. */
async function measure(o: Options, w: Workload, records: LogRecord[]) {
  await run(o, w, true, records);
  await run(o, w, false, records);
  const runs: Record<"on" | "off", Run[]> = { on: [], off: [] };
  for (let r = 0; r < o.repeats; r++)
    for (const mode of r % 2 === 0 ? (["on", "off"] as const) : (["off", "on"] as const))
      runs[mode].push(await run(o, w, mode === "on", records));
  const summary = (mode: "on" | "off") => ({
    recordsPerSecond: spread(runs[mode].map(r => r.recordsPerSecond)),
    p50Ms: spread(runs[mode].map(r => r.p50Ms)),
    p99Ms: spread(runs[mode].map(r => r.p99Ms)),
  });
  const on = summary("on");
  const off = summary("off");
  const ratio = {
    throughput: on.recordsPerSecond.median / off.recordsPerSecond.median,
    p50Latency: on.p50Ms.median / off.p50Ms.median,
    p99Latency: on.p99Ms.median / off.p99Ms.median,
  };
  const perSync = spread(runs.on.map(r => r.recordsPerSync ?? NaN));
  return { on, off, ratio, perSync, perCommit: spread(runs.on.map(r => r.recordsPerCommit)) };
}

type Measured = Awaited<ReturnType<typeof measure>>;

function printWorkload(w: Workload, m: Measured): void {
  const row = (mode: string, s: Measured["on"]) =>
    `  ${mode.padEnd(6)} ${show(s.recordsPerSecond).padEnd(34)} ${show(s.p50Ms, 2).padEnd(22)} ${show(s.p99Ms, 2)}`;
  printLines(
    w.name,
    `  ${"fsync".padEnd(6)} ${"records/s".padEnd(34)} ${"ack p50 ms".padEnd(22)} ack p99 ms`,
    row("on", m.on),
    row("off", m.off),
    `  on/off: throughput x${m.ratio.throughput.toFixed(2)}, p50 latency x${m.ratio.p50Latency.toFixed(1)}, ` +
      `p99 latency x${m.ratio.p99Latency.toFixed(1)}`,
    `  fsync on: ${show(m.perCommit, 1)} records per group commit, ${show(m.perSync, 1)} per fdatasync (one per partition file written)`,
    "",
  );
}

/** A workload's part of the JSON result line. */
function workloadJson(w: Workload, m: Measured): Record<string, unknown> {
  return {
    workload: w.name,
    appenders: w.appenders,
    batch: w.batch,
    fsync_on: {
      records_per_s: roundedSpread(m.on.recordsPerSecond, 0),
      ack_p50_ms: roundedSpread(m.on.p50Ms, 3),
      ack_p99_ms: roundedSpread(m.on.p99Ms, 3),
      records_per_commit: roundedSpread(m.perCommit, 1),
      records_per_fdatasync: roundedSpread(m.perSync, 1),
    },
    fsync_off: {
      records_per_s: roundedSpread(m.off.recordsPerSecond, 0),
      ack_p50_ms: roundedSpread(m.off.p50Ms, 3),
      ack_p99_ms: roundedSpread(m.off.p99Ms, 3),
    },
    ratio_on_off: {
      throughput: rounded(m.ratio.throughput, 3),
      ack_p50: rounded(m.ratio.p50Latency, 2),
      ack_p99: rounded(m.ratio.p99Latency, 2),
    },
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const records = ticks(100_000);
  const recordBytes = records.reduce((n, r) => n + Buffer.byteLength(r.value), 0) / records.length;
  printLines(
    "Embedded log: the cost of fdatasync before each acknowledgement",
    `  node ${process.version}, ${os.platform()} ${os.arch()}, ${os.cpus().length} cores, load average ${machine.load(1)}`,
    `  files in ${o.dir}; ${o.partitions} partitions; ticks of ${fmt(recordBytes)} bytes of JSON; ` +
      `${o.repeats} interleaved runs of ${o.seconds} s per mode after a warm-up; median [min-max]`,
    "",
  );
  const workloads: Record<string, unknown>[] = [];
  for (const w of WORKLOADS) {
    const m = await measure(o, w, records);
    printWorkload(w, m);
    workloads.push(workloadJson(w, m));
  }
  const { dir, partitions, seconds, repeats } = o;
  console.log(
    JSON.stringify({
      bench: "embedded-log",
      node: process.version,
      dir,
      partitions,
      seconds,
      repeats,
      workloads,
    }),
  );
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
