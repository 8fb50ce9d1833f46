import path from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import type { LogBatch, LogMessage } from "../adapters/log/types";
import { RedisSnapshotStore } from "../adapters/snapshots/redis-snapshots";
import { migrate } from "../adapters/sql/migrate";
import { PostgresClient } from "../adapters/sql/postgres-client";
import { parseMessage, type PriceTick } from "../domain/messages";
import { SymbolActor } from "../domain/symbol-actor";
import { freePort } from "../lib/net";
import { partitionForKey } from "../lib/partitioner";
import type { ActorHost } from "../runtime/host/actor-host";
import { emptyOutputs } from "../runtime/batch-outputs";
import { ResultsStore, type ActorRecord } from "../runtime/store/results-store";
import { ActorsProcess, ROOT, actorsEnv } from "./harness/actors-process";
import { parseOptions } from "./harness/args";
import { GiB, MiB, fmt, medianMinMax, spread, type Spread } from "./harness/figures";
import { machine } from "./harness/print";
import { directHost, logBatch, phaseObserver, quietLogger, type PhaseTimes } from "./harness/host";
import { rssOf, runNode } from "./harness/proc";
import { BenchStack, serversFromEnv, unique } from "./harness/stack";
import { SETTINGS, randomWalkTick, seededRandom } from "./harness/ticks";
import { WARM_TICKS, symbolName, type ChildReport, type MemoryUsage } from "./scale-child";

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

/** ScaleOptions with every default filled in. */
type ScaleRun = Required<ScaleOptions>;

/** The baseline process's warm-up traffic: this many ticks over this many symbols. */
const BASELINE_TICKS = 1000;
const BASELINE_SYMBOLS = 20;
/** The timestamp (s) of the first tick of the fixture and of the warm-up traffic. */
const FIRST_TIMESTAMP = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// Bytes per actor: fresh child processes.

async function runChild(symbols: number): Promise<ChildReport> {
  const script = path.join(__dirname, "scale-child.ts");
  const { code, out, err } = await runNode(
    ["--expose-gc", "--require", "tsx/cjs", script, String(symbols)],
    ROOT,
  );
  const line = out.split("\n").find(l => l.startsWith("SCALE_CHILD "));
  if (code !== 0 || !line) throw new Error(`memory child exited with ${code}:\n${err}${out}`);
  return JSON.parse(line.slice("SCALE_CHILD ".length)) as ChildReport;
}

// ---------------------------------------------------------------------------------------------
// Baseline: an actors process at rest.

interface Baseline {
  /** The median RSS sample at rest. */
  rss: number;
  /** Right after, with GC forced in the process. */
  afterGc: MemoryUsage;
}

/**
 * The RSS of an actors process (bin/start.ts, SERVICES=actors, metrics on) that owns every
 * partition of a fresh topic and has processed a few ticks (pools connected, code compiled):
 * the median of samples taken over two seconds once it caught up.
 */
async function baselineRss(stack: BenchStack, o: ScaleRun): Promise<Baseline> {
  const topic = await stack.topic("bench_scale");
  const groupId = unique("bench_scale_group");
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(`${groupId}:${topic}`)));
  const databaseUrl = await stack.database("bench_scale");
  let afterGc: MemoryUsage | null = null;
  const actors = new ActorsProcess({
    env: {
      ...actorsEnv(o, { topic, groupId, partitions: o.partitions, databaseUrl }),
      METRICS_PORT: String(await freePort()),
      BENCH_SCALE_GC_SIGNAL: "1",
    },
    // With scale-child preloaded, SIGUSR2 forces GC and reports the memory usage.
    nodeArgs: ["--expose-gc", "--require", "tsx/cjs", "--require", path.join(__dirname, "scale-child.ts")],
    onLine: line => {
      if (line.startsWith("SCALE_GC ")) afterGc = JSON.parse(line.slice("SCALE_GC ".length)) as MemoryUsage;
    },
  });
  try {
    const deadline = Date.now() + 60000;
    await actors.waitForAssignment(60000);
    await stack.send(topic, warmUpTicks());
    await stack.untilCommitted(topic, groupId, () =>
      actors.assertAlive(deadline, "ticks not committed in 60 s"),
    );
    await sleep(1000);
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      samples.push(rssOf(actors.pid));
      await sleep(200);
    }
    actors.signal("SIGUSR2");
    while (afterGc === null) {
      actors.assertAlive(deadline + 10000, "no memory report after SIGUSR2");
      await sleep(20);
    }
    return { rss: spread(samples).median, afterGc };
  } finally {
    await actors.stop(15000);
  }
}

/** A little traffic, so that the process is warm: Postgres and Redis connected, code compiled. */
function warmUpTicks(): PriceTick[] {
  const random = seededRandom(5);
  const price = new Map<string, number>();
  return Array.from({ length: BASELINE_TICKS }, (_, n) => {
    const symbol = symbolName(n % BASELINE_SYMBOLS);
    const tick = randomWalkTick(random, symbol, price.get(symbol) ?? 100, FIRST_TIMESTAMP + n);
    price.set(symbol, tick.closing_price);
    return tick;
  });
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

/**
 * The state after a node ran `WARM_TICKS` ticks of every symbol: per partition, the actors run
 * in-process over interleaved offsets, and their records written as a host writes them (claim,
 * then ResultsStore.write with a fence carrying the records, 2,000 at a time, then the same
 * states to the cache). The ticks' own result rows are not written: activation does not read them.
 */
async function buildFixture(stack: BenchStack, o: ScaleRun, db: PostgresClient, databaseUrl: string) {
  const cachePrefix = unique("bench_scale_cache");
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(cachePrefix)));
  const members: number[][] = Array.from({ length: o.partitions }, () => []);
  for (let i = 0; i < o.symbols; i++) members[partitionForKey(symbolName(i), o.partitions)].push(i);
  const random = seededRandom(20240601);
  const price = new Float64Array(o.symbols).map(() => 20 + random() * 300);
  const nextOffset = new Array<number>(o.partitions).fill(0);
  const timestamp = FIRST_TIMESTAMP + WARM_TICKS;
  const f: Fixture = {
    databaseUrl,
    cachePrefix,
    members,
    price,
    nextOffset,
    timestamp,
    snapshotJsonBytes: 0,
  };
  const results = new ResultsStore(db);
  // Untimed setup: a command may wait behind the busy event loop far longer than the service's 2 s.
  const snapshots = new RedisSnapshotStore(o.redisUrl, cachePrefix, undefined, 60000);
  try {
    await snapshots.ping();
    const epochs: number[] = [];
    for (let p = 0; p < o.partitions; p++) epochs.push(await results.claimPartition(p, "bench-scale-setup"));
    // A few partitions at a time: the database works on one while this process builds the next,
    // and no connection waits long for the pool behind a busy event loop.
    let next = 0;
    const worker = async () => {
      for (let p = next++; p < o.partitions; p = next++)
        f.snapshotJsonBytes += await recordPartition(f, p, epochs[p], results, snapshots);
    };
    await Promise.all(Array.from({ length: Math.min(4, o.partitions) }, worker));
  } finally {
    await snapshots.close();
  }
  f.snapshotJsonBytes /= o.symbols;
  return f;
}

/** Warms partition `p`'s actors and records their states; returns the bytes of JSON recorded. */
async function recordPartition(
  f: Fixture,
  p: number,
  epoch: number,
  results: ResultsStore,
  snapshots: RedisSnapshotStore,
): Promise<number> {
  const indexes = f.members[p];
  const walk = seededRandom(20240601 + p);
  const actors = indexes.map(i => new SymbolActor(symbolName(i), SETTINGS));
  for (let t = 0; t < WARM_TICKS; t++)
    actors.forEach((actor, k) => {
      const i = indexes[k];
      const tick = randomWalkTick(walk, actor.symbol, f.price[i], FIRST_TIMESTAMP + t);
      f.price[i] = tick.closing_price;
      actor.apply(tick, f.nextOffset[p]++);
    });
  let jsonBytes = 0;
  for (let k = 0; k < actors.length; k += 2000) {
    // The table's record of each state (actor_state), built from the actor's own snapshot.
    const records = actors.slice(k, k + 2000).map((actor): ActorRecord => {
      const snap = actor.snapshot();
      return {
        symbol: snap.symbol,
        partition: p,
        seq: snap.seq,
        lastOffset: snap.lastOffset,
        state: JSON.stringify(snap),
      };
    });
    for (const r of records) jsonBytes += Buffer.byteLength(r.state);
    const fence = { partition: p, epoch, actors: records, marks: [], writtenOffset: f.nextOffset[p] - 1 };
    await results.write(emptyOutputs(p), fence);
    await snapshots.save(p, records);
  }
  return jsonBytes;
}

interface ActivationRun extends PhaseTimes {
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
      const value = Buffer.from(JSON.stringify(tick));
      return { partition: p, offset: first + k, key: symbol, value, timestamp: Date.now() };
    });
    f.nextOffset[p] += messages.length;
    return logBatch(p, messages, f.nextOffset[p]);
  });
}

/**
 * A fresh host, as the actors service builds it (own Postgres pool of 10 and Redis connection,
 * both connected first, as a starting node's are after its migrations), owning every partition.
 */
async function activate(stack: BenchStack, o: ScaleRun, f: Fixture, cache: "present" | "emptied") {
  if (cache === "emptied") await stack.dropKeys(stack.cacheKeys(f.cachePrefix));
  const batches = nextBatches(f);
  // The previous round's host and actors are garbage: collected now, as a fresh process has none.
  collectGarbage();
  const db = new PostgresClient(f.databaseUrl, 10);
  const snapshots = new RedisSnapshotStore(o.redisUrl, f.cachePrefix);
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
    const host = activationHost(o, db, snapshots, run, () => inWindow);
    host.onAssignment(
      batches.map(b => b.partition),
      1,
    );
    await timedWindow(host, batches, run);
    inWindow = false;
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

function activationHost(
  o: ScaleRun,
  db: PostgresClient,
  snapshots: RedisSnapshotStore,
  run: ActivationRun,
  inWindow: () => boolean,
): ActorHost {
  return directHost({
    results: new ResultsStore(db),
    snapshots,
    partitionCount: o.partitions,
    // The service's defaults (lib/config.ts): ACTOR_IDLE_MS, RETRY_MAX_BACKOFF_MS, STATE_RECORD_INTERVAL_MS.
    idleMs: 300_000,
    retryMaxBackoffMs: 10_000,
    recordIntervalMs: 1000,
    logger: {
      ...quietLogger,
      // The first line of a cache outage says which command failed, and how.
      warn: (...args: unknown[]) => (run.cacheFailure ??= args.map(String).join(" ")),
    },
    owner: "bench-scale",
    observer: {
      ...phaseObserver(run, inWindow),
      restored: (_p, source, reason, n) =>
        run.restored.set(`${source}/${reason}`, (run.restored.get(`${source}/${reason}`) ?? 0) + n),
      cache: up => (run.cacheFailed ||= !up),
    },
  });
}

/** Every partition's batch handed to the host at once, timed from the first call to the last return. */
async function timedWindow(host: ActorHost, batches: LogBatch[], run: ActivationRun): Promise<void> {
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
  loop.disable();
  run.loopDelayP99Ms = loop.percentile(99) / 1e6;
  run.loopDelayMaxMs = loop.max / 1e6;
  batches.forEach((b, i) => {
    if (done[i] !== b.messages.length)
      throw new Error(`partition ${b.partition}: ${done[i]} of ${b.messages.length} messages done`);
  });
}

/**
 * Puts every recorded state into the cache again, as the records hold them: a run in which the
 * host found the cache failing skipped some cache writes, and left entries behind the records.
 */
async function refillCache(o: ScaleRun, f: Fixture): Promise<void> {
  const db = new PostgresClient(f.databaseUrl, 2);
  const snapshots = new RedisSnapshotStore(o.redisUrl, f.cachePrefix, undefined, 60000);
  try {
    for (let p = 0; p < o.partitions; p++) {
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

/** The activation rounds, the cache present and emptied in alternating order. */
async function activationRounds(stack: BenchStack, o: ScaleRun, fixture: Fixture) {
  const runs: Record<"present" | "emptied", ActivationRun[]> = { present: [], emptied: [] };
  let cacheBehind = false;
  let refills = 0;
  for (let round = 0; round < o.rounds; round++) {
    // Alternating which goes first, so that neither always meets the colder server.
    const order = round % 2 === 0 ? (["present", "emptied"] as const) : (["emptied", "present"] as const);
    for (const cache of order) {
      if (cache === "present" && cacheBehind) {
        o.progress("activation: refilling the cache from the records");
        await refillCache(o, fixture);
        refills += 1;
      }
      o.progress(`activation: round ${round + 1} of ${o.rounds}, cache ${cache}`);
      const run = await activate(stack, o, fixture, cache);
      o.progress(
        `  ${run.seconds.toFixed(2)} s (then ${run.flushSeconds.toFixed(2)} s to record the rest); restored ${[...run.restored].map(([k, n]) => `${k} ${fmt(n)}`).join(", ")}` +
          `; event loop delay max ${fmt(run.loopDelayMaxMs)} ms` +
          (run.cacheFailed ? "; the host found the cache failing" : ""),
      );
      cacheBehind = run.cacheFailed;
      runs[cache].push(run);
    }
  }
  return { ...runs, refills };
}

async function environment(stack: BenchStack): Promise<string[]> {
  const v = await stack.serverVersions();
  return [
    `machine ${machine.cpus()}, ${machine.memory()}, load ${machine.load()}; node ${process.version}; Postgres ${v.postgres}, Redis ${v.redis}, loopback`,
  ];
}

/**
 * Memory is measured while the records are built: none of it is timed, and RSS after forced GC
 * does not depend on the load. The activation rounds then run alone.
 */
async function measureWhileRecording(stack: BenchStack, o: ScaleRun) {
  const childRuns = Math.max(3, o.rounds);
  const memory = (async () => {
    const children: ChildReport[] = [];
    for (let i = 0; i < childRuns; i++) {
      o.progress(`memory: child process ${i + 1} of ${childRuns}, ${fmt(o.symbols)} actors`);
      children.push(await runChild(o.symbols));
    }
    return children;
  })();
  // The baseline process mostly waits (for Kafka's group join): it runs beside the children.
  const baseline = (async () => {
    o.progress("baseline: an actors process at rest");
    const rss = await baselineRss(stack, o);
    o.progress("baseline measured");
    return rss;
  })();
  const fixture = (async () => {
    o.progress(`activation: records and cache entries of ${fmt(o.symbols)} symbols`);
    const databaseUrl = await stack.database("bench_scale");
    const setupDb = new PostgresClient(databaseUrl, 10);
    try {
      await migrate(setupDb);
      const built = await buildFixture(stack, o, setupDb, databaseUrl);
      o.progress("records and cache entries in place");
      return built;
    } finally {
      await setupDb.close();
    }
  })();
  // All settle before a failure is reported, so that nothing still runs during the cleanup.
  await Promise.allSettled([memory, baseline, fixture]);
  return { children: await memory, baseline: await baseline, fixture: await fixture };
}

/** The options, checked, with their defaults. */
function scaleRun(o: ScaleOptions): ScaleRun {
  if (!(Number.isSafeInteger(o.symbols) && o.symbols >= 1 && Number.isSafeInteger(o.rounds) && o.rounds >= 1))
    throw new RangeError("symbols and rounds must be positive whole numbers");
  // Symbols must be valid tickers, or every message would be a dead letter and nothing measured.
  const longest = symbolName(o.symbols - 1);
  const probe = randomWalkTick(seededRandom(1), longest, 100, FIRST_TIMESTAMP);
  if (!parseMessage(probe).ok) throw new Error(`symbol ${longest} is not a valid ticker`);
  const begun = performance.now();
  const progress = (line: string) =>
    o.progress?.(`${((performance.now() - begun) / 1000).toFixed(1).padStart(6)} s  ${line}`);
  const brokers = o.brokers ?? serversFromEnv().brokers;
  return { ...o, brokers, partitions: o.partitions ?? 12, progress };
}

export async function benchScale(options: ScaleOptions): Promise<ScaleResult> {
  const o = scaleRun(options);
  const stack = new BenchStack(o, o.partitions, "bench-scale");
  try {
    const env = await environment(stack);
    const { children, baseline, fixture } = await measureWhileRecording(stack, o);
    o.progress("memory, baseline and records done");
    const runs = await activationRounds(stack, o, fixture);
    return scaleResult(o, { environment: env, children, baseline, fixture, runs });
  } finally {
    o.progress("removing the databases, topic and Redis keys");
    await stack.close();
    o.progress("done");
  }
}

function scaleResult(
  o: ScaleRun,
  m: {
    environment: string[];
    children: ChildReport[];
    baseline: Baseline;
    fixture: Fixture;
    runs: Record<"present" | "emptied", ActivationRun[]> & { refills: number };
  },
): ScaleResult {
  const { present, emptied } = m.runs;
  const all = [...present, ...emptied];
  const per = (pick: (c: ChildReport) => number) => spread(m.children.map(c => pick(c) / c.symbols));
  const bytesPerActorRss = per(c => c.after.rss - c.before.rss);
  return {
    symbols: o.symbols,
    rounds: o.rounds,
    partitions: o.partitions,
    warmTicks: WARM_TICKS,
    bytesPerActorRss,
    heapBytesPerActor: per(c => c.after.heapUsed - c.before.heapUsed).median,
    arrayBufferBytesPerActor: per(c => c.after.arrayBuffers - c.before.arrayBuffers).median,
    heapBytesPerHeldSnapshot: per(c => c.withSnapshots.heapUsed - c.after.heapUsed).median,
    snapshotJsonBytes: m.fixture.snapshotJsonBytes,
    childBaseRssBytes: spread(m.children.map(c => c.before.rss)).median,
    activationFromCacheSeconds: spread(present.map(r => r.seconds)),
    activationFromPostgresSeconds: spread(emptied.map(r => r.seconds)),
    pendingRecordFlushSeconds: spread(all.map(r => r.flushSeconds)),
    restoredInCacheRuns: restoredTotals(present),
    restoredInPostgresRuns: restoredTotals(emptied),
    cacheFailures: {
      present: present.filter(r => r.cacheFailed).length,
      emptied: emptied.filter(r => r.cacheFailed).length,
    },
    cacheRefills: m.runs.refills,
    eventLoopDelayP99Ms: spread(all.map(r => r.loopDelayP99Ms)).median,
    eventLoopDelayMaxMs: Math.max(...all.map(r => r.loopDelayMaxMs)),
    firstCacheFailure: all.find(r => r.cacheFailure !== undefined)?.cacheFailure ?? null,
    phasesFromCache: shares(present),
    phasesFromPostgres: shares(emptied),
    baselineRssBytes: m.baseline.rss,
    baselineRssAfterGcBytes: m.baseline.afterGc.rss,
    baselineHeapUsedAfterGcBytes: m.baseline.afterGc.heapUsed,
    baselineTicks: BASELINE_TICKS,
    baselineSymbols: BASELINE_SYMBOLS,
    symbolsPerGiB: Math.max(0, Math.floor((GiB - m.baseline.rss) / bytesPerActorRss.median)),
    environment: m.environment,
  };
}

export function printScale(r: ScaleResult, log: (line: string) => void): void {
  const s = medianMinMax;
  const pct = (a: number, b: number) => `${(a * 100).toFixed(0)}% / ${(b * 100).toFixed(0)}%`;
  const sources = (counts: Record<string, number>) =>
    Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${fmt(n)}`)
      .join(", ");
  const mib = (bytes: number) => `${fmt(bytes / MiB, 1)} MiB`;
  const thousands = (n: number) => fmt(Math.round(n / 1000) * 1000);
  const [c, p] = [r.phasesFromCache, r.phasesFromPostgres];
  const [present, emptied] = [r.activationFromCacheSeconds, r.activationFromPostgresSeconds];
  const failures = r.cacheFailures;
  [
    `(e) memory and scale: ${fmt(r.symbols)} symbols, SMA ${SETTINGS.smaPeriod} / EMA ${SETTINGS.emaPeriod} / RSI ${SETTINGS.rsiPeriod}, ` +
      `${r.warmTicks} ticks per actor (windows full)`,
    ...r.environment.map(line => `  ${line}`),
    `  memory per live actor (fresh child process, RSS after forced GC): ${s(r.bytesPerActorRss, 0, " bytes")}`,
    `    of which V8 heap ${fmt(r.heapBytesPerActor)} bytes, typed-array backing stores ${fmt(r.arrayBufferBytesPerActor)} bytes; ` +
      `not included: a touched actor's snapshot held until the next record, ${fmt(r.heapBytesPerHeldSnapshot)} bytes of heap, ` +
      `and its JSON, ${fmt(r.snapshotJsonBytes)} bytes`,
    `  actors process at rest (bin/start.ts through tsx, SERVICES=actors, ${r.partitions} partitions, after ${fmt(r.baselineTicks)} ticks): ` +
      `RSS ${mib(r.baselineRssBytes)} (${mib(r.baselineRssAfterGcBytes)} after forced GC, heapUsed ${mib(r.baselineHeapUsedAfterGcBytes)})`,
    `  symbols per node in 1 GiB: ~${thousands(r.symbolsPerGiB)}, derived, not measured: (1 GiB - ${mib(r.baselineRssBytes)}) / ` +
      `${fmt(r.bytesPerActorRss.median)} bytes, with no headroom for batches in flight, held snapshots or GC slack`,
    `  activation of ${fmt(r.symbols)} recorded symbols: a fresh ActorHost (${r.partitions} partitions) handed one batch per partition, ` +
      `one new tick per symbol;`,
    `  first handleBatch to last return, ${r.rounds} rounds interleaved:`,
    `    cache present: ${s(present, 2, " s")}, ${fmt(r.symbols / present.median)} symbols/s; restored ${sources(r.restoredInCacheRuns)}`,
    `    cache emptied: ${s(emptied, 2, " s")}, ${fmt(r.symbols / emptied.median)} symbols/s; restored ${sources(r.restoredInPostgresRuns)}`,
    `    emptied / present ${(emptied.median / present.median).toFixed(2)}; ` +
      `records still pending at the last return, written after it (untimed): ${s(r.pendingRecordFlushSeconds, 2, " s")}`,
    `    event loop delay during the timed windows: p99 ${fmt(r.eventLoopDelayP99Ms)} ms (median run), max ${fmt(r.eventLoopDelayMaxMs)} ms`,
    `    partition loops' summed time, present / emptied: Postgres transactions ${pct(c.postgres, p.postgres)}, ` +
      `cache writes ${pct(c.cacheWrite, p.cacheWrite)}, apply ${pct(c.apply, p.apply)}, ` +
      `the rest (activation reads, restore, parsing) ${pct(c.rest, p.rest)}`,
    ...(failures.present + failures.emptied > 0
      ? [
          `    note: the host found Redis failing (a command past its 2 s timeout) in ${failures.present} of ${r.rounds} cache-present ` +
            `and ${failures.emptied} of ${r.rounds} emptied runs, and then read from Postgres, as in production; ` +
            `the cache was refilled from the records (untimed) before ${r.cacheRefills} run(s); first warning: ${r.firstCacheFailure}`,
        ]
      : []),
  ].forEach(line => log(line));
}

function parseArgs(argv: string[]): ScaleOptions {
  return parseOptions(argv, { symbols: 100_000, rounds: 3, partitions: 12, ...serversFromEnv() });
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
