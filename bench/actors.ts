import { setTimeout as sleep } from "node:timers/promises";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import Redis from "ioredis";
import { Kafka, logLevel, type Admin, type Producer } from "kafkajs";
import pg from "pg";
import type { LogBatch } from "../adapters/log/types";
import { RedisSnapshotStore } from "../adapters/snapshots/redis-snapshots";
import { migrate } from "../adapters/sql/migrate";
import { PostgresClient } from "../adapters/sql/postgres-client";
import type { PriceTick } from "../domain/messages";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { from as copyFrom } from "pg-copy-streams";
import { SymbolActor } from "../domain/symbol-actor";
import { partitionForKey } from "../lib/partitioner";
import { ActorHost } from "../runtime/actor-host";
import type { TickRow } from "../runtime/batch-outputs";
import { ResultsStore, TICK_COLUMNS, tickCopyData } from "../runtime/results-store";
import { benchApply, randomWalkTick, seededRandom } from "./apply";
import { summarizeProfiles } from "./harness/cpu-profile";
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
 *       data): the catch-up time with actors restored from Redis or from their records in Postgres.
 * The actors run as a real process (bin/start.ts, SERVICES=actors), as in production, so that their
 * work does not share an event loop with the producer and the clocks of (c). Fresh topics, databases
 * and Redis keys, all removed afterwards.
 *
 *   npm run bench:actors [-- --ticks 100000 --rate 1000 --seconds 20 --partitions 12]
 */

interface Options {
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
  brokers: string;
  postgresUrl: string;
  redisUrl: string;
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const profile = argv.includes("--profile");
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt >= 0 ? (argv.splice(onlyAt, 2)[1] ?? "") : "abcde";
  if (!/^[a-e]+$/.test(only)) throw new Error("--only takes the parts to run, e.g. --only bc");
  argv = argv.filter(a => a !== "--quick" && a !== "--profile");
  const o: Options = {
    ticks: quick ? 60_000 : 200_000,
    rate: 1000,
    seconds: quick ? 8 : 20,
    partitions: 12,
    latencySymbols: 100,
    repeats: 5,
    rawTicks: 1_000_000,
    connections: 4,
    scaleSymbols: quick ? 10_000 : 100_000,
    quick,
    profile,
    only,
    brokers: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
    postgresUrl: process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
    redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  };
  const names: Record<string, keyof Options> = {
    "--ticks": "ticks",
    "--rate": "rate",
    "--seconds": "seconds",
    "--partitions": "partitions",
    "--latency-symbols": "latencySymbols",
    "--repeats": "repeats",
    "--raw-ticks": "rawTicks",
    "--connections": "connections",
    "--scale-symbols": "scaleSymbols",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    const value = Number(argv[i + 1]);
    if (!key) throw new Error(`unknown option ${argv[i]} (known: ${Object.keys(names).join(", ")})`);
    if (!Number.isSafeInteger(value) || value < 1)
      throw new Error(`${argv[i]} needs a positive whole number`);
    (o as unknown as Record<string, number>)[key] = value;
  }
  return o;
}

const ROOT = path.resolve(__dirname, "..");
const unique = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

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

class Stack {
  readonly kafka: Kafka;
  private admin: Admin | null = null;
  private readonly cleanups: (() => Promise<unknown>)[] = [];

  constructor(readonly o: Options) {
    this.kafka = new Kafka({
      clientId: "bench-actors",
      brokers: o.brokers.split(","),
      logLevel: logLevel.NOTHING,
    });
  }

  async connectedAdmin(): Promise<Admin> {
    if (!this.admin) {
      this.admin = this.kafka.admin();
      await this.admin.connect();
    }
    return this.admin;
  }

  async topic(prefix: string): Promise<string> {
    const topic = unique(prefix);
    const admin = await this.connectedAdmin();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: this.o.partitions, replicationFactor: 1 }],
    });
    this.cleanups.push(() => admin.deleteTopics({ topics: [topic] }));
    return topic;
  }

  async database(): Promise<string> {
    const name = unique("bench_actors").toLowerCase();
    await this.adminSql(`CREATE DATABASE ${name}`);
    this.cleanups.push(() => this.adminSql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    return this.o.postgresUrl.replace(/\/[^/]*$/, `/${name}`);
  }

  snapshotsOf(groupId: string, topic: string): void {
    this.cleanups.push(async () => {
      const redis = new Redis(this.o.redisUrl);
      const keys: string[] = [];
      for (let p = 0; p < this.o.partitions; p++)
        keys.push(`{${groupId}:${topic}:${p}}:actors`, `{${groupId}:${topic}:${p}}:epoch`);
      await redis.del(...keys).finally(() => redis.quit());
    });
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

  /** The group's committed offsets minus the topic's end offsets, summed: 0 once all is committed. */
  async uncommitted(topic: string, groupId: string): Promise<number> {
    const admin = await this.connectedAdmin();
    const [ends, groups] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    const committed = new Map<number, number>();
    for (const p of groups[0]?.partitions ?? []) committed.set(p.partition, Number(p.offset));
    return ends.reduce((n, e) => n + Number(e.high) - Math.max(committed.get(e.partition) ?? 0, 0), 0);
  }

  async close(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await this.admin?.disconnect();
  }
}

async function connectProducer(stack: Stack): Promise<Producer> {
  const producer = stack.kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  return producer;
}

/** Sends the ticks in order in 1,000-message acknowledged batches. */
async function produceTicks(stack: Stack, topic: string, ticks: readonly PriceTick[]): Promise<void> {
  const producer = await connectProducer(stack);
  try {
    for (let sent = 0; sent < ticks.length; sent += 1000) {
      const messages = ticks
        .slice(sent, sent + 1000)
        .map(t => ({ key: t.stock_symbol, value: JSON.stringify(t) }));
      await producer.send({ topic, acks: -1, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

/** Sends `count` ticks over `symbols` symbols. */
async function preProduce(stack: Stack, topic: string, count: number, symbols: number): Promise<void> {
  const next = tickSource(symbols, 20240601 + symbols);
  await produceTicks(
    stack,
    topic,
    Array.from({ length: count }, () => next()),
  );
}

/** An actors process of this checkout (bin/start.ts through tsx), logging at info to see its assignment. */
class ActorsProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  assignedAt: number | null = null;
  readonly tail: string[] = [];

  constructor(env: Record<string, string>, nodeArgs: string[] = []) {
    // BENCH_ACTORS_CHECKOUT runs the actors of another checkout (an A/B against an older commit).
    const root = process.env.BENCH_ACTORS_CHECKOUT ?? ROOT;
    this.child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", path.join(root, "bin/start.ts")], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const read = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        if (this.assignedAt === null && /assigned partitions \[\d/.test(line))
          this.assignedAt = performance.now();
        this.tail.push(line);
        if (this.tail.length > 50) this.tail.shift();
      }
    };
    this.child.stdout!.on("data", read);
    this.child.stderr!.on("data", read);
    this.exited = new Promise(resolve => this.child.on("exit", code => resolve(code)));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async waitForAssignment(timeoutMs = 60000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.assignedAt === null) {
      if (this.child.exitCode !== null) throw new Error(`actors process exited:\n${this.tail.join("\n")}`);
      if (Date.now() > deadline)
        throw new Error(`no partition assignment in ${timeoutMs} ms:\n${this.tail.join("\n")}`);
      await sleep(5);
    }
    return this.assignedAt;
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill("SIGTERM");
    return this.exited;
  }
}

function actorsEnv(o: Options, topic: string, groupId: string, databaseUrl: string): Record<string, string> {
  return {
    SERVICES: "actors",
    KAFKA_BROKERS: o.brokers,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: groupId,
    KAFKA_PARTITIONS: String(o.partitions),
    DATABASE_URL: databaseUrl,
    REDIS_URL: o.redisUrl,
    DATABASE_POOL_SIZE: String(o.connections),
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    LOG_LEVEL: "info",
    // Settings to try out on the actors process, e.g. BENCH_ACTORS_ENV='{"DATABASE_POOL_SIZE":"10"}'.
    ...(JSON.parse(process.env.BENCH_ACTORS_ENV ?? "{}") as Record<string, string>),
  };
}

/** A plain consumer group reading every message, no processing, no commits: kafkajs's ceiling here. */
async function rawConsume(stack: Stack, topic: string, count: number): Promise<number> {
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
      partitionsConsumedConcurrently: stack.o.partitions,
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

/** CPU seconds (user + system) used so far by each running process, by pid, with its command name. */
function cpuByProcess(): Map<number, { comm: string; seconds: number }> {
  const out = new Map<number, { comm: string; seconds: number }>();
  const tick = 100; // USER_HZ on Linux
  for (const entry of fs.existsSync("/proc") ? fs.readdirSync("/proc") : []) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      out.set(Number(entry), { comm, seconds: (Number(fields[11]) + Number(fields[12])) / tick });
    } catch {
      // The process ended meanwhile.
    }
  }
  return out;
}

/** CPU seconds used between two `cpuByProcess` readings, summed by who used them. */
function cpuUsedBetween(
  before: Map<number, { comm: string; seconds: number }>,
  after: Map<number, { comm: string; seconds: number }>,
  actorsPid: number | undefined,
): { actors: number; postgres: number; kafka: number; other: number } {
  const used = { actors: 0, postgres: 0, kafka: 0, other: 0 };
  for (const [pid, a] of after) {
    const d = a.seconds - (before.get(pid)?.seconds ?? 0);
    if (d <= 0) continue;
    if (pid === actorsPid) used.actors += d;
    else if (a.comm.startsWith("postgres")) used.postgres += d;
    else if (a.comm === "java") used.kafka += d;
    else used.other += d;
  }
  return used;
}

/** CPU seconds per resource of the last end-to-end run. */
let lastRunCpu: ReturnType<typeof cpuUsedBetween> | null = null;

/** One end-to-end run: a fresh group and database on `topic`, timed from the assignment to the last commit. */
async function endToEnd(stack: Stack, topic: string, count: number, profileDir?: string): Promise<number> {
  const o = stack.o;
  const groupId = unique("bench_actors_group");
  stack.snapshotsOf(groupId, topic);
  const databaseUrl = await stack.database();
  const env = actorsEnv(o, topic, groupId, databaseUrl);
  const actors = new ActorsProcess(env, profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []);
  try {
    const start = await actors.waitForAssignment();
    const cpuBefore = cpuByProcess();
    while ((await stack.uncommitted(topic, groupId)) > 0) await sleep(20);
    const seconds = (performance.now() - start) / 1000;
    lastRunCpu = cpuUsedBetween(cpuBefore, cpuByProcess(), actors.pid);
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM ticks");
    await db.end();
    if (Number(rows[0].n) !== count) throw new Error(`expected ${count} rows, found ${rows[0].n}`);
    return seconds;
  } finally {
    await actors.stop();
  }
}

/**
 * The tick rows the actors store for `ticks` (same symbols, seqs, indicators, partitions and
 * offsets), in COPY's binary format as the actors send them, as one partition's chunks of 2,000 (the actors' chunk size), dealt
 * round-robin to `connections` writers by partition.
 */
function ceilingChunks(ticks: readonly PriceTick[], partitions: number, connections: number): Buffer[][] {
  const settings = { smaPeriod: 20, emaPeriod: 20, rsiPeriod: 14, rsiOversold: 30, rsiOverbought: 70 };
  const actors = new Map<string, SymbolActor>();
  const offsets = new Array<number>(partitions).fill(0);
  const rows: TickRow[][] = Array.from({ length: partitions }, () => []);
  const now = Date.now();
  for (const t of ticks) {
    const p = partitionForKey(t.stock_symbol, partitions);
    let actor = actors.get(t.stock_symbol);
    if (!actor) actors.set(t.stock_symbol, (actor = new SymbolActor(t.stock_symbol, settings)));
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
async function ceiling(stack: Stack, chunks: Buffer[][], count: number): Promise<number> {
  const url = await stack.database();
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
    const { rows } = await clients[0].query<{ n: string }>("SELECT count(*) AS n FROM ticks");
    if (Number(rows[0].n) !== count) throw new Error(`ceiling: expected ${count} rows, found ${rows[0].n}`);
    return seconds;
  } finally {
    await Promise.all(clients.map(c => c.end().catch(() => undefined)));
  }
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(xs: readonly number[]): Spread {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

const spreadText = (s: Spread, digits = 0) =>
  `${fmt(s.median, digits)} (${fmt(s.min, digits)}-${fmt(s.max, digits)})`;

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
async function throughput(stack: Stack, symbols: number): Promise<ThroughputResult> {
  const o = stack.o;
  const next = tickSource(symbols, 20240601 + symbols);
  const ticks = Array.from({ length: o.ticks }, () => next());
  const topic = await stack.topic(`bench_actors_${symbols}`);
  await produceTicks(stack, topic, ticks);
  const chunks = ceilingChunks(ticks, o.partitions, o.connections);
  const e2e: number[] = [];
  const bare: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < o.repeats; round++) {
    // Alternate which goes first, so neither always runs on a warmer machine.
    const first = round % 2 === 0;
    const runBare = async () => bare.push(o.ticks / (await ceiling(stack, chunks, o.ticks)));
    const runE2e = async () => e2e.push(o.ticks / (await endToEnd(stack, topic, o.ticks)));
    if (first) {
      await runE2e();
      await runBare();
    } else {
      await runBare();
      await runE2e();
    }
    ratios.push(e2e[round] / bare[round]);
    console.log(
      `    round ${round + 1}: actors ${fmt(e2e[round])} ticks/s, bare COPY ${fmt(bare[round])} rows/s, ratio ${(ratios[round] * 100).toFixed(0)}%`,
    );
  }
  return { symbols, e2e: spread(e2e), ceiling: spread(bare), ratio: spread(ratios) };
}

interface Breakdown {
  ticks: number;
  seconds: number;
  apply: number;
  persist: number;
  snapshot: number;
}

/** One partition loop's wall time split by phase, from ActorHost's observer (no Kafka, no commit). */
async function batchBreakdown(stack: Stack, symbols: number, recordIntervalMs: number): Promise<Breakdown> {
  const ticks = Math.min(stack.o.ticks, 60_000);
  const db = new PostgresClient(await stack.database(), 2);
  const prefix = unique("bench_breakdown");
  stack.snapshotsOf(prefix, "loop");
  const snapshots = new RedisSnapshotStore(stack.o.redisUrl, `${prefix}:loop`);
  try {
    await migrate(db);
    const b = { ticks, seconds: 0, apply: 0, persist: 0, snapshot: 0 };
    const host = new ActorHost({
      settings: { smaPeriod: 20, emaPeriod: 20, rsiPeriod: 14, rsiOversold: 30, rsiOverbought: 70 },
      results: new ResultsStore(db),
      snapshots,
      commit: async () => undefined,
      partitionCount: 1,
      idleMs: 3_600_000,
      retryMaxBackoffMs: 1000,
      recordIntervalMs,
      logger: { info() {}, warn() {}, error: console.error, debug() {} },
      observer: {
        applied: (_n, seconds) => (b.apply += seconds),
        persisted: seconds => (b.persist += seconds),
        snapshotted: seconds => (b.snapshot += seconds),
      },
    });
    host.onAssignment([0], 1);
    const next = tickSource(symbols, 99);
    const values = Array.from({ length: ticks }, () => {
      const t = next();
      return { key: t.stock_symbol, value: Buffer.from(JSON.stringify(t)) };
    });
    const started = performance.now();
    for (let i = 0; i < ticks; i += 2000) {
      const batch: LogBatch = {
        partition: 0,
        messages: values
          .slice(i, i + 2000)
          .map((m, j) => ({ partition: 0, offset: i + j, timestamp: Date.now(), ...m })),
        highWatermark: ticks,
        heartbeat: async () => undefined,
        isActive: () => true,
      };
      await host.handleBatch(batch, 1);
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
async function restartAfter(stack: Stack, cache: "kept" | "emptied"): Promise<number> {
  const o = stack.o;
  const half = Math.floor(o.ticks / 2);
  const topic = await stack.topic("bench_actors_restart");
  const groupId = unique("bench_actors_restart_group");
  stack.snapshotsOf(groupId, topic);
  const databaseUrl = await stack.database();
  const next = tickSource(1000, 424242);
  const produce = async (count: number) => {
    const producer = await connectProducer(stack);
    try {
      for (let sent = 0; sent < count; sent += 1000) {
        const messages = Array.from({ length: Math.min(1000, count - sent) }, () => {
          const t = next();
          return { key: t.stock_symbol, value: JSON.stringify(t) };
        });
        await producer.send({ topic, acks: -1, messages });
      }
    } finally {
      await producer.disconnect();
    }
  };
  await produce(half);
  const first = new ActorsProcess(actorsEnv(o, topic, groupId, databaseUrl));
  try {
    await first.waitForAssignment();
    while ((await stack.uncommitted(topic, groupId)) > 0) await sleep(20);
  } finally {
    await first.stop();
  }
  await produce(o.ticks - half);
  if (cache === "emptied") {
    const redis = new Redis(o.redisUrl);
    const keys = Array.from({ length: o.partitions }, (_, p) => `{${groupId}:${topic}:${p}}:actors`);
    await redis.del(...keys).finally(() => redis.quit());
  }
  const second = new ActorsProcess(actorsEnv(o, topic, groupId, databaseUrl));
  try {
    const start = await second.waitForAssignment();
    while ((await stack.uncommitted(topic, groupId)) > 0) await sleep(20);
    const seconds = (performance.now() - start) / 1000;
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM ticks");
    await db.end();
    if (Number(rows[0].n) !== o.ticks) throw new Error(`expected ${o.ticks} rows, found ${rows[0].n}`);
    return seconds;
  } finally {
    await second.stop();
  }
}

interface LatencyResult {
  /** CPU seconds used while the ticks were sent. */
  cpu: ReturnType<typeof cpuUsedBetween>;
  sent: number;
  seconds: number;
  measured: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * Ack-to-commit latency. The producer stamps each tick when Kafka acknowledges its send (acks=all).
 * A per-row trigger in this run's database sends a NOTIFY carrying (symbol, seq); Postgres delivers
 * notifications only when the inserting transaction commits, so the listener's stamp is the moment
 * the row became visible. Both stamps come from this process's monotonic clock.
 */
async function latency(stack: Stack): Promise<LatencyResult> {
  const o = stack.o;
  const topic = await stack.topic("bench_actors_latency");
  const groupId = unique("bench_actors_latency_group");
  stack.snapshotsOf(groupId, topic);
  const databaseUrl = await stack.database();
  const profileDir = process.env.BENCH_PROFILE_DIR;
  const actors = new ActorsProcess(
    actorsEnv(o, topic, groupId, databaseUrl),
    profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [],
  );
  const listener = new pg.Client({ connectionString: databaseUrl });
  const producer = await connectProducer(stack);
  try {
    // The actors apply the migrations before they join the group.
    await actors.waitForAssignment();
    await listener.connect();
    await listener.query(`
      CREATE FUNCTION bench_notify_tick() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('bench_ticks', NEW.symbol || ' ' || NEW.seq); RETURN NULL; END $$;
      CREATE TRIGGER bench_notify AFTER INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION bench_notify_tick();
      LISTEN bench_ticks;`);
    const committedAt = new Map<string, number>();
    listener.on("notification", n => committedAt.set(n.payload ?? "", performance.now()));
    const cpuBefore = cpuByProcess();

    const ackedAt = new Map<string, number>();
    const seqs = new Map<string, number>();
    const next = tickSource(o.latencySymbols, 7);
    const total = o.rate * o.seconds;
    const stepMs = 10;
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
      await sleep(stepMs);
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuUsedBetween(cpuBefore, cpuByProcess(), actors.pid);
    const deadline = Date.now() + 30000;
    while (committedAt.size < total && Date.now() < deadline) await sleep(50);

    const latencies: number[] = [];
    for (const [key, ack] of ackedAt) {
      const commit = committedAt.get(key);
      if (commit !== undefined) latencies.push(commit - ack);
    }
    latencies.sort((a, b) => a - b);
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
    return {
      sent,
      seconds,
      measured: latencies.length,
      p50: q(0.5),
      p90: q(0.9),
      p99: q(0.99),
      max: latencies[latencies.length - 1],
      cpu,
    };
  } finally {
    await producer.disconnect();
    await listener.end().catch(() => undefined);
    await actors.stop();
  }
}

/** One end-to-end run per symbol count with the actors process under `--cpu-prof`: where its CPU time goes. */
async function profileRuns(stack: Stack): Promise<void> {
  const o = stack.o;
  for (const symbols of [5, 1000]) {
    const next = tickSource(symbols, 20240601 + symbols);
    const ticks = Array.from({ length: o.ticks }, () => next());
    const topic = await stack.topic(`bench_actors_profile_${symbols}`);
    await produceTicks(stack, topic, ticks);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-actors-prof-"));
    try {
      const seconds = await endToEnd(stack, topic, o.ticks, dir);
      console.log(
        `CPU profile of the actors process, ${fmt(symbols)} symbols: ${fmt(o.ticks / seconds)} ticks/s (profiled)`,
      );
      const cpu = lastRunCpu as ReturnType<typeof cpuUsedBetween> | null;
      if (cpu)
        console.log(
          `  CPU seconds over the ${seconds.toFixed(1)} s run: actors ${cpu.actors.toFixed(1)}, Postgres ${cpu.postgres.toFixed(1)}, Kafka ${cpu.kafka.toFixed(1)}, other ${cpu.other.toFixed(1)}`,
        );
      for (const p of summarizeProfiles(dir, Number(process.env.BENCH_PROFILE_TOP ?? 12)).filter(
        p => !(p.byModule[0]?.name === "(idle)" && p.byModule[0].share > 0.9),
      )) {
        console.log(`  ${p.seconds.toFixed(1)} s of samples; self time by module:`);
        for (const m of p.byModule) console.log(`    ${(m.share * 100).toFixed(1).padStart(5)} %  ${m.name}`);
        console.log("  by function:");
        for (const f of p.byFunction)
          console.log(`    ${(f.share * 100).toFixed(1).padStart(5)} %  ${f.name}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function environment(stack: Stack): Promise<string[]> {
  const cpus = os.cpus();
  const [pgVersion] = await stack.adminSql<{ v: string }>("SELECT current_setting('server_version') AS v");
  const redis = new Redis(stack.o.redisUrl);
  const info = await redis.info("server").finally(() => redis.quit());
  const jar = fs.existsSync(path.join(ROOT, ".stack/kafka/libs"))
    ? fs.readdirSync(path.join(ROOT, ".stack/kafka/libs")).find(f => /^kafka-server-[\d.]+\.jar$/.test(f))
    : undefined;
  return [
    `  machine   ${cpus.length} x ${cpus[0]?.model ?? "cpu"}, ${fmt(os.totalmem() / 1024 ** 3, 1)} GiB RAM, ${os.type()} ${os.release()}, load ${os
      .loadavg()
      .map(l => l.toFixed(2))
      .join(" ")}`,
    `  runtime   node ${process.version}; actors as a separate process (bin/start.ts, SERVICES=actors)`,
    `  servers   Kafka ${jar?.replace(/^kafka-server-|\.jar$/g, "") ?? "?"} (KRaft, 1 broker), Postgres ${pgVersion.v}, Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? "?"}; loopback`,
    `  topic     ${stack.o.partitions} partitions, replication 1, acks=all idempotent producer`,
  ];
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const stack = new Stack(o);
  try {
    console.log("Actors benchmark");
    for (const line of await environment(stack)) console.log(line);
    console.log("");

    if (o.only.includes("a")) {
      console.log("(a) SymbolActor.apply on one core (1,000,000 ticks over 100 symbols, periods 20/20/14)");
      const apply = await benchApply();
      console.log(
        `  median ${fmt(apply.ticksPerSecond)} ticks/s (${(1e9 / apply.ticksPerSecond).toFixed(0)} ns/tick), best ${fmt(apply.bestTicksPerSecond)} ticks/s`,
      );
      console.log(
        `  state per actor: ${fmt(apply.bytesPerActor)} bytes (JSON snapshot), ${fmt(apply.bytesPerActorWithSideData)} bytes with side data`,
      );
      console.log("");
    }
    if (o.profile) {
      await profileRuns(stack);
      return;
    }
    const results: ThroughputResult[] = [];
    let rawRate = 0;
    const p99s: number[] = [];
    let p99: Spread | null = null;
    if (o.only.includes("b")) {
      console.log(
        `(b) sustained Kafka -> actors -> Postgres, ${fmt(o.ticks)} pre-produced ticks, ${o.repeats} interleaved rounds`,
      );
      console.log(
        "  actors: a fresh actors process (DATABASE_POOL_SIZE=" +
          `${o.connections}), timed from its partition assignment to its last commit (ticks, buckets,`,
      );
      console.log(
        "  aggregates, recorded states, offsets). Ceiling: a bare writer COPYing the same tick rows into the",
      );
      console.log(
        `  same migrated schema, ${o.connections} connections, one transaction per 2,000 rows, nothing else. Medians (min-max).`,
      );
      for (const symbols of [5, 1000]) {
        console.log(`  ${fmt(symbols)} symbols:`);
        const r = await throughput(stack, symbols);
        results.push(r);
        console.log(
          `    actors ${spreadText(r.e2e)} ticks/s; ceiling ${spreadText(r.ceiling)} rows/s; actors/ceiling ${spreadText(
            { median: r.ratio.median * 100, min: r.ratio.min * 100, max: r.ratio.max * 100 },
          )} %  (target >= 80 %)`,
        );
      }
      const rawTopic = await stack.topic("bench_actors_raw");
      await preProduce(stack, rawTopic, o.rawTicks, 1000);
      rawRate = o.rawTicks / (await rawConsume(stack, rawTopic, o.rawTicks));
      console.log(
        `  raw kafkajs consume (no processing, no commits) over ${fmt(o.rawTicks)} messages: ${fmt(rawRate)} msgs/s;`,
      );
      console.log(
        `  actors / raw consume: ${results.map(r => `${((r.e2e.median / rawRate) * 100).toFixed(0)}% (${fmt(r.symbols)} symbols)`).join(", ")}`,
      );
      if (!o.quick) {
        console.log(
          "  Where a batch's time goes: one partition loop (ActorHost with the same Postgres and Redis",
        );
        console.log(
          "  adapters, 2,000-message batches handed to it directly, no Kafka), its own phase timings:",
        );
        for (const symbols of [5, 1000])
          for (const interval of [0, 1000]) {
            const b = await batchBreakdown(stack, symbols, interval);
            const share = (x: number) => `${((x / b.seconds) * 100).toFixed(0)}%`;
            console.log(
              `  ${fmt(symbols).padStart(8)} symbols, ${interval === 0 ? "states recorded every chunk" : `STATE_RECORD_INTERVAL_MS=${interval}`}: ${fmt(b.ticks / b.seconds)} ticks/s; Postgres transactions ${share(b.persist)}, Redis cache ${share(b.snapshot)}, apply ${share(b.apply)}, decoding and the rest ${share(b.seconds - b.persist - b.snapshot - b.apply)}`,
            );
          }
      }
      console.log("");
    }
    if (o.only.includes("c")) {
      console.log(
        `(c) Kafka ack -> row committed in Postgres, paced ${fmt(o.rate)} ticks/s for ${o.seconds} s over ${o.latencySymbols} symbols, 3 runs`,
      );
      console.log(
        "  ack: the producer's send resolved (acks=all); commit: a per-row trigger's NOTIFY, which Postgres",
      );
      console.log(
        "  delivers when the inserting transaction commits; both stamped with this process's monotonic clock.",
      );
      for (let run = 0; run < 3; run++) {
        const l = await latency(stack);
        p99s.push(l.p99);
        console.log(
          `  run ${run + 1}: sent ${fmt(l.sent)} in ${l.seconds.toFixed(1)} s, ${fmt(l.measured)} matched; p50 ${l.p50.toFixed(1)} ms   p90 ${l.p90.toFixed(1)} ms   p99 ${l.p99.toFixed(1)} ms   max ${l.max.toFixed(1)} ms; CPU: actors ${((l.cpu.actors / l.seconds) * 100).toFixed(0)}%, Postgres ${((l.cpu.postgres / l.seconds) * 100).toFixed(0)}%, Kafka ${((l.cpu.kafka / l.seconds) * 100).toFixed(0)}% of a core`,
        );
      }
      p99 = spread(p99s);
      console.log(`  p99: median ${spreadText(p99, 1)} ms (target <= 100 ms)`);
      console.log("");
    }
    if (!o.quick && o.only.includes("d")) {
      console.log(
        `(d) restart after Redis lost its data: ${fmt(o.ticks / 2)} of ${fmt(o.ticks)} ticks over 1,000 symbols left to process,`,
      );
      console.log("  the cache kept or emptied before the new process starts; 3 rounds, interleaved");
      const restarts: Record<"kept" | "emptied", number[]> = { kept: [], emptied: [] };
      for (let round = 0; round < 3; round++)
        for (const cache of ["kept", "emptied"] as const)
          restarts[cache].push(await restartAfter(stack, cache));
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      for (const cache of ["kept", "emptied"] as const) {
        const xs = restarts[cache];
        console.log(
          `  cache ${cache.padEnd(7)}: caught up in median ${med(xs).toFixed(2)} s (min ${Math.min(...xs).toFixed(2)}, max ${Math.max(...xs).toFixed(2)})`,
        );
      }
      console.log(`  emptied / kept: ${(med(restarts.emptied) / med(restarts.kept)).toFixed(2)}`);
      console.log("");
    }
    if (o.only.includes("e")) {
      // A failure here still lets the figures above end with their JSON lines; the exit status says it.
      await benchScale({
        postgresUrl: o.postgresUrl,
        redisUrl: o.redisUrl,
        symbols: o.scaleSymbols,
        rounds: 3,
      })
        .then(r => printScale(r, line => console.log(line)))
        .catch((err: unknown) => {
          console.error("  (e) failed:", err);
          process.exitCode = 1;
        });
      console.log("");
    }
    console.log("");
    if (p99)
      for (const r of results)
        console.log(
          JSON.stringify({
            bench: "actors",
            e2e_ticks_per_s: Math.round(r.e2e.median),
            pg_ceiling_rows_per_s: Math.round(r.ceiling.median),
            ratio_to_ceiling: Number(r.ratio.median.toFixed(3)),
            raw_consume_per_s: Math.round(rawRate),
            p99_ms: Number(p99.median.toFixed(1)),
            symbols: r.symbols,
            e2e_min: Math.round(r.e2e.min),
            e2e_max: Math.round(r.e2e.max),
            ratio_min: Number(r.ratio.min.toFixed(3)),
            ratio_max: Number(r.ratio.max.toFixed(3)),
            ticks: o.ticks,
            repeats: o.repeats,
            connections: o.connections,
            quick: o.quick,
          }),
        );
  } finally {
    await stack.close();
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
