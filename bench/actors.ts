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
import { ActorHost } from "../runtime/actor-host";
import { ResultsStore } from "../runtime/results-store";
import { benchApply, randomWalkTick, seededRandom } from "./apply";

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
  brokers: string;
  postgresUrl: string;
  redisUrl: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    ticks: 100_000,
    rate: 1000,
    seconds: 20,
    partitions: 12,
    latencySymbols: 100,
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

/** Sends `count` ticks in 1,000-message acknowledged batches, several in flight. */
async function preProduce(stack: Stack, topic: string, count: number, symbols: number): Promise<void> {
  const next = tickSource(symbols, 20240601 + symbols);
  const producer = await connectProducer(stack);
  try {
    for (let sent = 0; sent < count;) {
      const n = Math.min(1000, count - sent);
      const messages = Array.from({ length: n }, () => {
        const t = next();
        return { key: t.stock_symbol, value: JSON.stringify(t) };
      });
      await producer.send({ topic, acks: -1, messages });
      sent += n;
    }
  } finally {
    await producer.disconnect();
  }
}

/** An actors process of this checkout (bin/start.ts through tsx), logging at info to see its assignment. */
class ActorsProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  assignedAt: number | null = null;
  readonly tail: string[] = [];

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin/start.ts")], {
      cwd: ROOT,
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
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    LOG_LEVEL: "info",
  };
}

interface ThroughputResult {
  symbols: number;
  actorsSeconds: number;
  rawSeconds: number;
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

async function throughput(stack: Stack, symbols: number): Promise<ThroughputResult> {
  const o = stack.o;
  const topic = await stack.topic(`bench_actors_${symbols}`);
  await preProduce(stack, topic, o.ticks, symbols);
  const rawSeconds = await rawConsume(stack, topic, o.ticks);

  const groupId = unique("bench_actors_group");
  stack.snapshotsOf(groupId, topic);
  const databaseUrl = await stack.database();
  const actors = new ActorsProcess(actorsEnv(o, topic, groupId, databaseUrl));
  try {
    const start = await actors.waitForAssignment();
    while ((await stack.uncommitted(topic, groupId)) > 0) await sleep(20);
    const actorsSeconds = (performance.now() - start) / 1000;
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM ticks");
    await db.end();
    if (Number(rows[0].n) !== o.ticks) throw new Error(`expected ${o.ticks} rows, found ${rows[0].n}`);
    return { symbols, actorsSeconds, rawSeconds };
  } finally {
    await actors.stop();
  }
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
  const actors = new ActorsProcess(actorsEnv(o, topic, groupId, databaseUrl));
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
    };
  } finally {
    await producer.disconnect();
    await listener.end().catch(() => undefined);
    await actors.stop();
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

    console.log("(a) SymbolActor.apply on one core (1,000,000 ticks over 100 symbols, periods 20/20/14)");
    const apply = await benchApply();
    console.log(
      `  median ${fmt(apply.ticksPerSecond)} ticks/s (${(1e9 / apply.ticksPerSecond).toFixed(0)} ns/tick), best ${fmt(apply.bestTicksPerSecond)} ticks/s`,
    );
    console.log(
      `  state per actor: ${fmt(apply.bytesPerActor)} bytes (JSON snapshot), ${fmt(apply.bytesPerActorWithSideData)} bytes with side data`,
    );
    console.log("");

    console.log(`(b) sustained Kafka -> actors -> Postgres, ${fmt(o.ticks)} pre-produced ticks per run`);
    console.log(
      "  Timed from the partition assignment to the last commit (actors: rows + recorded states + offsets),",
    );
    console.log("  and for a plain kafkajs consumer group on the same topic to its last message.");
    console.log(
      `  ${"symbols".padStart(8)} ${"actors ticks/s".padStart(15)} ${"raw consume/s".padStart(14)} ${"ratio".padStart(7)}`,
    );
    for (const symbols of [5, 1000]) {
      const r = await throughput(stack, symbols);
      const actorsRate = o.ticks / r.actorsSeconds;
      const rawRate = o.ticks / r.rawSeconds;
      console.log(
        `  ${fmt(symbols).padStart(8)} ${fmt(actorsRate).padStart(15)} ${fmt(rawRate).padStart(14)} ${`${((actorsRate / rawRate) * 100).toFixed(0)}%`.padStart(7)}`,
      );
    }
    console.log("  target: actors >= 50% of the raw consume rate");
    console.log(
      "  Where a batch's time goes: one partition loop (ActorHost with the same Postgres and Redis",
    );
    console.log("  adapters, 2,000-message batches handed to it directly, no Kafka), its own phase timings:");
    for (const symbols of [5, 1000])
      for (const interval of [0, 1000]) {
        const b = await batchBreakdown(stack, symbols, interval);
        const share = (x: number) => `${((x / b.seconds) * 100).toFixed(0)}%`;
        console.log(
          `  ${fmt(symbols).padStart(8)} symbols, ${interval === 0 ? "states recorded every chunk" : `STATE_RECORD_INTERVAL_MS=${interval}`}: ${fmt(b.ticks / b.seconds)} ticks/s; Postgres transactions ${share(b.persist)}, Redis cache ${share(b.snapshot)}, apply ${share(b.apply)}, decoding and the rest ${share(b.seconds - b.persist - b.snapshot - b.apply)}`,
        );
      }
    console.log("");

    console.log(
      `(c) Kafka ack -> row committed in Postgres, paced ${fmt(o.rate)} ticks/s for ${o.seconds} s over ${o.latencySymbols} symbols`,
    );
    console.log(
      "  ack: the producer's send resolved (acks=all); commit: a per-row trigger's NOTIFY, which Postgres",
    );
    console.log(
      "  delivers when the inserting transaction commits; both stamped with this process's monotonic clock.",
    );
    const l = await latency(stack);
    console.log(
      `  sent ${fmt(l.sent)} ticks in ${l.seconds.toFixed(1)} s (${fmt(l.sent / l.seconds)}/s), ${fmt(l.measured)} matched`,
    );
    console.log(
      `  p50 ${l.p50.toFixed(1)} ms   p90 ${l.p90.toFixed(1)} ms   p99 ${l.p99.toFixed(1)} ms   max ${l.max.toFixed(1)} ms   (target p99 <= 250 ms)`,
    );
    console.log("");
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
  } finally {
    await stack.close();
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
