import { setTimeout as sleep } from "node:timers/promises";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import Redis from "ioredis";
import { Kafka, logLevel, type Admin } from "kafkajs";
import pg from "pg";
import type { LogBatch, LogMessage } from "../adapters/log/types";
import { RedisSnapshotStore } from "../adapters/snapshots/redis-snapshots";
import { migrate } from "../adapters/sql/migrate";
import { PostgresClient } from "../adapters/sql/postgres-client";
import { parseMessage, type PriceTick } from "../domain/messages";
import { SymbolActor, type ActorSnapshot } from "../domain/symbol-actor";
import { freePort } from "../lib/net";
import { partitionForKey } from "../lib/partitioner";
import { ActorHost, type RestoreReason, type RestoreSource } from "../runtime/actor-host";
import { emptyOutputs } from "../runtime/batch-outputs";
import { ResultsStore, type ActorRecord } from "../runtime/results-store";
import { randomWalkTick, seededRandom } from "./apply";
import { SETTINGS, WARM_TICKS, symbolName, type ChildReport, type MemoryUsage } from "./scale-child";

/**
 * (e) Memory and scale, against the local stack (`npm run stack:up`):
 *   - bytes per live actor: RSS (and V8 heap) after forced GC, before and after creating N actors
 *     with full indicator windows, each run in a fresh child process (bench/scale-child.ts);
 *   - the RSS of an actors process at rest (bin/start.ts, SERVICES=actors, on Kafka, Postgres and
 *     Redis, every partition owned, a few ticks processed), and from both, derived, the symbols
 *     one node can hold in 1 GiB;
 *   - activation of N symbols that already have records (actor_state) and cache entries: a fresh
 *     ActorHost, wired as the actors service wires it, handed one batch per partition with one
 *     new tick per symbol, timed from the first handleBatch to the last one returning, with the
 *     Redis cache present and emptied, interleaved over the rounds. After each run the records
 *     still pending are written (flushDue, timed apart), and the cache is refilled from the
 *     records (untimed) when the host found it failing, so every round starts from records and
 *     cache entries that are the actors' latest states.
 * The memory figures are taken while the records are being built (RSS after forced GC does not
 * depend on the load); the activation rounds run alone. Fresh databases, topic and Redis keys,
 * all removed afterwards.
 *
 *   npm run bench:scale [-- --symbols 100000 --rounds 3 --partitions 12]
 */

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface ScaleResult {
  symbols: number;
  rounds: number;
  partitions: number;
  /** Price ticks applied to each actor before it is measured or recorded. */
  warmTicks: number;
  /** RSS growth per live actor, over the child runs. */
  bytesPerActorRss: Spread;
  /** V8 heapUsed growth per live actor (median of the child runs). */
  heapBytesPerActor: number;
  /** ArrayBuffer backing stores (off the V8 heap) per live actor (median). */
  arrayBufferBytesPerActor: number;
  /** V8 heap a snapshot object of an actor takes while it is held (median). */
  heapBytesPerHeldSnapshot: number;
  /** Mean JSON size of an actor's snapshot (a record's `state`, a cache entry). */
  snapshotJsonBytes: number;
  /** RSS of a child process before it created any actor (median). */
  childBaseRssBytes: number;
  activationFromCacheSeconds: Spread;
  activationFromPostgresSeconds: Spread;
  /** Writing the records still pending at the last return (flushDue), after the timed window, over all runs. */
  pendingRecordFlushSeconds: Spread;
  /** Where the activated actors' states came from, summed over the rounds ("cache/hit", "postgres/missing", ...). */
  restoredInCacheRuns: Record<string, number>;
  restoredInPostgresRuns: Record<string, number>;
  /** Runs in which the host found the cache failing (commands timed out), per kind. */
  cacheFailures: { present: number; emptied: number };
  /** The host's warning when the cache first failed, if it did. */
  firstCacheFailure: string | null;
  /** Event-loop delay during the timed windows, over all runs: the median run's p99 and the largest. */
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  /** Times the cache was refilled from the records before a "present" run, untimed. */
  cacheRefills: number;
  /** Shares of the partition loops' busy time (summed over partitions and rounds). */
  phasesFromCache: PhaseShares;
  phasesFromPostgres: PhaseShares;
  /** RSS of an actors process at rest (median of samples), after this many ticks of this many symbols. */
  baselineRssBytes: number;
  /** The same process right after, with GC forced: its floor, measured as the actors' growth is. */
  baselineRssAfterGcBytes: number;
  baselineHeapUsedAfterGcBytes: number;
  baselineTicks: number;
  baselineSymbols: number;
  /** (1 GiB - baselineRssBytes) / bytesPerActorRss.median, rounded down. */
  symbolsPerGiB: number;
  environment: string[];
}

export interface PhaseShares {
  /** Results + records transactions. */
  postgres: number;
  /** Writes of the recorded states to the cache. */
  cacheWrite: number;
  apply: number;
  /** Activation (reading records, cache entries, restoring), parsing, the partition claim, the rest. */
  rest: number;
}

export interface ScaleOptions {
  postgresUrl: string;
  redisUrl: string;
  symbols: number;
  rounds: number;
  /** Kafka, for the actors process of the baseline; default KAFKA_BROKERS or 127.0.0.1:9092. */
  brokers?: string;
  /** Partitions of the host and of the baseline's topic; default 12. */
  partitions?: number;
  /** Progress lines (default: none). */
  progress?: (line: string) => void;
}

const ROOT = path.resolve(__dirname, "..");
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const unique = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
/** The baseline process's warm-up traffic: this many ticks over this many symbols. */
const BASELINE_TICKS = 1000;
const BASELINE_SYMBOLS = 20;
const quiet = { info() {}, warn() {}, error: console.error, debug() {} };

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

/** Everything a run creates, removed in reverse order by `close`. */
class Stack {
  private admin: Admin | null = null;
  readonly kafka: Kafka;
  private readonly cleanups: (() => Promise<unknown>)[] = [];

  constructor(readonly o: Required<Omit<ScaleOptions, "progress">>) {
    this.kafka = new Kafka({
      clientId: "bench-scale",
      brokers: o.brokers.split(","),
      logLevel: logLevel.NOTHING,
    });
  }

  async connectedAdmin(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  async topic(): Promise<string> {
    const topic = unique("bench_scale");
    const admin = await this.connectedAdmin();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: this.o.partitions, replicationFactor: 1 }],
    });
    this.cleanups.push(() => admin.deleteTopics({ topics: [topic] }));
    return topic;
  }

  async database(): Promise<string> {
    const name = unique("bench_scale").toLowerCase();
    await this.adminSql(`CREATE DATABASE ${name}`);
    this.cleanups.push(() => this.adminSql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    return this.o.postgresUrl.replace(/\/[^/]*$/, `/${name}`);
  }

  /** The cache keys of a RedisSnapshotStore with `prefix`, one hash per partition. */
  cacheKeys(prefix: string): string[] {
    return Array.from({ length: this.o.partitions }, (_, p) => `{${prefix}:${p}}:actors`);
  }

  /** Removes the cache keys of `prefix`: the cache emptied, as a Redis without persistence restarts. */
  async dropCache(prefix: string): Promise<void> {
    const redis = new Redis(this.o.redisUrl);
    await redis.del(...this.cacheKeys(prefix)).finally(() => redis.quit());
  }

  /** Removes the cache keys of `prefix` when the run ends. */
  cleanCacheAtEnd(prefix: string): void {
    this.cleanups.push(() => this.dropCache(prefix));
  }

  async adminSql<T extends pg.QueryResultRow>(text: string): Promise<T[]> {
    const client = new pg.Client({ connectionString: this.o.postgresUrl });
    await client.connect();
    try {
      return (await client.query<T>(text)).rows;
    } finally {
      await client.end();
    }
  }

  async close(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes per actor: fresh child processes.

/** How a helper file runs: from the sources through tsx's CommonJS hook, compiled with plain node. */
function helper(file: string): { hook: string[]; script: string } {
  const ext = path.extname(__filename);
  return {
    hook: ext === ".ts" ? ["--require", "tsx/cjs"] : [],
    script: path.join(__dirname, `${file}${ext}`),
  };
}

async function runChild(symbols: number): Promise<ChildReport> {
  const { hook, script } = helper("scale-child");
  const child = spawn(process.execPath, ["--expose-gc", ...hook, script, String(symbols)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>(resolve => child.on("exit", resolve));
  const line = out.split("\n").find(l => l.startsWith("SCALE_CHILD "));
  if (code !== 0 || !line) throw new Error(`memory child exited with ${code}:\n${err}${out}`);
  return JSON.parse(line.slice("SCALE_CHILD ".length)) as ChildReport;
}

// ---------------------------------------------------------------------------------------------
// Baseline: an actors process at rest.

function rssOf(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (kb) return Number(kb[1]) * 1024;
  } catch {
    // Not Linux: ps below.
  }
  return (
    Number(
      execFileSync("ps", ["-o", "rss=", "-p", String(pid)])
        .toString()
        .trim(),
    ) * 1024
  );
}

/**
 * The RSS of an actors process (bin/start.ts, SERVICES=actors, metrics on) that owns every
 * partition of a fresh topic and has processed a few ticks (pools connected, code compiled):
 * the median of samples taken over two seconds once it caught up.
 */
interface Baseline {
  /** The median RSS sample at rest. */
  rss: number;
  /** Right after, with GC forced in the process. */
  afterGc: MemoryUsage;
}

async function baselineRss(stack: Stack): Promise<Baseline> {
  const o = stack.o;
  const topic = await stack.topic();
  const groupId = unique("bench_scale_group");
  stack.cleanCacheAtEnd(`${groupId}:${topic}`);
  const databaseUrl = await stack.database();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "",
    SERVICES: "actors",
    KAFKA_BROKERS: o.brokers,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: groupId,
    KAFKA_PARTITIONS: String(o.partitions),
    DATABASE_URL: databaseUrl,
    REDIS_URL: o.redisUrl,
    METRICS_PORT: String(await freePort()),
    DEMO_FEED: "0",
    LOG_LEVEL: "info",
    BENCH_SCALE_GC_SIGNAL: "1",
  };
  // With scale-child preloaded, SIGUSR2 forces GC and reports the memory usage.
  const start = helper("../bin/start");
  const args = ["--expose-gc", ...start.hook, "--require", helper("scale-child").script, start.script];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tail: string[] = [];
  let assigned = false;
  let afterGc: MemoryUsage | null = null;
  const read = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (!line) continue;
      if (line.startsWith("SCALE_GC ")) afterGc = JSON.parse(line.slice("SCALE_GC ".length)) as MemoryUsage;
      if (/assigned partitions \[\d/.test(line)) assigned = true;
      tail.push(line);
      if (tail.length > 50) tail.shift();
    }
  };
  child.stdout!.on("data", read);
  child.stderr!.on("data", read);
  const exited = new Promise<void>(resolve => child.on("exit", () => resolve()));
  const producer = stack.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  try {
    const deadline = Date.now() + 60000;
    while (!assigned) {
      if (child.exitCode !== null) throw new Error(`actors process exited:\n${tail.join("\n")}`);
      if (Date.now() > deadline) throw new Error(`no partition assignment in 60 s:\n${tail.join("\n")}`);
      await sleep(20);
    }
    // A little traffic, so that the process is warm: Postgres and Redis connected, code compiled.
    await producer.connect();
    const random = seededRandom(5);
    const price = new Map<string, number>();
    for (let sent = 0; sent < BASELINE_TICKS; sent += 500) {
      const messages = Array.from({ length: 500 }, (_, i) => {
        const symbol = symbolName(i % BASELINE_SYMBOLS);
        const tick = randomWalkTick(random, symbol, price.get(symbol) ?? 100, 1_700_000_000 + sent + i);
        price.set(symbol, tick.closing_price);
        return { key: symbol, value: JSON.stringify(tick) };
      });
      await producer.send({ topic, acks: -1, messages });
    }
    const admin = await stack.connectedAdmin();
    for (;;) {
      const [ends, groups] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId, topics: [topic] }),
      ]);
      // A partition with nothing committed reports -1; one that got no message has nothing to commit.
      const committed = new Map((groups[0]?.partitions ?? []).map(p => [p.partition, Number(p.offset)]));
      if (ends.every(e => Number(e.high) <= Math.max(committed.get(e.partition) ?? 0, 0))) break;
      if (child.exitCode !== null) throw new Error(`actors process exited:\n${tail.join("\n")}`);
      if (Date.now() > deadline) throw new Error(`ticks not committed in 60 s:\n${tail.join("\n")}`);
      await sleep(50);
    }
    await sleep(1000);
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      samples.push(rssOf(child.pid!));
      await sleep(200);
    }
    child.kill("SIGUSR2");
    while (afterGc === null) {
      if (child.exitCode !== null || Date.now() > deadline + 10000)
        throw new Error(`no memory report after SIGUSR2:\n${tail.join("\n")}`);
      await sleep(20);
    }
    return { rss: spread(samples).median, afterGc };
  } finally {
    await producer.disconnect().catch(() => undefined);
    if (child.exitCode === null) child.kill("SIGTERM");
    await Promise.race([exited, sleep(15000)]);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------
// Activation: records and cache entries of N symbols, then fresh hosts.

interface Fixture {
  databaseUrl: string;
  cachePrefix: string;
  /** Symbol indexes of each partition. */
  members: number[][];
  /** Each symbol's last close, to continue its random walk. */
  price: Float64Array;
  /** Each partition's next offset. */
  nextOffset: number[];
  timestamp: number;
  snapshotJsonBytes: number;
}

/** The records an ActorHost writes for these snapshots (runtime/actor-host.ts, recordsOf). */
function recordsOf(partition: number, snapshots: ActorSnapshot[]): ActorRecord[] {
  return snapshots.map(snap => ({
    symbol: snap.symbol,
    partition,
    seq: snap.seq,
    lastOffset: snap.lastOffset,
    state: JSON.stringify(snap),
  }));
}

/**
 * The state after a node ran `WARM_TICKS` ticks of every symbol: per partition, the actors run
 * in-process over interleaved offsets, and their records written as a host writes them (claim,
 * then ResultsStore.write with a fence carrying the records, 2,000 at a time, then the same
 * states to the cache). The ticks' own result rows are not written: activation does not read them.
 */
async function buildFixture(stack: Stack, db: PostgresClient, databaseUrl: string): Promise<Fixture> {
  const { symbols, partitions } = stack.o;
  const cachePrefix = unique("bench_scale_cache");
  stack.cleanCacheAtEnd(cachePrefix);
  const members: number[][] = Array.from({ length: partitions }, () => []);
  for (let i = 0; i < symbols; i++) members[partitionForKey(symbolName(i), partitions)].push(i);
  const random = seededRandom(20240601);
  const price = new Float64Array(symbols).map(() => 20 + random() * 300);
  const nextOffset = new Array<number>(partitions).fill(0);
  const start = 1_700_000_000;
  const results = new ResultsStore(db);
  // Untimed setup: a command may wait behind the busy event loop far longer than the service's 2 s.
  const snapshots = new RedisSnapshotStore(stack.o.redisUrl, cachePrefix, undefined, 60000);
  let jsonBytes = 0;
  try {
    await snapshots.ping();
    const epochs: number[] = [];
    for (let p = 0; p < partitions; p++) epochs.push(await results.claimPartition(p, "bench-scale-setup"));
    const fill = async (p: number) => {
      const indexes = members[p];
      const walk = seededRandom(20240601 + p);
      const actors = indexes.map(i => new SymbolActor(symbolName(i), SETTINGS));
      for (let t = 0; t < WARM_TICKS; t++)
        actors.forEach((actor, k) => {
          const i = indexes[k];
          const tick = randomWalkTick(walk, actor.symbol, price[i], start + t);
          price[i] = tick.closing_price;
          actor.apply(tick, nextOffset[p]++);
        });
      for (let k = 0; k < actors.length; k += 2000) {
        const records = recordsOf(
          p,
          actors.slice(k, k + 2000).map(a => a.snapshot()),
        );
        for (const r of records) jsonBytes += Buffer.byteLength(r.state);
        await results.write(emptyOutputs(p), {
          partition: p,
          epoch: epochs[p],
          actors: records,
          marks: [],
          writtenOffset: nextOffset[p] - 1,
        });
        await snapshots.save(p, records);
      }
    };
    // A few partitions at a time: the database works on one while this process builds the next,
    // and no connection waits long for the pool behind a busy event loop.
    let next = 0;
    const worker = async () => {
      while (next < partitions) await fill(next++);
    };
    await Promise.all(Array.from({ length: Math.min(4, partitions) }, worker));
  } finally {
    await snapshots.close();
  }
  return {
    databaseUrl,
    cachePrefix,
    members,
    price,
    nextOffset,
    timestamp: start + WARM_TICKS,
    snapshotJsonBytes: jsonBytes / symbols,
  };
}

interface ActivationRun {
  seconds: number;
  /** The records left pending at the last return, written after (flushDue), untimed in `seconds`. */
  flushSeconds: number;
  /** The host found the cache failing (a command timed out) at least once. */
  cacheFailed: boolean;
  /** The host's first warning (the start of a cache outage). */
  cacheFailure?: string;
  /** How late the event loop ran timers during the timed window (perf_hooks.monitorEventLoopDelay). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  restored: Map<string, number>;
  busy: number;
  apply: number;
  persist: number;
  snapshot: number;
}

/** One new tick per symbol, as one batch per partition at the offsets after the fixture's. */
function nextBatches(f: Fixture): LogBatch[] {
  const random = seededRandom(f.timestamp);
  const timestamp = f.timestamp++;
  return f.members.map((indexes, p) => {
    const first = f.nextOffset[p];
    const messages: LogMessage[] = indexes.map((i, k) => {
      const symbol = symbolName(i);
      const tick: PriceTick = randomWalkTick(random, symbol, f.price[i], timestamp);
      f.price[i] = tick.closing_price;
      return {
        partition: p,
        offset: first + k,
        key: symbol,
        value: Buffer.from(JSON.stringify(tick)),
        timestamp: Date.now(),
      };
    });
    f.nextOffset[p] += messages.length;
    return {
      partition: p,
      messages,
      highWatermark: f.nextOffset[p],
      heartbeat: async () => undefined,
      isActive: () => true,
    };
  });
}

/**
 * A fresh host, as the actors service builds it (own Postgres pool of 10 and Redis connection,
 * both connected first, as a starting node's are after its migrations), owning every partition.
 */
async function activate(stack: Stack, f: Fixture, cache: "present" | "emptied"): Promise<ActivationRun> {
  const { partitions } = stack.o;
  if (cache === "emptied") await stack.dropCache(f.cachePrefix);
  const batches = nextBatches(f);
  // The previous round's host and actors are garbage: collected now, as a fresh process has none.
  collectGarbage();
  const db = new PostgresClient(f.databaseUrl, 10);
  const snapshots = new RedisSnapshotStore(stack.o.redisUrl, f.cachePrefix);
  const run: ActivationRun = {
    seconds: 0,
    flushSeconds: 0,
    loopDelayP99Ms: 0,
    loopDelayMaxMs: 0,
    cacheFailed: false,
    restored: new Map(),
    busy: 0,
    apply: 0,
    persist: 0,
    snapshot: 0,
  };
  let inWindow = true;
  try {
    await Promise.all([db.query("SELECT 1"), snapshots.ping()]);
    const host = new ActorHost({
      settings: SETTINGS,
      results: new ResultsStore(db),
      snapshots,
      commit: async () => undefined,
      partitionCount: partitions,
      // The service's defaults (lib/config.ts): ACTOR_IDLE_MS, RETRY_MAX_BACKOFF_MS, STATE_RECORD_INTERVAL_MS.
      idleMs: 300_000,
      retryMaxBackoffMs: 10_000,
      recordIntervalMs: 1000,
      logger: {
        ...quiet,
        // The first line of a cache outage says which command failed, and how.
        warn: (...args: unknown[]) => (run.cacheFailure ??= args.map(String).join(" ")),
      },
      owner: "bench-scale",
      observer: {
        restored: (_p: number, source: RestoreSource, reason: RestoreReason, n: number) =>
          run.restored.set(`${source}/${reason}`, (run.restored.get(`${source}/${reason}`) ?? 0) + n),
        applied: (_n, seconds) => (run.apply += inWindow ? seconds : 0),
        persisted: seconds => (run.persist += inWindow ? seconds : 0),
        snapshotted: seconds => (run.snapshot += inWindow ? seconds : 0),
        cache: up => (run.cacheFailed ||= !up),
      },
    });
    host.onAssignment(
      batches.map(b => b.partition),
      1,
    );
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const started = performance.now();
    const done = await Promise.all(
      batches.map(async b => {
        const t0 = performance.now();
        const n = await host.handleBatch(b, 1);
        run.busy += (performance.now() - t0) / 1000;
        return n;
      }),
    );
    run.seconds = (performance.now() - started) / 1000;
    inWindow = false;
    loop.disable();
    run.loopDelayP99Ms = loop.percentile(99) / 1e6;
    run.loopDelayMaxMs = loop.max / 1e6;
    batches.forEach((b, i) => {
      if (done[i] !== b.messages.length)
        throw new Error(`partition ${b.partition}: ${done[i]} of ${b.messages.length} messages done`);
    });
    // States the host has not recorded yet (it records every STATE_RECORD_INTERVAL_MS) are
    // recorded now, as the service's timer or its shutdown would: timed apart, and the next
    // round finds records and cache entries that are the actors' latest states.
    const flushStarted = performance.now();
    await host.flushDue(true);
    run.flushSeconds = (performance.now() - flushStarted) / 1000;
    return run;
  } finally {
    await snapshots.close();
    await db.close();
  }
}

/**
 * Puts every recorded state into the cache again, as the records hold them: a run in which the
 * host found the cache failing skipped some cache writes, and left entries behind the records.
 */
async function refillCache(stack: Stack, f: Fixture): Promise<void> {
  const db = new PostgresClient(f.databaseUrl, 2);
  const snapshots = new RedisSnapshotStore(stack.o.redisUrl, f.cachePrefix, undefined, 60000);
  try {
    for (let p = 0; p < stack.o.partitions; p++) {
      const { rows } = await db.query<{ symbol: string; state: string }>(
        "SELECT symbol, state FROM actor_state WHERE partition = $1",
        [p],
      );
      await snapshots.save(p, rows);
    }
  } finally {
    await snapshots.close();
    await db.close();
  }
}

/** A full GC in this process, without --expose-gc on its command line. */
function collectGarbage(): void {
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}

function shares(runs: ActivationRun[]): PhaseShares {
  const sum = (pick: (r: ActivationRun) => number) => runs.reduce((s, r) => s + pick(r), 0);
  const busy = sum(r => r.busy);
  const postgres = sum(r => r.persist) / busy;
  const cacheWrite = sum(r => r.snapshot) / busy;
  const apply = sum(r => r.apply) / busy;
  return { postgres, cacheWrite, apply, rest: 1 - postgres - cacheWrite - apply };
}

function restoredTotals(runs: ActivationRun[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of runs) for (const [k, n] of r.restored) out[k] = (out[k] ?? 0) + n;
  return out;
}

async function environment(stack: Stack): Promise<string[]> {
  const cpus = os.cpus();
  const [pgVersion] = await stack.adminSql<{ v: string }>("SELECT current_setting('server_version') AS v");
  const redis = new Redis(stack.o.redisUrl);
  const info = await redis.info("server").finally(() => redis.quit());
  return [
    `machine ${cpus.length} x ${cpus[0]?.model ?? "cpu"}, ${fmt(os.totalmem() / GiB, 1)} GiB RAM, load ${os
      .loadavg()
      .map(l => l.toFixed(2))
      .join(
        " ",
      )}; node ${process.version}; Postgres ${pgVersion.v}, Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? "?"}, loopback`,
  ];
}

export async function benchScale(o: ScaleOptions): Promise<ScaleResult> {
  if (!(Number.isSafeInteger(o.symbols) && o.symbols >= 1 && Number.isSafeInteger(o.rounds) && o.rounds >= 1))
    throw new RangeError("symbols and rounds must be positive whole numbers");
  // Symbols must be valid tickers, or every message would be a dead letter and nothing measured.
  const longest = symbolName(o.symbols - 1);
  const probe = randomWalkTick(seededRandom(1), longest, 100, 1_700_000_000);
  if (!parseMessage(probe).ok) throw new Error(`symbol ${longest} is not a valid ticker`);
  const begun = performance.now();
  const progress = (line: string) =>
    o.progress?.(`${((performance.now() - begun) / 1000).toFixed(1).padStart(6)} s  ${line}`);
  const stack = new Stack({
    postgresUrl: o.postgresUrl,
    redisUrl: o.redisUrl,
    symbols: o.symbols,
    rounds: o.rounds,
    brokers: o.brokers ?? process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
    partitions: o.partitions ?? 12,
  });
  try {
    const env = await environment(stack);
    // Memory is measured while the records are built: none of it is timed, and RSS after forced
    // GC does not depend on the load. The activation rounds then run alone.
    const childRuns = Math.max(3, o.rounds);
    const memory = (async () => {
      const children: ChildReport[] = [];
      for (let i = 0; i < childRuns; i++) {
        progress(`memory: child process ${i + 1} of ${childRuns}, ${fmt(o.symbols)} actors`);
        children.push(await runChild(o.symbols));
      }
      return children;
    })();
    // The baseline process mostly waits (for Kafka's group join): it runs beside the children.
    const baseline = (async () => {
      progress("baseline: an actors process at rest");
      const rss = await baselineRss(stack);
      progress("baseline measured");
      return rss;
    })();
    const setup = (async () => {
      progress(`activation: records and cache entries of ${fmt(o.symbols)} symbols`);
      const databaseUrl = await stack.database();
      const setupDb = new PostgresClient(databaseUrl, 10);
      try {
        await migrate(setupDb);
        const fixture = await buildFixture(stack, setupDb, databaseUrl);
        progress("records and cache entries in place");
        return fixture;
      } finally {
        await setupDb.close();
      }
    })();
    // All settle before a failure is reported, so that nothing still runs during the cleanup.
    const [memoryDone, baselineDone, setupDone] = await Promise.allSettled([memory, baseline, setup]);
    for (const done of [memoryDone, baselineDone, setupDone])
      if (done.status === "rejected") throw done.reason as Error;
    const children = (memoryDone as PromiseFulfilledResult<ChildReport[]>).value;
    const baselineMeasure = (baselineDone as PromiseFulfilledResult<Baseline>).value;
    const baselineRssBytes = baselineMeasure.rss;
    const fixture = (setupDone as PromiseFulfilledResult<Fixture>).value;
    progress("memory, baseline and records done");
    const per = (pick: (c: ChildReport) => number) => children.map(c => pick(c) / c.symbols);
    const bytesPerActorRss = spread(per(c => c.after.rss - c.before.rss));

    const runs: Record<"present" | "emptied", ActivationRun[]> = { present: [], emptied: [] };
    let cacheBehind = false;
    let refills = 0;
    for (let round = 0; round < o.rounds; round++) {
      // Alternating which goes first, so that neither always meets the colder server.
      const order = round % 2 === 0 ? (["present", "emptied"] as const) : (["emptied", "present"] as const);
      for (const cache of order) {
        if (cache === "present" && cacheBehind) {
          progress("activation: refilling the cache from the records");
          await refillCache(stack, fixture);
          refills += 1;
        }
        progress(`activation: round ${round + 1} of ${o.rounds}, cache ${cache}`);
        const run = await activate(stack, fixture, cache);
        progress(
          `  ${run.seconds.toFixed(2)} s (then ${run.flushSeconds.toFixed(2)} s to record the rest); restored ${[...run.restored].map(([k, n]) => `${k} ${fmt(n)}`).join(", ")}` +
            `; event loop delay max ${fmt(run.loopDelayMaxMs)} ms` +
            (run.cacheFailed ? "; the host found the cache failing" : ""),
        );
        cacheBehind = run.cacheFailed;
        runs[cache].push(run);
      }
    }

    return {
      symbols: o.symbols,
      rounds: o.rounds,
      partitions: stack.o.partitions,
      warmTicks: WARM_TICKS,
      bytesPerActorRss,
      heapBytesPerActor: spread(per(c => c.after.heapUsed - c.before.heapUsed)).median,
      arrayBufferBytesPerActor: spread(per(c => c.after.arrayBuffers - c.before.arrayBuffers)).median,
      heapBytesPerHeldSnapshot: spread(per(c => c.withSnapshots.heapUsed - c.after.heapUsed)).median,
      snapshotJsonBytes: fixture.snapshotJsonBytes,
      childBaseRssBytes: spread(children.map(c => c.before.rss)).median,
      activationFromCacheSeconds: spread(runs.present.map(r => r.seconds)),
      activationFromPostgresSeconds: spread(runs.emptied.map(r => r.seconds)),
      pendingRecordFlushSeconds: spread([...runs.present, ...runs.emptied].map(r => r.flushSeconds)),
      restoredInCacheRuns: restoredTotals(runs.present),
      restoredInPostgresRuns: restoredTotals(runs.emptied),
      cacheFailures: {
        present: runs.present.filter(r => r.cacheFailed).length,
        emptied: runs.emptied.filter(r => r.cacheFailed).length,
      },
      cacheRefills: refills,
      eventLoopDelayP99Ms: spread([...runs.present, ...runs.emptied].map(r => r.loopDelayP99Ms)).median,
      eventLoopDelayMaxMs: Math.max(...[...runs.present, ...runs.emptied].map(r => r.loopDelayMaxMs)),
      firstCacheFailure:
        [...runs.present, ...runs.emptied].find(r => r.cacheFailure !== undefined)?.cacheFailure ?? null,
      phasesFromCache: shares(runs.present),
      phasesFromPostgres: shares(runs.emptied),
      baselineRssBytes,
      baselineRssAfterGcBytes: baselineMeasure.afterGc.rss,
      baselineHeapUsedAfterGcBytes: baselineMeasure.afterGc.heapUsed,
      baselineTicks: BASELINE_TICKS,
      baselineSymbols: BASELINE_SYMBOLS,
      symbolsPerGiB: Math.max(0, Math.floor((GiB - baselineRssBytes) / bytesPerActorRss.median)),
      environment: env,
    };
  } finally {
    progress("removing the databases, topic and Redis keys");
    await stack.close();
    progress("done");
  }
}

export function printScale(r: ScaleResult, log: (line: string) => void): void {
  const s = (x: Spread, digits: number, unit: string) =>
    `median ${fmt(x.median, digits)}${unit} (min ${fmt(x.min, digits)}, max ${fmt(x.max, digits)})`;
  const pct = (a: number, b: number) => `${(a * 100).toFixed(0)}% / ${(b * 100).toFixed(0)}%`;
  const sources = (counts: Record<string, number>) =>
    Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${fmt(n)}`)
      .join(", ");
  const mib = (bytes: number) => `${fmt(bytes / MiB, 1)} MiB`;
  const thousands = (n: number) => fmt(Math.round(n / 1000) * 1000);
  const c = r.phasesFromCache;
  const p = r.phasesFromPostgres;

  log(
    `(e) memory and scale: ${fmt(r.symbols)} symbols, SMA ${SETTINGS.smaPeriod} / EMA ${SETTINGS.emaPeriod} / RSI ${SETTINGS.rsiPeriod}, ` +
      `${r.warmTicks} ticks per actor (windows full)`,
  );
  for (const line of r.environment) log(`  ${line}`);
  log(
    `  memory per live actor (fresh child process, RSS after forced GC): ${s(r.bytesPerActorRss, 0, " bytes")}`,
  );
  log(
    `    of which V8 heap ${fmt(r.heapBytesPerActor)} bytes, typed-array backing stores ${fmt(r.arrayBufferBytesPerActor)} bytes; ` +
      `not included: a touched actor's snapshot held until the next record, ${fmt(r.heapBytesPerHeldSnapshot)} bytes of heap, ` +
      `and its JSON, ${fmt(r.snapshotJsonBytes)} bytes`,
  );
  log(
    `  actors process at rest (bin/start.ts through tsx, SERVICES=actors, ${r.partitions} partitions, after ${fmt(r.baselineTicks)} ticks): ` +
      `RSS ${mib(r.baselineRssBytes)} (${mib(r.baselineRssAfterGcBytes)} after forced GC, heapUsed ${mib(r.baselineHeapUsedAfterGcBytes)})`,
  );
  log(
    `  symbols per node in 1 GiB: ~${thousands(r.symbolsPerGiB)}, derived, not measured: (1 GiB - ${mib(r.baselineRssBytes)}) / ` +
      `${fmt(r.bytesPerActorRss.median)} bytes, with no headroom for batches in flight, held snapshots or GC slack`,
  );
  log(
    `  activation of ${fmt(r.symbols)} recorded symbols: a fresh ActorHost (${r.partitions} partitions) handed one batch per partition, ` +
      `one new tick per symbol;`,
  );
  log(`  first handleBatch to last return, ${r.rounds} rounds interleaved:`);
  log(
    `    cache present: ${s(r.activationFromCacheSeconds, 2, " s")}, ${fmt(r.symbols / r.activationFromCacheSeconds.median)} symbols/s; ` +
      `restored ${sources(r.restoredInCacheRuns)}`,
  );
  log(
    `    cache emptied: ${s(r.activationFromPostgresSeconds, 2, " s")}, ${fmt(r.symbols / r.activationFromPostgresSeconds.median)} symbols/s; ` +
      `restored ${sources(r.restoredInPostgresRuns)}`,
  );
  log(
    `    emptied / present ${(r.activationFromPostgresSeconds.median / r.activationFromCacheSeconds.median).toFixed(2)}; ` +
      `records still pending at the last return, written after it (untimed): ${s(r.pendingRecordFlushSeconds, 2, " s")}`,
  );
  log(
    `    event loop delay during the timed windows: p99 ${fmt(r.eventLoopDelayP99Ms)} ms (median run), max ${fmt(r.eventLoopDelayMaxMs)} ms`,
  );
  log(
    `    partition loops' summed time, present / emptied: Postgres transactions ${pct(c.postgres, p.postgres)}, ` +
      `cache writes ${pct(c.cacheWrite, p.cacheWrite)}, apply ${pct(c.apply, p.apply)}, ` +
      `the rest (activation reads, restore, parsing) ${pct(c.rest, p.rest)}`,
  );
  if (r.cacheFailures.present + r.cacheFailures.emptied > 0)
    log(
      `    note: the host found Redis failing (a command past its 2 s timeout) in ${r.cacheFailures.present} of ${r.rounds} cache-present ` +
        `and ${r.cacheFailures.emptied} of ${r.rounds} emptied runs, and then read from Postgres, as in production; ` +
        `the cache was refilled from the records (untimed) before ${r.cacheRefills} run(s); first warning: ${r.firstCacheFailure}`,
    );
}

function parseArgs(argv: string[]): ScaleOptions {
  const o: ScaleOptions = {
    symbols: 100_000,
    rounds: 3,
    partitions: 12,
    postgresUrl: process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
    redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    brokers: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
  };
  const names: Record<string, "symbols" | "rounds" | "partitions"> = {
    "--symbols": "symbols",
    "--rounds": "rounds",
    "--partitions": "partitions",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    const value = Number(argv[i + 1]);
    if (!key) throw new Error(`unknown option ${argv[i]} (known: ${Object.keys(names).join(", ")})`);
    if (!Number.isSafeInteger(value) || value < 1)
      throw new Error(`${argv[i]} needs a positive whole number`);
    o[key] = value;
  }
  return o;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const r = await benchScale({ ...o, progress: line => console.error(`  ... ${line}`) });
  printScale(r, line => console.log(line));
  console.error(`  (bench took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
}

if (require.main === module) {
  main().catch(err => {
    console.error(err);
    process.exitCode = 1;
  });
}
