import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { Producer } from "kafkajs";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { RedisSnapshotStore } from "../adapters/snapshots/redis-snapshots";
import { migrate } from "../adapters/sql/migrate";
import { PostgresClient } from "../adapters/sql/postgres-client";
import type { PriceTick } from "../domain/messages";
import { SymbolActor } from "../domain/symbol-actor";
import { partitionForKey } from "../lib/partitioner";
import type { TickRow } from "../runtime/batch-outputs";
import { ResultsStore } from "../runtime/store/results-store";
import { TICK_COLUMNS, tickCopyData } from "../runtime/store/ticks-copy";
import { benchApply } from "./apply";
import { ActorsProcess, ROOT, actorsEnv } from "./harness/actors-process";
import { parseOptions } from "./harness/args";
import { summarizeProfiles } from "./harness/cpu-profile";
import { fmt, medianMinMax, percentile, rounded, spread, spreadText, type Spread } from "./harness/figures";
import { machine, printLines } from "./harness/print";
import { directHost, logBatch, phaseObserver, quietLogger } from "./harness/host";
import { cpuByProcess, cpuUsedBetween, type CpuUse } from "./harness/proc";
import { BenchStack, expectTicks, serversFromEnv, unique, type Servers } from "./harness/stack";
import { SETTINGS, randomWalkTick, seededRandom } from "./harness/ticks";
import { benchScale, printScale } from "./scale";

/**
 * The actors path's figures on this machine, everything on loopback against the local stack
 * (`npm run stack:up`):
 *   (a) pure SymbolActor.apply throughput on one core and the state size per actor (bench/apply.ts);
 *   (b) sustained ticks/s Kafka -> actors -> Postgres (+ recorded states, Redis cache, offset commits), with
 *       5 and with 1,000 symbols: N ticks are produced to a fresh topic first, then an actors process
 *       starts and is timed from its partition assignment until every offset is committed; beside it
 *       a plain kafkajs consumer group reads the same topic, timed the same way; then one partition
 *       loop alone (ActorHost fed batches directly) shows where a batch's time goes;
 *   (c) latency from Kafka's acknowledgement of a tick to its row being committed in Postgres, at a
 *       paced 1,000 ticks/s;
 *   (d) a restart with half the ticks left, the snapshot cache kept or emptied (Redis lost its
 *       data): the catch-up time with actors restored from Redis or from their records in Postgres;
 *   (e) memory and scale (bench/scale.ts).
 * The actors run as a real process (bin/start.ts, SERVICES=actors), as in production, so that their
 * work does not share an event loop with the producer and the clocks of (c). Fresh topics, databases
 * and Redis keys, all removed afterwards.
 *
 *   npm run bench:actors [-- --ticks 100000 --rate 1000 --seconds 20 --partitions 12]
 */

interface Options extends Servers {
  ticks: number;
  rate: number;
  seconds: number;
  partitions: number;
  latencySymbols: number;
  repeats: number;
  rawTicks: number;
  connections: number;
  scaleSymbols: number;
  quick: boolean;
  /** Only profile one end-to-end run per symbol count (node --cpu-prof of the actors process). */
  profile: boolean;
  /** The parts to run, letters a-e. */
  only: string;
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const defaults: Options = {
    // What --quick changes.
    ...(quick
      ? { ticks: 60_000, seconds: 8, scaleSymbols: 10_000 }
      : { ticks: 200_000, seconds: 20, scaleSymbols: 100_000 }),
    ...{ rate: 1000, partitions: 12, latencySymbols: 100, repeats: 5, rawTicks: 1_000_000, connections: 4 },
    ...{ quick, profile: false, only: "abcde", ...serversFromEnv() },
  };
  return parseOptions(argv, defaults, { "--only": onlyParts });
}

function onlyParts(parts: string, o: Options): void {
  if (!/^[a-e]+$/.test(parts)) throw new Error("--only takes the parts to run, e.g. --only bc");
  o.only = parts;
}

/** Random-walk price ticks over `symbols` symbols (S0, S1, ...), each symbol's ticks in time order. */
function tickSource(symbols: number, seed: number): () => PriceTick {
  const random = seededRandom(seed);
  const names = Array.from({ length: symbols }, (_, i) => `S${i}`);
  const price = names.map(() => 20 + random() * 300);
  let timestamp = 1_700_000_000;
  let n = 0;
  return () => {
    const s = Math.floor(random() * symbols);
    if (++n % symbols === 0) timestamp += 1;
    const tick = randomWalkTick(random, names[s], price[s], timestamp);
    price[s] = tick.closing_price;
    return tick;
  };
}

function ticksOf(count: number, symbols: number, seed = 20240601 + symbols): PriceTick[] {
  const next = tickSource(symbols, seed);
  return Array.from({ length: count }, () => next());
}

/** A fresh consumer group (its cache keys removed at the end) and database for actors processes on `topic`. */
interface ActorsRun {
  topic: string;
  groupId: string;
  databaseUrl: string;
  env: Record<string, string>;
}

async function freshRun(stack: BenchStack, o: Options, topic: string, group: string): Promise<ActorsRun> {
  const groupId = unique(group);
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(`${groupId}:${topic}`, ["actors", "epoch"])));
  const databaseUrl = await stack.database("bench_actors");
  const env = {
    ...actorsEnv(o, { topic, groupId, partitions: o.partitions, databaseUrl }),
    DATABASE_POOL_SIZE: String(o.connections),
    // Settings to try out on the actors process, e.g. BENCH_ACTORS_ENV='{"DATABASE_POOL_SIZE":"10"}'.
    ...(JSON.parse(process.env.BENCH_ACTORS_ENV ?? "{}") as Record<string, string>),
  };
  return { topic, groupId, databaseUrl, env };
}

function spawnActors(run: ActorsRun, profileDir?: string): ActorsProcess {
  return new ActorsProcess({
    env: run.env,
    nodeArgs: [...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []), "--import", "tsx"],
    // BENCH_ACTORS_CHECKOUT runs the actors of another checkout (an A/B against an older commit).
    root: process.env.BENCH_ACTORS_CHECKOUT,
  });
}

/**
 * An actors process of `run` working off its topic: seconds from its partition assignment until
 * every offset is committed, and with `cpu` the CPU seconds each process used meanwhile.
 */
async function workOff(
  stack: BenchStack,
  run: ActorsRun,
  opts: { cpu?: boolean; profileDir?: string } = {},
): Promise<{ seconds: number; cpu: CpuUse | null }> {
  const actors = spawnActors(run, opts.profileDir);
  try {
    const start = await actors.waitForAssignment();
    const cpuBefore = opts.cpu ? cpuByProcess() : null;
    // A process that stops committing fails the run with its last lines (it would wait forever).
    const stalled = (since: number) => actors.assertAlive(since + 60_000, "no offset committed for 60 s");
    await stack.untilCommitted(run.topic, run.groupId, stalled);
    const seconds = (performance.now() - start) / 1000;
    return { seconds, cpu: cpuBefore && cpuUsedBetween(cpuBefore, cpuByProcess(), actors.pid) };
  } finally {
    await actors.stop();
  }
}

/** One end-to-end run: a fresh group and database on `topic`, timed from the assignment to the last commit. */
async function endToEnd(stack: BenchStack, o: Options, topic: string, profileDir?: string) {
  const run = await freshRun(stack, o, topic, "bench_actors_group");
  const done = await workOff(stack, run, { cpu: true, profileDir });
  await expectTicks(run.databaseUrl, o.ticks, "actors");
  return done;
}

/** A plain consumer group reading every message, no processing, no commits: kafkajs's ceiling here. */
async function rawConsume(stack: BenchStack, topic: string, count: number): Promise<number> {
  const consumer = stack.kafka.consumer({
    groupId: unique("bench_raw"),
    maxBytesPerPartition: 1024 * 1024,
    maxWaitTimeInMs: 100,
  });
  let assignedAt = 0;
  let seen = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => (assignedAt ||= performance.now()));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const finished = new Promise<number>(resolve => {
    void consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: stack.partitions,
      eachBatch: async ({ batch }) => {
        seen += batch.messages.length;
        if (seen >= count) resolve(performance.now());
      },
    });
  });
  const done = await finished;
  await consumer.disconnect();
  return (done - assignedAt) / 1000;
}

/**
 * The tick rows the actors store for `ticks` (same symbols, seqs, indicators, partitions and
 * offsets), in COPY's binary format as the actors send them, as one partition's chunks of 2,000 (the actors' chunk size), dealt
 * round-robin to `connections` writers by partition.
 */
function ceilingChunks(ticks: readonly PriceTick[], partitions: number, connections: number): Buffer[][] {
  const actors = new Map<string, SymbolActor>();
  const offsets = new Array<number>(partitions).fill(0);
  const rows: TickRow[][] = Array.from({ length: partitions }, () => []);
  const now = Date.now();
  for (const t of ticks) {
    const p = partitionForKey(t.stock_symbol, partitions);
    let actor = actors.get(t.stock_symbol);
    if (!actor) actors.set(t.stock_symbol, (actor = new SymbolActor(t.stock_symbol, SETTINGS)));
    const out = actor.apply(t, offsets[p]++);
    if (out?.kind === "tick") rows[p].push({ ...out.tick, logTimestamp: now });
  }
  const perConnection: Buffer[][] = Array.from({ length: connections }, () => []);
  rows.forEach((list, p) => {
    for (let i = 0; i < list.length; i += 2000)
      perConnection[p % connections].push(tickCopyData([{ ticks: list.slice(i, i + 2000), partition: p }]));
  });
  return perConnection;
}

/**
 * Postgres' own ceiling for these rows: a bare writer COPYing them into a fresh, migrated
 * database (same table, same indexes), one transaction per chunk, `chunks.length` connections
 * at once. Nothing else: no conflict check, no buckets, aggregates or records.
 */
async function ceiling(stack: BenchStack, chunks: Buffer[][], count: number): Promise<number> {
  const url = await stack.database("bench_actors");
  const migrator = new PostgresClient(url, 1);
  await migrate(migrator);
  await migrator.close();
  const clients = chunks.map(() => new pg.Client({ connectionString: url }));
  await Promise.all(clients.map(c => c.connect()));
  try {
    const started = performance.now();
    await Promise.all(
      clients.map(async (client, i) => {
        for (const text of chunks[i]) {
          await client.query("BEGIN");
          await pipeline(
            Readable.from([text]),
            client.query(copyFrom(`COPY ticks (${TICK_COLUMNS.join(", ")}) FROM STDIN (FORMAT binary)`)),
          );
          await client.query("COMMIT");
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    await expectTicks(url, count, "ceiling");
    return seconds;
  } finally {
    await Promise.all(clients.map(c => c.end().catch(() => undefined)));
  }
}

interface ThroughputResult {
  symbols: number;
  e2e: Spread;
  ceiling: Spread;
  /** Per repeat, e2e / ceiling of the same round. */
  ratio: Spread;
}

/**
 * `repeats` rounds of, interleaved: an actors process working off the topic (fresh group and
 * database), and the bare COPY writer with the same rows. Rates in ticks (rows) per second.
 */
async function throughput(stack: BenchStack, o: Options, symbols: number): Promise<ThroughputResult> {
  const ticks = ticksOf(o.ticks, symbols);
  const topic = await stack.topic(`bench_actors_${symbols}`);
  await stack.send(topic, ticks);
  const chunks = ceilingChunks(ticks, o.partitions, o.connections);
  const e2e: number[] = [];
  const bare: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < o.repeats; round++) {
    const runBare = async () => bare.push(o.ticks / (await ceiling(stack, chunks, o.ticks)));
    const runE2e = async () => e2e.push(o.ticks / (await endToEnd(stack, o, topic)).seconds);
    // Alternate which goes first, so neither always runs on a warmer machine.
    for (const step of round % 2 === 0 ? [runE2e, runBare] : [runBare, runE2e]) await step();
    ratios.push(e2e[round] / bare[round]);
    console.log(
      `    round ${round + 1}: actors ${fmt(e2e[round])} ticks/s, bare COPY ${fmt(bare[round])} rows/s, ratio ${(ratios[round] * 100).toFixed(0)}%`,
    );
  }
  return { symbols, e2e: spread(e2e), ceiling: spread(bare), ratio: spread(ratios) };
}

/** One partition loop's wall time split by phase, from ActorHost's observer (no Kafka, no commit). */
async function batchBreakdown(stack: BenchStack, o: Options, symbols: number, recordIntervalMs: number) {
  const ticks = Math.min(o.ticks, 60_000);
  const db = new PostgresClient(await stack.database("bench_actors"), 2);
  const prefix = `${unique("bench_breakdown")}:loop`;
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(prefix, ["actors", "epoch"])));
  const snapshots = new RedisSnapshotStore(o.redisUrl, prefix);
  try {
    await migrate(db);
    const b = { ticks, seconds: 0, apply: 0, persist: 0, snapshot: 0 };
    const host = directHost({
      results: new ResultsStore(db),
      snapshots,
      partitionCount: 1,
      idleMs: 3_600_000,
      retryMaxBackoffMs: 1000,
      recordIntervalMs,
      logger: quietLogger,
      observer: phaseObserver(b),
    });
    host.onAssignment([0], 1);
    const values = ticksOf(ticks, symbols, 99).map(t => ({
      key: t.stock_symbol,
      value: Buffer.from(JSON.stringify(t)),
    }));
    const started = performance.now();
    for (let i = 0; i < ticks; i += 2000) {
      const messages = values
        .slice(i, i + 2000)
        .map((m, j) => ({ partition: 0, offset: i + j, timestamp: Date.now(), ...m }));
      await host.handleBatch(logBatch(0, messages, ticks), 1);
    }
    b.seconds = (performance.now() - started) / 1000;
    return b;
  } finally {
    await snapshots.close();
    await db.close();
  }
}

/**
 * A restart after Redis lost its data: 1,000 symbols, half the ticks processed and recorded by one
 * actors process, which is stopped; the other half produced; then the cache either kept or
 * emptied (as a Redis without persistence restarts); a new process is timed from its assignment
 * to the last commit. Its actors come from the cache, or from their records in Postgres.
 */
async function restartAfter(stack: BenchStack, o: Options, cache: "kept" | "emptied"): Promise<number> {
  const half = Math.floor(o.ticks / 2);
  const topic = await stack.topic("bench_actors_restart");
  const run = await freshRun(stack, o, topic, "bench_actors_restart_group");
  const ticks = ticksOf(o.ticks, 1000, 424242);
  await stack.send(topic, ticks.slice(0, half));
  await workOff(stack, run);
  await stack.send(topic, ticks.slice(half));
  if (cache === "emptied") await stack.dropKeys(stack.cacheKeys(`${run.groupId}:${topic}`));
  const { seconds } = await workOff(stack, run);
  await expectTicks(run.databaseUrl, o.ticks, "restart");
  return seconds;
}

/**
 * Ack-to-commit latency. The producer stamps each tick when Kafka acknowledges its send (acks=all).
 * A per-row trigger in this run's database sends a NOTIFY carrying (symbol, seq); Postgres delivers
 * notifications only when the inserting transaction commits, so the listener's stamp is the moment
 * the row became visible. Both stamps come from this process's monotonic clock.
 */
async function latency(stack: BenchStack, o: Options) {
  const topic = await stack.topic("bench_actors_latency");
  const run = await freshRun(stack, o, topic, "bench_actors_latency_group");
  const actors = spawnActors(run, process.env.BENCH_PROFILE_DIR);
  const listener = new pg.Client({ connectionString: run.databaseUrl });
  const producer = await stack.producer();
  try {
    // The actors apply the migrations before they join the group.
    await actors.waitForAssignment();
    const committedAt = await listenForCommits(listener);
    const cpuBefore = cpuByProcess();
    const { sent, seconds, ackedAt } = await pacedSend(producer, topic, o);
    // CPU seconds used while the ticks were sent.
    const cpu = cpuUsedBetween(cpuBefore, cpuByProcess(), actors.pid);
    const deadline = Date.now() + 30000;
    while (committedAt.size < sent && Date.now() < deadline) await sleep(50);
    const latencies = Float64Array.from(
      [...ackedAt].filter(([key]) => committedAt.has(key)).map(([key, ack]) => committedAt.get(key)! - ack),
    ).sort();
    const q = (p: number) => percentile(latencies, p);
    const max = latencies[latencies.length - 1];
    return { sent, seconds, measured: latencies.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max, cpu };
  } finally {
    await producer.disconnect();
    await listener.end().catch(() => undefined);
    await actors.stop();
  }
}

/** When each tick's row was committed, by "symbol seq", from a trigger's NOTIFY. */
async function listenForCommits(listener: pg.Client): Promise<Map<string, number>> {
  await listener.connect();
  await listener.query(`
    CREATE FUNCTION bench_notify_tick() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('bench_ticks', NEW.symbol || ' ' || NEW.seq); RETURN NULL; END $$;
    CREATE TRIGGER bench_notify AFTER INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION bench_notify_tick();
    LISTEN bench_ticks;`);
  const committedAt = new Map<string, number>();
  listener.on("notification", n => committedAt.set(n.payload ?? "", performance.now()));
  return committedAt;
}

/** `o.rate` ticks/s for `o.seconds`, every 10 ms what is due; when each was acknowledged, by "symbol seq". */
async function pacedSend(producer: Producer, topic: string, o: Options) {
  const ackedAt = new Map<string, number>();
  const seqs = new Map<string, number>();
  const next = tickSource(o.latencySymbols, 7);
  const total = o.rate * o.seconds;
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * o.rate) + 1);
    if (due > sent) {
      const ticks = Array.from({ length: due - sent }, next);
      await producer.send({
        topic,
        acks: -1,
        messages: ticks.map(t => ({ key: t.stock_symbol, value: JSON.stringify(t) })),
      });
      const at = performance.now();
      for (const t of ticks) {
        const seq = (seqs.get(t.stock_symbol) ?? 0) + 1;
        seqs.set(t.stock_symbol, seq);
        ackedAt.set(`${t.stock_symbol} ${seq}`, at);
      }
      sent = due;
    }
    await sleep(10);
  }
  return { sent, seconds: (performance.now() - started) / 1000, ackedAt };
}

/** One end-to-end run per symbol count with the actors process under `--cpu-prof`: where its CPU time goes. */
async function profileRuns(stack: BenchStack, o: Options): Promise<void> {
  for (const symbols of [5, 1000]) {
    const topic = await stack.topic(`bench_actors_profile_${symbols}`);
    await stack.send(topic, ticksOf(o.ticks, symbols));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-actors-prof-"));
    try {
      const { seconds, cpu } = await endToEnd(stack, o, topic, dir);
      console.log(
        `CPU profile of the actors process, ${fmt(symbols)} symbols: ${fmt(o.ticks / seconds)} ticks/s (profiled)`,
      );
      if (cpu)
        console.log(
          `  CPU seconds over the ${seconds.toFixed(1)} s run: actors ${cpu.actors.toFixed(1)}, Postgres ${cpu.postgres.toFixed(1)}, Kafka ${cpu.kafka.toFixed(1)}, other ${cpu.other.toFixed(1)}`,
        );
      printProfiles(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Self time by module and by function of each profile in `dir` that is not almost all idle. */
function printProfiles(dir: string): void {
  const share = (s: number) => `${(s * 100).toFixed(1).padStart(5)} %`;
  for (const p of summarizeProfiles(dir, Number(process.env.BENCH_PROFILE_TOP ?? 12)).filter(
    p => !(p.byModule[0]?.name === "(idle)" && p.byModule[0].share > 0.9),
  )) {
    console.log(`  ${p.seconds.toFixed(1)} s of samples; self time by module:`);
    for (const m of p.byModule) console.log(`    ${share(m.share)}  ${m.name}`);
    console.log("  by function:");
    for (const f of p.byFunction) console.log(`    ${share(f.share)}  ${f.name}`);
  }
}

async function environment(stack: BenchStack, o: Options): Promise<string[]> {
  const versions = await stack.serverVersions();
  const libs = path.join(ROOT, ".stack/kafka/libs");
  const jar = fs.existsSync(libs)
    ? fs.readdirSync(libs).find(f => /^kafka-server-[\d.]+\.jar$/.test(f))
    : undefined;
  return [
    `  machine   ${machine.cpus()}, ${machine.memory()}, ${os.type()} ${os.release()}, load ${machine.load()}`,
    `  runtime   node ${process.version}; actors as a separate process (bin/start.ts, SERVICES=actors)`,
    `  servers   Kafka ${jar?.replace(/^kafka-server-|\.jar$/g, "") ?? "?"} (KRaft, 1 broker), Postgres ${versions.postgres}, Redis ${versions.redis}; loopback`,
    `  topic     ${o.partitions} partitions, replication 1, acks=all idempotent producer`,
  ];
}

async function partApply(): Promise<void> {
  const apply = await benchApply();
  printLines(
    "(a) SymbolActor.apply on one core (1,000,000 ticks over 100 symbols, periods 20/20/14)",
    `  median ${fmt(apply.ticksPerSecond)} ticks/s (${(1e9 / apply.ticksPerSecond).toFixed(0)} ns/tick), best ${fmt(apply.bestTicksPerSecond)} ticks/s`,
    `  state per actor: ${fmt(apply.bytesPerActor)} bytes (JSON snapshot), ${fmt(apply.bytesPerActorWithSideData)} bytes with side data`,
    "",
  );
}

async function partThroughput(stack: BenchStack, o: Options) {
  console.log(
    `(b) sustained Kafka -> actors -> Postgres, ${fmt(o.ticks)} pre-produced ticks, ${o.repeats} interleaved rounds\n` +
      `  actors: a fresh actors process (DATABASE_POOL_SIZE=${o.connections}), timed from its partition assignment to its last commit (ticks, buckets,\n` +
      "  aggregates, recorded states, offsets). Ceiling: a bare writer COPYing the same tick rows into the\n" +
      `  same migrated schema, ${o.connections} connections, one transaction per 2,000 rows, nothing else. Medians (min-max).`,
  );
  const results: ThroughputResult[] = [];
  for (const symbols of [5, 1000]) {
    console.log(`  ${fmt(symbols)} symbols:`);
    const r = await throughput(stack, o, symbols);
    results.push(r);
    const percent = { median: r.ratio.median * 100, min: r.ratio.min * 100, max: r.ratio.max * 100 };
    console.log(
      `    actors ${spreadText(r.e2e)} ticks/s; ceiling ${spreadText(r.ceiling)} rows/s; actors/ceiling ${spreadText(percent)} %  (target >= 80 %)`,
    );
  }
  const rawTopic = await stack.topic("bench_actors_raw");
  await stack.send(rawTopic, ticksOf(o.rawTicks, 1000));
  const rawRate = o.rawTicks / (await rawConsume(stack, rawTopic, o.rawTicks));
  console.log(
    `  raw kafkajs consume (no processing, no commits) over ${fmt(o.rawTicks)} messages: ${fmt(rawRate)} msgs/s;\n` +
      `  actors / raw consume: ${results.map(r => `${((r.e2e.median / rawRate) * 100).toFixed(0)}% (${fmt(r.symbols)} symbols)`).join(", ")}`,
  );
  if (!o.quick) await partBreakdown(stack, o);
  console.log("");
  return { results, rawRate };
}

async function partBreakdown(stack: BenchStack, o: Options): Promise<void> {
  console.log(
    "  Where a batch's time goes: one partition loop (ActorHost with the same Postgres and Redis\n" +
      "  adapters, 2,000-message batches handed to it directly, no Kafka), its own phase timings:",
  );
  for (const symbols of [5, 1000])
    for (const interval of [0, 1000]) {
      const b = await batchBreakdown(stack, o, symbols, interval);
      const share = (x: number) => `${((x / b.seconds) * 100).toFixed(0)}%`;
      console.log(
        `  ${fmt(symbols).padStart(8)} symbols, ${interval === 0 ? "states recorded every chunk" : `STATE_RECORD_INTERVAL_MS=${interval}`}: ${fmt(b.ticks / b.seconds)} ticks/s; Postgres transactions ${share(b.persist)}, Redis cache ${share(b.snapshot)}, apply ${share(b.apply)}, decoding and the rest ${share(b.seconds - b.persist - b.snapshot - b.apply)}`,
      );
    }
}

async function partLatency(stack: BenchStack, o: Options): Promise<Spread> {
  console.log(
    `(c) Kafka ack -> row committed in Postgres, paced ${fmt(o.rate)} ticks/s for ${o.seconds} s over ${o.latencySymbols} symbols, 3 runs\n` +
      "  ack: the producer's send resolved (acks=all); commit: a per-row trigger's NOTIFY, which Postgres\n" +
      "  delivers when the inserting transaction commits; both stamped with this process's monotonic clock.",
  );
  const p99s: number[] = [];
  for (let run = 0; run < 3; run++) {
    const l = await latency(stack, o);
    p99s.push(l.p99);
    const core = (seconds: number) => `${((seconds / l.seconds) * 100).toFixed(0)}%`;
    console.log(
      `  run ${run + 1}: sent ${fmt(l.sent)} in ${l.seconds.toFixed(1)} s, ${fmt(l.measured)} matched; p50 ${l.p50.toFixed(1)} ms   p90 ${l.p90.toFixed(1)} ms   p99 ${l.p99.toFixed(1)} ms   max ${l.max.toFixed(1)} ms; CPU: actors ${core(l.cpu.actors)}, Postgres ${core(l.cpu.postgres)}, Kafka ${core(l.cpu.kafka)} of a core`,
    );
  }
  const p99 = spread(p99s);
  printLines(`  p99: median ${spreadText(p99, 1)} ms (target <= 100 ms)`, "");
  return p99;
}

async function partRestart(stack: BenchStack, o: Options): Promise<void> {
  console.log(
    `(d) restart after Redis lost its data: ${fmt(o.ticks / 2)} of ${fmt(o.ticks)} ticks over 1,000 symbols left to process,\n` +
      "  the cache kept or emptied before the new process starts; 3 rounds, interleaved",
  );
  const restarts: Record<"kept" | "emptied", number[]> = { kept: [], emptied: [] };
  for (let round = 0; round < 3; round++)
    for (const cache of ["kept", "emptied"] as const)
      restarts[cache].push(await restartAfter(stack, o, cache));
  const kept = spread(restarts.kept);
  const emptied = spread(restarts.emptied);
  printLines(
    `  cache ${"kept".padEnd(7)}: caught up in ${medianMinMax(kept, 2, " s")}`,
    `  cache ${"emptied".padEnd(7)}: caught up in ${medianMinMax(emptied, 2, " s")}`,
    `  emptied / kept: ${(emptied.median / kept.median).toFixed(2)}`,
    "",
  );
}

async function partScale(o: Options): Promise<void> {
  // A failure here still lets the figures above end with their JSON lines; the exit status says it.
  await benchScale({ postgresUrl: o.postgresUrl, redisUrl: o.redisUrl, symbols: o.scaleSymbols, rounds: 3 })
    .then(r => printScale(r, line => console.log(line)))
    .catch((err: unknown) => {
      console.error("  (e) failed:", err);
      process.exitCode = 1;
    });
  console.log("");
}

/** The pinned JSON lines (README, BENCHMARKS.md): one per symbol count, the 1,000-symbol one last. */
function printResults(o: Options, results: ThroughputResult[], rawRate: number, p99: Spread): void {
  for (const r of results)
    console.log(
      JSON.stringify({
        bench: "actors",
        e2e_ticks_per_s: Math.round(r.e2e.median),
        pg_ceiling_rows_per_s: Math.round(r.ceiling.median),
        ratio_to_ceiling: rounded(r.ratio.median, 3),
        raw_consume_per_s: Math.round(rawRate),
        p99_ms: rounded(p99.median, 1),
        symbols: r.symbols,
        e2e_min: Math.round(r.e2e.min),
        e2e_max: Math.round(r.e2e.max),
        ratio_min: rounded(r.ratio.min, 3),
        ratio_max: rounded(r.ratio.max, 3),
        ticks: o.ticks,
        repeats: o.repeats,
        connections: o.connections,
        quick: o.quick,
      }),
    );
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const stack = new BenchStack(o, o.partitions, "bench-actors");
  try {
    console.log("Actors benchmark");
    for (const line of await environment(stack, o)) console.log(line);
    console.log("");
    if (o.only.includes("a")) await partApply();
    if (o.profile) return await profileRuns(stack, o);
    const b = o.only.includes("b") ? await partThroughput(stack, o) : null;
    const p99 = o.only.includes("c") ? await partLatency(stack, o) : null;
    if (!o.quick && o.only.includes("d")) await partRestart(stack, o);
    if (o.only.includes("e")) await partScale(o);
    console.log("");
    if (b && p99) printResults(o, b.results, b.rawRate, p99);
  } finally {
    await stack.close();
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
