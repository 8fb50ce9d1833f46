import path from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { LogBatch } from "../adapters/log/types";
import { RedisSnapshotStore } from "../adapters/snapshots/redis-snapshots";
import { PostgresClient } from "../adapters/sql/postgres-client";
import { parseMessage, type PriceTick } from "../domain/messages";
import { SymbolActor } from "../domain/symbol-actor";
import { freePort } from "../lib/net";
import { partitionForKey } from "../lib/partitioner";
import type { ActorHost } from "../runtime/host/actor-host";
import { emptyOutputs } from "../runtime/batch-outputs";
import { ResultsStore, type ActorRecord } from "../runtime/store/results-store";
import { ActorsProcess, actorsRun } from "./harness/actors-process";
import { parseOptions } from "./harness/args";
import { GiB, MiB, alternating, fmt, medianMinMax, pct, spread } from "./harness/figures";
import { machine, printLines } from "./harness/print";
import {
  directHost,
  logBatch,
  phaseObserver,
  quietLogger,
  tickMessage,
  type PhaseTimes,
} from "./harness/host";
import { collectGarbage, nodeJson, rssOf } from "./harness/proc";
import { BenchStack, ROOT, serversFromEnv, unique, type Servers } from "./harness/stack";
import { SETTINGS, tickWalk } from "./harness/ticks";
import { WARM_TICKS, symbolName, type ChildReport, type MemoryUsage } from "./scale-child";

/**
 * (e) Memory and scale against the local stack (`npm run stack:up`), as BENCHMARKS.md ("Memory and
 * scale") explains: bytes per live actor (fresh child processes, bench/scale-child.ts); the RSS of an
 * actors process at rest and, from both, the symbols one node can hold in 1 GiB; the activation of N
 * recorded symbols by a fresh ActorHost, with the Redis cache present and emptied.
 *
 *   npm run bench:scale [-- --symbols 100000 --rounds 3 --partitions 12]
 */

export interface ScaleOptions extends Servers {
  symbols: number;
  rounds: number;
  partitions: number;
  progress: (line: string) => void;
}

/** The baseline process's warm-up traffic: this many ticks over this many symbols. */
const BASELINE_TICKS = 1000;
const BASELINE_SYMBOLS = 20;

function runChild(symbols: number): Promise<ChildReport> {
  const args = ["--require", "tsx/cjs", path.join(__dirname, "scale-child.ts"), String(symbols)];
  return nodeJson("memory child", args, "SCALE_CHILD ", ROOT);
}

/**
 * An actors process (bin/start.ts, SERVICES=actors, metrics on) that owns every partition of a fresh
 * topic and has processed a few ticks (pools connected, code compiled): the median of its RSS over
 * two seconds once it caught up, and its memory right after, with GC forced in it.
 */
async function baselineRss(stack: BenchStack) {
  const run = await actorsRun(stack, await stack.topic("bench_scale"), "bench_scale");
  const report: { afterGc?: MemoryUsage } = {};
  const env = { ...run.env, METRICS_PORT: String(await freePort()), BENCH_SCALE_GC_SIGNAL: "1" };
  // With scale-child preloaded, SIGUSR2 forces GC and reports the memory usage.
  const actors = new ActorsProcess(env, {
    preload: [path.join(__dirname, "scale-child.ts")],
    onLine: line => {
      if (line.startsWith("SCALE_GC "))
        report.afterGc = JSON.parse(line.slice("SCALE_GC ".length)) as MemoryUsage;
    },
  });
  try {
    const deadline = Date.now() + 60000;
    await actors.waitForAssignment();
    const names = Array.from({ length: BASELINE_SYMBOLS }, (_, i) => symbolName(i));
    await stack.send(run.topic, Array.from({ length: BASELINE_TICKS }, tickWalk(names, 5)));
    await stack.untilCommitted(run.topic, run.groupId, () =>
      actors.assertAlive(deadline, "ticks not committed in 60 s"),
    );
    await sleep(1000);
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      samples.push(rssOf(actors.pid));
      await sleep(200);
    }
    process.kill(actors.pid, "SIGUSR2");
    while (!report.afterGc) {
      actors.assertAlive(deadline + 10000, "no memory report after SIGUSR2");
      await sleep(20);
    }
    return { rss: spread(samples).median, afterGc: report.afterGc };
  } finally {
    await actors.stop(15000);
  }
}

/** A partition's symbols, their random walks (one tick of each in turn), and its next offset. */
type Part = { names: string[]; walk: () => PriceTick; nextOffset: number };

/**
 * The state after a node ran `WARM_TICKS` ticks of every symbol: per partition, the actors run in
 * process over interleaved offsets, and their records written as a host writes them (claim, then
 * ResultsStore.write with a fence carrying the records, 2,000 at a time, then the same states to the
 * cache). The ticks' own result rows are not written: activation does not read them.
 */
async function buildFixture(stack: BenchStack, o: ScaleOptions) {
  const databaseUrl = await stack.database("bench_scale", true);
  const cachePrefix = unique("bench_scale_cache");
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(cachePrefix)));
  const names: string[][] = Array.from({ length: o.partitions }, () => []);
  for (let i = 0; i < o.symbols; i++) names[partitionForKey(symbolName(i), o.partitions)].push(symbolName(i));
  const parts = names.map((list, p): Part => ({
    names: list,
    walk: tickWalk(list, 20240601 + p),
    nextOffset: 0,
  }));
  let jsonBytes = 0;
  const db = new PostgresClient(databaseUrl, 10);
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
      // Not `jsonBytes += await ...`: that reads the sum before the await, and the workers' updates
      // overwrite each other (the figure printed was about a third of the true one).
      for (let p = next++; p < o.partitions; p = next++) {
        const bytes = await recordPartition(parts[p], p, epochs[p], results, snapshots);
        jsonBytes += bytes;
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, o.partitions) }, worker));
  } finally {
    await snapshots.close();
    await db.close();
  }
  return { databaseUrl, cachePrefix, parts, snapshotJsonBytes: jsonBytes / o.symbols };
}

/** The records and cache entries of N symbols, and the walks that go on from them. */
type Fixture = Awaited<ReturnType<typeof buildFixture>>;

/** Warms partition `p`'s actors and records their states; returns the bytes of JSON recorded. */
async function recordPartition(
  part: Part,
  p: number,
  epoch: number,
  results: ResultsStore,
  snapshots: RedisSnapshotStore,
): Promise<number> {
  const actors = part.names.map(name => new SymbolActor(name, SETTINGS));
  for (let n = 0; n < WARM_TICKS * actors.length; n++)
    actors[n % actors.length].apply(part.walk(), part.nextOffset++);
  let jsonBytes = 0;
  for (let k = 0; k < actors.length; k += 2000) {
    // The table's record of each state (actor_state), built from the actor's own snapshot.
    const records = actors.slice(k, k + 2000).map((actor): ActorRecord => {
      const snap = actor.snapshot();
      const { symbol, seq, lastOffset } = snap;
      return { symbol, partition: p, seq, lastOffset, state: JSON.stringify(snap) };
    });
    for (const r of records) jsonBytes += Buffer.byteLength(r.state);
    const fence = { partition: p, epoch, actors: records, marks: [], writtenOffset: part.nextOffset - 1 };
    await results.write(emptyOutputs(p), fence);
    await snapshots.save(p, records);
  }
  return jsonBytes;
}

/** One new tick per symbol, as one batch per partition at the offsets after the fixture's. */
function nextBatches(f: Fixture): LogBatch[] {
  return f.parts.map((part, p) => {
    const messages = part.names.map(() => tickMessage(p, part.nextOffset++, part.walk()));
    return logBatch(p, messages, part.nextOffset);
  });
}

/**
 * A fresh host, as the actors service builds it (its own Postgres pool of 10 and Redis connection,
 * both connected first, as a starting node's are after its migrations), owning every partition and
 * handed one batch of each; then the records still pending are written, timed apart.
 */
async function activate(stack: BenchStack, o: ScaleOptions, f: Fixture, cache: "present" | "emptied") {
  if (cache === "emptied") await stack.dropKeys(stack.cacheKeys(f.cachePrefix));
  const batches = nextBatches(f);
  // The previous round's host and actors are garbage: collected now, as a fresh process has none.
  collectGarbage();
  const db = new PostgresClient(f.databaseUrl, 10);
  const snapshots = new RedisSnapshotStore(o.redisUrl, f.cachePrefix);
  const phases: PhaseTimes = { apply: 0, persist: 0, snapshot: 0 };
  // Where the actors' states came from ("cache/hit", "postgres/missing", ...), and whether the host found the cache failing.
  const seen = {
    restored: new Map<string, number>(),
    cacheFailed: false,
    cacheFailure: undefined as string | undefined,
  };
  let inWindow = true;
  try {
    const host = directHost({
      results: new ResultsStore(db),
      snapshots,
      partitionCount: o.partitions,
      // The first warning of a cache outage says which command failed, and how.
      logger: {
        ...quietLogger,
        warn: (...args: unknown[]) => (seen.cacheFailure ??= args.map(String).join(" ")),
      },
      owner: "bench-scale",
      observer: {
        ...phaseObserver(phases, () => inWindow),
        restored: (_p, source, reason, n) =>
          seen.restored.set(`${source}/${reason}`, (seen.restored.get(`${source}/${reason}`) ?? 0) + n),
        cache: up => (seen.cacheFailed ||= !up),
      },
    });
    await Promise.all([db.query("SELECT 1"), snapshots.ping()]);
    const all = batches.map(b => b.partition);
    host.onAssignment(all, 1);
    const window = await timedWindow(host, batches);
    inWindow = false;
    // As the service's timer or its shutdown would; the next round then finds records and cache
    // entries that are the actors' latest states.
    const flushStarted = performance.now();
    await host.flushDue(true);
    return { ...window, ...phases, ...seen, flushSeconds: (performance.now() - flushStarted) / 1000 };
  } finally {
    await snapshots.close();
    await db.close();
  }
}

type ActivationRun = Awaited<ReturnType<typeof activate>>;

/** Every partition's batch handed to the host at once, timed from the first call to the last return. */
async function timedWindow(host: ActorHost, batches: LogBatch[]) {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let busy = 0;
  const started = performance.now();
  const done = await Promise.all(
    batches.map(async b => {
      const t0 = performance.now();
      const n = await host.handleBatch(b, 1);
      busy += (performance.now() - t0) / 1000;
      return n;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  loop.disable();
  batches.forEach((b, i) => {
    if (done[i] !== b.messages.length)
      throw new Error(`partition ${b.partition}: ${done[i]} of ${b.messages.length} messages done`);
  });
  return { seconds, busy, loopDelayP99Ms: loop.percentile(99) / 1e6, loopDelayMaxMs: loop.max / 1e6 };
}

/**
 * Puts every recorded state into the cache again, as the records hold them: a run in which the
 * host found the cache failing skipped some cache writes, and left entries behind the records.
 */
async function refillCache(o: ScaleOptions, f: Fixture): Promise<void> {
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

async function activationRounds(stack: BenchStack, o: ScaleOptions, fixture: Fixture) {
  let cacheBehind = false;
  let refills = 0;
  const runs = await alternating(o.rounds, ["present", "emptied"], async (cache, round) => {
    if (cache === "present" && cacheBehind) {
      o.progress("activation: refilling the cache from the records");
      await refillCache(o, fixture);
      refills += 1;
    }
    o.progress(`activation: round ${round + 1} of ${o.rounds}, cache ${cache}`);
    const run = await activate(stack, o, fixture, cache);
    o.progress(
      `  ${run.seconds.toFixed(2)} s (then ${run.flushSeconds.toFixed(2)} s to record the rest); restored ${sources([run])}` +
        `; event loop delay max ${fmt(run.loopDelayMaxMs)} ms` +
        (run.cacheFailed ? "; the host found the cache failing" : ""),
    );
    cacheBehind = run.cacheFailed;
    return run;
  });
  return { ...runs, refills };
}

/**
 * Memory is measured while the records are built: none of it is timed, and RSS after forced GC
 * does not depend on the load. The activation rounds then run alone.
 */
async function measureWhileRecording(stack: BenchStack, o: ScaleOptions) {
  const childRuns = Math.max(3, o.rounds);
  const children = (async () => {
    const reports: ChildReport[] = [];
    for (let i = 0; i < childRuns; i++) {
      o.progress(`memory: child process ${i + 1} of ${childRuns}, ${fmt(o.symbols)} actors`);
      reports.push(await runChild(o.symbols));
    }
    return reports;
  })();
  // The baseline process mostly waits (for Kafka's group join): it runs beside the children.
  o.progress(`baseline: an actors process at rest; records and cache entries of ${fmt(o.symbols)} symbols`);
  const baseline = baselineRss(stack);
  const fixture = buildFixture(stack, o);
  // All settle before a failure is reported, so that nothing still runs during the cleanup.
  await Promise.allSettled([children, baseline, fixture]);
  return { children: await children, baseline: await baseline, fixture: await fixture };
}

/** Where the runs' actors came from, largest first: "cache/hit 1,000, postgres/missing 3". */
function sources(runs: ActivationRun[]): string {
  const counts = new Map<string, number>();
  for (const r of runs) for (const [k, n] of r.restored) counts.set(k, (counts.get(k) ?? 0) + n);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${fmt(n)}`)
    .join(", ");
}

/** Shares of the partition loops' busy time, summed over partitions and rounds. */
function shares(runs: ActivationRun[]) {
  const sum = (pick: (r: ActivationRun) => number) => runs.reduce((s, r) => s + pick(r), 0);
  const busy = sum(r => r.busy);
  const postgres = sum(r => r.persist) / busy;
  const cacheWrite = sum(r => r.snapshot) / busy;
  const apply = sum(r => r.apply) / busy;
  return { postgres, cacheWrite, apply, rest: 1 - postgres - cacheWrite - apply };
}

function printMemory(
  o: ScaleOptions,
  m: Awaited<ReturnType<typeof measureWhileRecording>>,
  servers: string,
): void {
  const per = (pick: (c: ChildReport) => number) => spread(m.children.map(c => pick(c) / c.symbols));
  const median = (pick: (c: ChildReport) => number) => fmt(per(pick).median);
  const rss = per(c => c.after.rss - c.before.rss);
  const mib = (bytes: number) => `${fmt(bytes / MiB, 1)} MiB`;
  const { rss: atRest, afterGc } = m.baseline;
  const perGiB = Math.max(0, Math.floor((GiB - atRest) / rss.median));
  printLines(
    `(e) memory and scale: ${fmt(o.symbols)} symbols, SMA ${SETTINGS.smaPeriod} / EMA ${SETTINGS.emaPeriod} / RSI ${SETTINGS.rsiPeriod}, ` +
      `${WARM_TICKS} ticks per actor (windows full)`,
    `  ${machine()}; ${servers}`,
    `  memory per live actor (fresh child process, RSS after forced GC): ${medianMinMax(rss, 0, " bytes")}`,
    `    of which V8 heap ${median(c => c.after.heapUsed - c.before.heapUsed)} bytes, typed-array backing stores ` +
      `${median(c => c.after.arrayBuffers - c.before.arrayBuffers)} bytes; not included: a touched actor's snapshot held ` +
      `until the next record, ${median(c => c.withSnapshots.heapUsed - c.after.heapUsed)} bytes of heap, and its JSON, ` +
      `${fmt(m.fixture.snapshotJsonBytes)} bytes`,
    `  actors process at rest (bin/start.ts through tsx, SERVICES=actors, ${o.partitions} partitions, after ${fmt(BASELINE_TICKS)} ticks): ` +
      `RSS ${mib(atRest)} (${mib(afterGc.rss)} after forced GC, heapUsed ${mib(afterGc.heapUsed)})`,
    `  symbols per node in 1 GiB: ~${fmt(Math.round(perGiB / 1000) * 1000)}, derived, not measured: (1 GiB - ${mib(atRest)}) / ` +
      `${fmt(rss.median)} bytes, with no headroom for batches in flight, held snapshots or GC slack`,
  );
}

function printActivation(o: ScaleOptions, runs: Awaited<ReturnType<typeof activationRounds>>): void {
  const { present, emptied } = runs;
  const all = [...present, ...emptied];
  const [c, p] = [shares(present), shares(emptied)];
  const both = (a: number, b: number) => `${pct(a)} / ${pct(b)}`;
  const [fromCache, fromPostgres] = [present, emptied].map(rs => spread(rs.map(r => r.seconds)));
  const failures = [present, emptied].map(rs => rs.filter(r => r.cacheFailed).length);
  const cacheFailure = all.find(r => r.cacheFailure !== undefined)?.cacheFailure ?? null;
  printLines(
    `  activation of ${fmt(o.symbols)} recorded symbols: a fresh ActorHost (${o.partitions} partitions) handed one batch per partition, ` +
      `one new tick per symbol;`,
    `  first handleBatch to last return, ${o.rounds} rounds interleaved:`,
    `    cache present: ${medianMinMax(fromCache, 2, " s")}, ${fmt(o.symbols / fromCache.median)} symbols/s; restored ${sources(present)}`,
    `    cache emptied: ${medianMinMax(fromPostgres, 2, " s")}, ${fmt(o.symbols / fromPostgres.median)} symbols/s; restored ${sources(emptied)}`,
    `    emptied / present ${(fromPostgres.median / fromCache.median).toFixed(2)}; records still pending at the last return, ` +
      `written after it (untimed): ${medianMinMax(spread(all.map(r => r.flushSeconds)), 2, " s")}`,
    `    event loop delay during the timed windows: p99 ${fmt(spread(all.map(r => r.loopDelayP99Ms)).median)} ms (median run), ` +
      `max ${fmt(Math.max(...all.map(r => r.loopDelayMaxMs)))} ms`,
    `    partition loops' summed time, present / emptied: Postgres transactions ${both(c.postgres, p.postgres)}, ` +
      `cache writes ${both(c.cacheWrite, p.cacheWrite)}, apply ${both(c.apply, p.apply)}, ` +
      `the rest (activation reads, restore, parsing) ${both(c.rest, p.rest)}`,
    ...(failures[0] + failures[1] > 0
      ? [
          `    note: the host found Redis failing (a command past its 2 s timeout) in ${failures[0]} of ${o.rounds} cache-present ` +
            `and ${failures[1]} of ${o.rounds} emptied runs, and then read from Postgres, as in production; ` +
            `the cache was refilled from the records (untimed) before ${runs.refills} run(s); first warning: ${cacheFailure}`,
        ]
      : []),
  );
}

export async function benchScale(o: ScaleOptions): Promise<void> {
  // Symbols must be valid tickers, or every message would be a dead letter and nothing measured.
  const longest = symbolName(o.symbols - 1);
  if (!parseMessage(tickWalk([longest], 1)()).ok) throw new Error(`symbol ${longest} is not a valid ticker`);
  const stack = new BenchStack(o, o.partitions, "bench-scale");
  try {
    const servers = await stack.serversLine();
    const measured = await measureWhileRecording(stack, o);
    o.progress("memory, baseline and records done");
    const runs = await activationRounds(stack, o, measured.fixture);
    printMemory(o, measured, servers);
    printActivation(o, runs);
  } finally {
    o.progress("removing the databases, topic and Redis keys");
    await stack.close();
    o.progress("done");
  }
}

if (require.main === module) {
  const o = parseOptions(process.argv.slice(2), {
    symbols: 100_000,
    rounds: 3,
    partitions: 12,
    ...serversFromEnv(),
  });
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  benchScale({ ...o, progress: line => console.error(`  ... ${seconds()} s  ${line}`) }).then(
    () => console.error(`  (bench took ${((performance.now() - started) / 1000).toFixed(0)} s)`),
    err => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
