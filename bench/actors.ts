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
import { PostgresClient } from "../adapters/sql/postgres-client";
import type { PriceTick } from "../domain/messages";
import { SymbolActor } from "../domain/symbol-actor";
import { partitionForKey } from "../lib/partitioner";
import type { TickRow } from "../runtime/batch-outputs";
import { ResultsStore } from "../runtime/store/results-store";
import { TICK_COLUMNS, tickCopyData } from "../runtime/store/ticks-copy";
import { printApply } from "./apply";
import { ActorsProcess, actorsRun, type ActorsRun } from "./harness/actors-process";
import { parseOptions } from "./harness/args";
import { printProfile, profilesIn } from "./harness/cpu-profile";
import {
  alternating,
  fmt,
  medianMinMax,
  pct,
  pctSpread,
  percentiles,
  rounded,
  spread,
  spreadText,
  type Spread,
} from "./harness/figures";
import { machine, printLines } from "./harness/print";
import { directHost, logBatch, phaseObserver, tickMessage } from "./harness/host";
import { cpuByProcess, cpuUsedBetween } from "./harness/proc";
import { BenchStack, expectTicks, keyedBySymbol, serversFromEnv, unique } from "./harness/stack";
import { SETTINGS, tickWalk } from "./harness/ticks";
import { benchScale } from "./scale";

/**
 * The actors path against the local stack, parts (a)-(e) as BENCHMARKS.md ("Actors") explains them:
 * (a) SymbolActor.apply alone; (b) Kafka -> actors -> Postgres against a bare COPY of the same rows and
 * a plain consumer group; (c) Kafka ack -> row committed; (d) a restart after Redis lost its data;
 * (e) memory and scale (bench/scale.ts). The actors run in a process of their own (bin/start.ts).
 *
 *   npm run bench:actors [-- --quick] [-- --ticks 100000 --rate 1000 --seconds 20 --partitions 12 --only bc]
 */

/** The actors' Postgres pool (DATABASE_POOL_SIZE), and the bare writer's connections. */
const CONNECTIONS = 4;
/** Messages the plain consumer group reads: enough that its group join is a small part of the time. */
const RAW_TICKS = 1_000_000;

function parseArgs(argv: string[]) {
  const quick = argv.includes("--quick");
  const defaults = {
    // --quick also takes 10,000 symbols for (e), not 100,000, and leaves out (d).
    ...(quick ? { ticks: 60_000, seconds: 8 } : { ticks: 200_000, seconds: 20 }),
    ...{ rate: 1000, partitions: 12, latencySymbols: 100, repeats: 5, quick, ...serversFromEnv() },
    // --profile: instead of (b)-(e), one end-to-end run per symbol count, the actors process under --cpu-prof.
    ...{ profile: false, only: "abcde" },
  };
  return parseOptions(argv, defaults, {
    "--only": (parts, o) => {
      if (!/^[a-e]+$/.test(parts)) throw new Error("--only takes the parts to run, e.g. --only bc");
      o.only = parts;
    },
  });
}

type Options = ReturnType<typeof parseArgs>;

/** Random walks of the symbols S0, S1, ..., a random one each tick. */
const symbolWalk = (symbols: number, seed: number) => tickWalk(symbolNames(symbols), seed, true);
const symbolNames = (n: number) => Array.from({ length: n }, (_, i) => `S${i}`);

const ticksOf = (count: number, symbols: number, seed = 20240601 + symbols): PriceTick[] =>
  Array.from({ length: count }, symbolWalk(symbols, seed));

function spawnActors(run: ActorsRun, profileDir?: string): ActorsProcess {
  const env = { ...run.env, DATABASE_POOL_SIZE: String(CONNECTIONS) };
  // BENCH_ACTORS_CHECKOUT runs the actors of another checkout (an A/B against an older commit).
  return new ActorsProcess(env, { profileDir, root: process.env.BENCH_ACTORS_CHECKOUT });
}

/** An actors process working off `run`'s topic: seconds from its partition assignment to its last commit, and the CPU each process used meanwhile. */
async function workOff(stack: BenchStack, run: ActorsRun, profileDir?: string) {
  const actors = spawnActors(run, profileDir);
  try {
    const start = await actors.waitForAssignment();
    const cpuBefore = cpuByProcess();
    // A process that stops committing fails the run with its last lines (it would wait forever).
    const stalled = (since: number) => actors.assertAlive(since + 60_000, "no offset committed for 60 s");
    await stack.untilCommitted(run.topic, run.groupId, stalled);
    const seconds = (performance.now() - start) / 1000;
    return { seconds, cpu: cpuUsedBetween(cpuBefore, cpuByProcess(), actors.pid) };
  } finally {
    await actors.stop();
  }
}

/** One end-to-end run: a fresh group and database on `topic`. */
async function endToEnd(stack: BenchStack, o: Options, topic: string, profileDir?: string) {
  const run = await actorsRun(stack, topic, "bench_actors");
  const done = await workOff(stack, run, profileDir);
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
 * offsets), in the binary COPY format the actors send, in one partition's chunks of 2,000 (the
 * actors' chunk size), dealt round-robin to `connections` writers by partition.
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
 * Postgres' own ceiling for these rows: a bare writer COPYing them into a fresh, migrated database
 * (same table, same indexes), one transaction per chunk, `chunks.length` connections at once.
 */
async function ceiling(stack: BenchStack, chunks: Buffer[][], count: number): Promise<number> {
  const url = await stack.database("bench_actors", true);
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

/** `repeats` rounds of an actors process working off the topic and the bare writer, interleaved; ticks (rows) per second. */
async function throughput(stack: BenchStack, o: Options, symbols: number) {
  console.log(`  ${fmt(symbols)} symbols:`);
  const ticks = ticksOf(o.ticks, symbols);
  const topic = await stack.topic(`bench_actors_${symbols}`);
  await stack.send(topic, ticks);
  const chunks = ceilingChunks(ticks, o.partitions, CONNECTIONS);
  const seconds = async (kind: "e2e" | "bare") =>
    kind === "e2e" ? (await endToEnd(stack, o, topic)).seconds : await ceiling(stack, chunks, o.ticks);
  const { e2e, bare } = await alternating(o.repeats, ["e2e", "bare"], seconds, (r, round) => {
    const [actors, copy] = [o.ticks / r.e2e[round], o.ticks / r.bare[round]];
    console.log(
      `    round ${round + 1}: actors ${fmt(actors)} ticks/s, bare COPY ${fmt(copy)} rows/s, ratio ${pct(actors / copy)}`,
    );
  });
  const rate = (s: number[]) => spread(s.map(x => o.ticks / x));
  // The ratio is taken per round, of the two runs of one round.
  const r = { symbols, e2e: rate(e2e), ceiling: rate(bare), ratio: spread(e2e.map((x, i) => bare[i] / x)) };
  console.log(
    `    actors ${spreadText(r.e2e)} ticks/s; ceiling ${spreadText(r.ceiling)} rows/s; actors/ceiling ${pctSpread(r.ratio)}  (target >= 80 %)`,
  );
  return r;
}

/** One partition loop's wall time split by phase, from ActorHost's observer (no Kafka, no commit). */
async function batchBreakdown(stack: BenchStack, o: Options, symbols: number, recordIntervalMs: number) {
  const ticks = Math.min(o.ticks, 60_000);
  const db = new PostgresClient(await stack.database("bench_actors", true), 2);
  const prefix = unique("bench_breakdown");
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(prefix)));
  const snapshots = new RedisSnapshotStore(o.redisUrl, prefix);
  const b = { ticks, seconds: 0, apply: 0, persist: 0, snapshot: 0 };
  const host = directHost({
    results: new ResultsStore(db),
    snapshots,
    partitionCount: 1,
    recordIntervalMs,
    observer: phaseObserver(b),
  });
  host.onAssignment([0], 1);
  const messages = ticksOf(ticks, symbols, 99).map((t, offset) => tickMessage(0, offset, t));
  try {
    const started = performance.now();
    for (let i = 0; i < ticks; i += 2000)
      await host.handleBatch(logBatch(0, messages.slice(i, i + 2000), ticks), 1);
    b.seconds = (performance.now() - started) / 1000;
    return b;
  } finally {
    await snapshots.close();
    await db.close();
  }
}

/** Seconds a new actors process takes to catch up after a restart, the snapshot cache kept or emptied meanwhile. */
async function restartAfter(stack: BenchStack, o: Options, cache: "kept" | "emptied"): Promise<number> {
  const half = Math.floor(o.ticks / 2);
  const topic = await stack.topic("bench_actors_restart");
  const run = await actorsRun(stack, topic, "bench_actors_restart");
  const ticks = ticksOf(o.ticks, 1000, 424242);
  await stack.send(topic, ticks.slice(0, half));
  await workOff(stack, run);
  await stack.send(topic, ticks.slice(half));
  if (cache === "emptied") await stack.dropKeys(stack.cacheKeys(`${run.groupId}:${topic}`));
  const { seconds } = await workOff(stack, run);
  await expectTicks(run.databaseUrl, o.ticks, "restart");
  return seconds;
}

/** One paced run of (c): when Kafka acknowledged each tick and when its row was committed; its p99. */
async function latency(stack: BenchStack, o: Options, nth: number): Promise<number> {
  const topic = await stack.topic("bench_actors_latency");
  const run = await actorsRun(stack, topic, "bench_actors_latency");
  const actors = spawnActors(run);
  const listener = new pg.Client({ connectionString: run.databaseUrl });
  const producer = await stack.producer();
  try {
    // The actors apply the migrations before they join the group.
    await actors.waitForAssignment();
    const committedAt = await listenForCommits(listener);
    const cpuBefore = cpuByProcess();
    const { sent, seconds, ackedAt } = await pacedSend(producer, topic, o);
    const cpu = cpuUsedBetween(cpuBefore, cpuByProcess(), actors.pid);
    const deadline = Date.now() + 30000;
    while (committedAt.size < sent && Date.now() < deadline) await sleep(50);
    const matched = [...ackedAt].filter(([key]) => committedAt.has(key));
    const latencies = matched.map(([key, ack]) => (committedAt.get(key) ?? NaN) - ack);
    const [p50, p90, p99, max] = percentiles(latencies, [0.5, 0.9, 0.99, 1]);
    const core = (used: number) => pct(used / seconds);
    console.log(
      `  run ${nth}: sent ${fmt(sent)} in ${seconds.toFixed(1)} s, ${fmt(latencies.length)} matched; p50 ${p50.toFixed(1)} ms   p90 ${p90.toFixed(1)} ms   p99 ${p99.toFixed(1)} ms   max ${max.toFixed(1)} ms; CPU: actors ${core(cpu.actors)}, Postgres ${core(cpu.postgres)}, Kafka ${core(cpu.kafka)} of a core`,
    );
    return p99;
  } finally {
    await producer.disconnect();
    await listener.end().catch(() => undefined);
    await actors.stop();
  }
}

/** When each tick's row was committed, by "symbol seq": a trigger's NOTIFY is delivered at the commit. */
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
  const next = symbolWalk(o.latencySymbols, 7);
  const total = o.rate * o.seconds;
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * o.rate) + 1);
    if (due > sent) {
      const ticks = Array.from({ length: due - sent }, next);
      await producer.send({ topic, acks: -1, messages: keyedBySymbol(ticks) });
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
      const used = `actors ${cpu.actors.toFixed(1)}, Postgres ${cpu.postgres.toFixed(1)}, Kafka ${cpu.kafka.toFixed(1)}, other ${cpu.other.toFixed(1)}`;
      printLines(
        `CPU profile of the actors process, ${fmt(symbols)} symbols: ${fmt(o.ticks / seconds)} ticks/s (profiled)`,
        `  CPU seconds over the ${seconds.toFixed(1)} s run: ${used}`,
      );
      for (const profile of profilesIn(dir)) printProfile(profile, 12);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function partThroughput(stack: BenchStack, o: Options) {
  console.log(
    `(b) sustained Kafka -> actors -> Postgres, ${fmt(o.ticks)} pre-produced ticks, ${o.repeats} interleaved rounds\n` +
      `  actors: a fresh actors process (DATABASE_POOL_SIZE=${CONNECTIONS}), timed from its partition assignment to its last commit (ticks, buckets,\n` +
      "  aggregates, recorded states, offsets). Ceiling: a bare writer COPYing the same tick rows into the\n" +
      `  same migrated schema, ${CONNECTIONS} connections, one transaction per 2,000 rows, nothing else. Medians (min-max).`,
  );
  const results = [await throughput(stack, o, 5), await throughput(stack, o, 1000)];
  const rawTopic = await stack.topic("bench_actors_raw");
  await stack.send(rawTopic, ticksOf(RAW_TICKS, 1000));
  const rawRate = RAW_TICKS / (await rawConsume(stack, rawTopic, RAW_TICKS));
  console.log(
    `  raw kafkajs consume (no processing, no commits) over ${fmt(RAW_TICKS)} messages: ${fmt(rawRate)} msgs/s;\n` +
      `  actors / raw consume: ${results.map(r => `${pct(r.e2e.median / rawRate)} (${fmt(r.symbols)} symbols)`).join(", ")}`,
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
      const share = (x: number) => pct(x / b.seconds);
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
  for (let run = 1; run <= 3; run++) p99s.push(await latency(stack, o, run));
  const p99 = spread(p99s);
  printLines(`  p99: median ${spreadText(p99, 1)} ms (target <= 100 ms)`, "");
  return p99;
}

async function partRestart(stack: BenchStack, o: Options): Promise<void> {
  console.log(
    `(d) restart after Redis lost its data: ${fmt(o.ticks / 2)} of ${fmt(o.ticks)} ticks over 1,000 symbols left to process,\n` +
      "  the cache kept or emptied before the new process starts; 3 rounds, interleaved",
  );
  const restarts = await alternating(3, ["kept", "emptied"], cache => restartAfter(stack, o, cache));
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
  await benchScale({ ...o, symbols: o.quick ? 10_000 : 100_000, rounds: 3, progress: () => undefined }).catch(
    (err: unknown) => {
      console.error("  (e) failed:", err);
      process.exitCode = 1;
    },
  );
  console.log("");
}

/** The pinned JSON lines (README, BENCHMARKS.md): one per symbol count, the 1,000-symbol one last. */
function printResults(o: Options, b: Awaited<ReturnType<typeof partThroughput>>, p99: Spread): void {
  for (const r of b.results)
    console.log(
      JSON.stringify({
        bench: "actors",
        e2e_ticks_per_s: Math.round(r.e2e.median),
        pg_ceiling_rows_per_s: Math.round(r.ceiling.median),
        ratio_to_ceiling: rounded(r.ratio.median, 3),
        raw_consume_per_s: Math.round(b.rawRate),
        p99_ms: rounded(p99.median, 1),
        symbols: r.symbols,
        e2e_min: Math.round(r.e2e.min),
        e2e_max: Math.round(r.e2e.max),
        ratio_min: rounded(r.ratio.min, 3),
        ratio_max: rounded(r.ratio.max, 3),
        ticks: o.ticks,
        repeats: o.repeats,
        connections: CONNECTIONS,
        quick: o.quick,
      }),
    );
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const stack = new BenchStack(o, o.partitions, "bench-actors");
  const runs = (part: string) => o.only.includes(part);
  try {
    printLines(
      "Actors benchmark",
      `  machine   ${machine()}`,
      `  servers   ${await stack.serversLine()}; the actors in a process of their own (bin/start.ts, SERVICES=actors)`,
      `  topic     ${o.partitions} partitions, replication 1, acks=all idempotent producer`,
      "",
    );
    if (runs("a")) await printApply("(a) SymbolActor.apply on one core").then(() => console.log(""));
    if (o.profile) return await profileRuns(stack, o);
    const b = runs("b") ? await partThroughput(stack, o) : null;
    const p99 = runs("c") ? await partLatency(stack, o) : null;
    if (!o.quick && runs("d")) await partRestart(stack, o);
    if (runs("e")) await partScale(o);
    console.log("");
    if (b && p99) printResults(o, b, p99);
  } finally {
    await stack.close();
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
