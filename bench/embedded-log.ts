import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type CommitIo, EmbeddedLog } from "../adapters/log/embedded-log";
import type { LogRecord } from "../adapters/log/types";
import { parseOptions } from "./harness/args";
import {
  alternating,
  fmt,
  percentiles,
  rounded,
  roundedSpread,
  spread,
  spreadText,
  type Spread,
} from "./harness/figures";
import { machine, printLines, table } from "./harness/print";
import { randomWalkTick, seededRandom } from "./harness/ticks";

/**
 * What durability costs the embedded log: append throughput and acknowledgement latency with
 * fdatasync before each acknowledgement (as shipped) against the same log without it, for 32 and 256
 * concurrent appenders of one tick and one appender of 1,000-tick batches (the ingest path), runs of
 * the two modes interleaved; the method is in BENCHMARKS.md ("Embedded log").
 *
 *   npm run bench:embedded-log [-- --seconds 3 --repeats 5 --partitions 12 --dir /path/on/the/disk]
 *
 * --dir defaults to the system temp folder: where that is tmpfs, fdatasync costs nothing and the
 * figures say nothing; point it at the disk that holds DATA_DIR.
 */

const WORKLOADS = [
  { name: "32 appenders x 1 tick", appenders: 32, batch: 1 },
  { name: "256 appenders x 1 tick", appenders: 256, batch: 1 },
  { name: "1 appender x 1,000 ticks", appenders: 1, batch: 1000 },
];
type Workload = (typeof WORKLOADS)[number];

function parseArgs(argv: string[]) {
  return parseOptions(
    argv,
    { seconds: 3, repeats: 5, partitions: 12, dir: os.tmpdir() },
    { "--dir": (dir, o) => (o.dir = path.resolve(dir)) },
  );
}

type Options = ReturnType<typeof parseArgs>;

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

async function run(o: Options, w: Workload, fsync: boolean, records: LogRecord[]) {
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
    const [p50Ms, p99Ms] = percentiles(latencies, [0.5, 0.99]);
    return {
      recordsPerSecond: appended / seconds,
      p50Ms,
      p99Ms,
      recordsPerSync: fsync ? appended / io.syncs : null,
      recordsPerCommit: appended / io.commits,
    };
  } finally {
    await log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const show = (s: Spread, digits = 0) => spreadText(s, digits, "[]");

/** One unmeasured warm-up of each mode, then `repeats` runs of each, alternating which goes first. */
async function measure(o: Options, w: Workload, records: LogRecord[]) {
  await run(o, w, true, records);
  await run(o, w, false, records);
  const runs = await alternating(o.repeats, ["on", "off"], mode => run(o, w, mode === "on", records));
  const summary = (mode: "on" | "off") => ({
    recordsPerSecond: spread(runs[mode].map(r => r.recordsPerSecond)),
    p50Ms: spread(runs[mode].map(r => r.p50Ms)),
    p99Ms: spread(runs[mode].map(r => r.p99Ms)),
  });
  const perSync = spread(runs.on.map(r => r.recordsPerSync ?? NaN));
  const perCommit = spread(runs.on.map(r => r.recordsPerCommit));
  return { on: summary("on"), off: summary("off"), perSync, perCommit };
}

/** fsync on / off, of the medians. */
const onOff = (m: Measured, figure: keyof Measured["on"]) => m.on[figure].median / m.off[figure].median;

type Measured = Awaited<ReturnType<typeof measure>>;

function printWorkload(w: Workload, m: Measured): void {
  const row = (mode: string, s: Measured["on"]) => [
    mode,
    show(s.recordsPerSecond),
    show(s.p50Ms, 2),
    show(s.p99Ms, 2),
  ];
  printLines(
    w.name,
    table([["fsync", "records/s", "ack p50 ms", "ack p99 ms"], row("on", m.on), row("off", m.off)], "  "),
    `  on/off: throughput x${onOff(m, "recordsPerSecond").toFixed(2)}, p50 latency x${onOff(m, "p50Ms").toFixed(1)}, ` +
      `p99 latency x${onOff(m, "p99Ms").toFixed(1)}`,
    `  fsync on: ${show(m.perCommit, 1)} records per group commit, ${show(m.perSync, 1)} per fdatasync (one per partition file written)`,
    "",
  );
}

const modeJson = (s: Measured["on"]) => ({
  records_per_s: roundedSpread(s.recordsPerSecond, 0),
  ack_p50_ms: roundedSpread(s.p50Ms, 3),
  ack_p99_ms: roundedSpread(s.p99Ms, 3),
});

/** A workload's part of the JSON result line. */
function workloadJson(w: Workload, m: Measured): Record<string, unknown> {
  return {
    workload: w.name,
    appenders: w.appenders,
    batch: w.batch,
    fsync_on: {
      ...modeJson(m.on),
      records_per_commit: roundedSpread(m.perCommit, 1),
      records_per_fdatasync: roundedSpread(m.perSync, 1),
    },
    fsync_off: modeJson(m.off),
    ratio_on_off: {
      throughput: rounded(onOff(m, "recordsPerSecond"), 3),
      ack_p50: rounded(onOff(m, "p50Ms"), 2),
      ack_p99: rounded(onOff(m, "p99Ms"), 2),
    },
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const records = ticks(100_000);
  const recordBytes = records.reduce((n, r) => n + Buffer.byteLength(r.value), 0) / records.length;
  printLines(
    "Embedded log: the cost of fdatasync before each acknowledgement",
    `  ${machine()}`,
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
  const line = { bench: "embedded-log", node: process.version, dir, partitions, seconds, repeats, workloads };
  console.log(JSON.stringify(line));
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
