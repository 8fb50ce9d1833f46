/**
 * `npm run chaos [-- --quick]`: a bounded chaos run on real Kafka, NATS, Postgres and Redis, all on
 * loopback. A gateway node and three actors nodes run as processes; a client posts ticks in batches,
 * each with its own Idempotency-Key, retrying every post until it gets 200, and now and then a copy
 * of a batch with one out-of-bounds tick, which must be refused with a 4xx. Meanwhile, in turn:
 * an actors node killed with kill -9 and one stopped with SIGTERM (both restarted), Redis killed and
 * restarted empty, Redis restarted from an older snapshot file, the Kafka broker killed with kill -9
 * and restarted, and Postgres stopped in immediate mode (a crash) and started. A notifier node
 * delivers every signal to a webhook receiver that verifies Standard Webhooks signatures, answers
 * 500 to a third of the deliveries and is away for 15 s; the notifier is killed with kill -9 twice.
 * At the end every stored tick, indicator, signal and aggregate must equal what one actor per
 * symbol computes from the ticks sent, with nothing missing and nothing twice, and the receiver
 * must hold every stored signal, signed, under one webhook-id each. Exits 0 when they do, 1 otherwise.
 *
 * Kafka, Redis and Postgres are private instances of this run (a broker of the local stack's jars,
 * a redis-server, a Postgres cluster made with pg_createcluster, which needs root; without root the
 * Postgres crash is replaced by cutting every connection through a proxy to the local Postgres).
 * NATS is the local stack's, under a namespace of this run. Everything is removed at the end.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Kafka, logLevel } from "kafkajs";
import pg from "pg";
import type { PriceTick } from "../../domain/messages";
import { SymbolActor, type Signal } from "../../domain/symbol-actor";
import { freePort } from "../../lib/net";
import { PrivateKafka } from "../support/private-kafka";
import { TcpProxy } from "../support/tcp-proxy";
import { WebhookReceiver } from "../support/webhook-receiver";

const ROOT = path.resolve(__dirname, "../..");
const WEBHOOK_SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const quick = process.argv.includes("--quick");
const SYMBOLS = quick ? 20 : 40;
const BATCH = 50;
/** Ticks per second the client aims at. */
const RATE = quick ? 500 : 1500;
/** Seconds between two faults; the run posts for (faults + 1) * this. */
const GAP_S = quick ? 5 : 10;
const SETTINGS = { smaPeriod: 20, emaPeriod: 20, rsiPeriod: 14, rsiOversold: 30, rsiOverbought: 70 };
const run = randomBytes(3).toString("hex");
const started = Date.now();
const log = (line: string) =>
  console.log(`[chaos ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);

/** A Redis of this run: no persistence of its own; `save()` writes a snapshot file to restore later. */
class PrivateRedis {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "chaos-redis-"));
  port = 0;
  private child: ChildProcess | null = null;

  async start(from?: string): Promise<void> {
    this.port ||= await freePort();
    if (from) fs.copyFileSync(from, path.join(this.dir, "dump.rdb"));
    else fs.rmSync(path.join(this.dir, "dump.rdb"), { force: true });
    this.child = spawn(
      "redis-server",
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        this.dir,
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      { stdio: "ignore" },
    );
    await until(`redis on ${this.port}`, () => redisCli(this.port, "PING") === "PONG");
  }

  /** Writes the current data to a file and returns its path. */
  save(name: string): string {
    redisCli(this.port, "SAVE");
    const file = path.join(this.dir, name);
    fs.copyFileSync(path.join(this.dir, "dump.rdb"), file);
    return file;
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise(resolve => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  async destroy(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function redisCli(port: number, ...args: string[]): string {
  return spawnSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8" }).stdout.trim();
}

/** A Postgres cluster of this run (root: pg_createcluster), or the local one behind a proxy to cut. */
class ChaosPostgres {
  private cluster: { version: string; name: string } | null = null;
  private proxy: TcpProxy | null = null;
  url = "";

  async start(): Promise<void> {
    if (process.getuid?.() === 0) {
      const version = fs.readdirSync("/usr/lib/postgresql").sort().at(-1)!;
      const port = await freePort();
      this.cluster = { version, name: `chaos_${run}` };
      const made = spawnSync(
        "pg_createcluster",
        [version, this.cluster.name, "-p", String(port), "--start", "--", "--auth=trust"],
        { encoding: "utf8" },
      );
      if (made.status !== 0) throw new Error(`pg_createcluster failed: ${made.stderr}`);
      this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    } else {
      const local = new URL(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
      const db = `chaos_${run}`;
      await sql(local.toString(), `CREATE DATABASE ${db}`);
      this.proxy = new TcpProxy(local.hostname, Number(local.port || 5432));
      const port = await this.proxy.start();
      local.port = String(port);
      local.pathname = `/${db}`;
      this.url = local.toString();
    }
    await until(
      "postgres",
      async () =>
        (await sql(this.url, "SELECT 1").then(
          () => true,
          () => false,
        )) || undefined,
    );
  }

  /** A crash: immediate stop (no checkpoint, every connection cut), then a start that recovers from the WAL. */
  async crash(): Promise<string> {
    if (this.cluster) {
      pgctl(this.cluster, "stop", "-m", "immediate");
      await sleep(1000);
      pgctl(this.cluster, "start");
      return "Postgres stopped in immediate mode and started";
    }
    await this.proxy!.cut();
    await sleep(2000);
    await this.proxy!.restore();
    return "every Postgres connection cut for 2 s (no root: no private cluster to crash)";
  }

  async destroy(): Promise<void> {
    if (this.cluster) spawnSync("pg_dropcluster", [this.cluster.version, this.cluster.name, "--stop"]);
    if (this.proxy) {
      await this.proxy.stop();
      const local = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
      await sql(local, `DROP DATABASE IF EXISTS chaos_${run} WITH (FORCE)`).catch(() => undefined);
    }
  }
}

function pgctl(c: { version: string; name: string }, ...args: string[]): void {
  const r = spawnSync("pg_ctlcluster", [c.version, c.name, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`pg_ctlcluster ${args.join(" ")} failed: ${r.stderr}`);
}

async function sql<T extends pg.QueryResultRow>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 120000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch {
      // Not yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

/** A node of this checkout (bin/start.ts through tsx). */
class Node {
  private child: ChildProcess | null = null;
  readonly tail: string[] = [];
  constructor(
    readonly name: string,
    private readonly env: Record<string, string>,
  ) {}

  start(): void {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin/start.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NODE_ID: this.name, ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line) this.tail.push(line);
      if (this.tail.length > 200) this.tail.splice(0, this.tail.length - 200);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.child = child;
  }

  async stop(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>(resolve => child.once("exit", code => resolve(code)));
    child.kill(signal);
    const escalate = setTimeout(() => child.kill("SIGKILL"), 30000);
    const code = await exited;
    clearTimeout(escalate);
    return code;
  }
}

/** Random-walk ticks of SYMBOLS symbols, taking turns, one second apart per round. */
function tickSource(): () => PriceTick {
  const prices = Array.from({ length: SYMBOLS }, (_, i) => 50 + i * 7);
  let n = 0;
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  return () => {
    const s = n % SYMBOLS;
    const timestamp = 1_764_000_000 + Math.floor(n / SYMBOLS);
    n += 1;
    const open = prices[s];
    const close = Math.max(1, open * (1 + (random() - 0.5) * 0.02));
    prices[s] = close;
    return {
      stock_symbol: `CH${s}`,
      opening_price: open,
      closing_price: close,
      high: Math.max(open, close) * 1.001,
      low: Math.min(open, close) * 0.999,
      volume: 1000 + Math.floor(random() * 1000),
      timestamp,
    };
  };
}

interface ClientStats {
  sent: PriceTick[];
  posts: number;
  retries: number;
  statuses: Record<string, number>;
  /** The final answer to each bad input, by its name: every one must be a 4xx. */
  refused: Record<string, Record<string, number>>;
}

/**
 * Inputs the gateway must refuse with a 4xx, nothing of them reaching the log: values that pass
 * "finite and positive" but once halted a partition (a symbol's sums went Infinity, or its volume
 * total out of bigint's range), each within an otherwise good batch.
 */
const BAD_INPUTS: { name: string; change: Partial<PriceTick> }[] = [
  {
    name: "prices of 1e308",
    change: { opening_price: 1e308, closing_price: 1e308, high: 1e308, low: 1e308 },
  },
  { name: "volume of 2^53 - 1", change: { volume: 9007199254740991 } },
];
/** One bad input after every this many good batches. */
const BAD_INPUT_EVERY = 10;

/** One POST; its status, or what went wrong on the way. */
async function post(url: string, body: string, key?: string): Promise<string> {
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { "idempotency-key": key } : {}) },
      body,
      signal: AbortSignal.timeout(10000),
    });
    await r.arrayBuffer();
    return String(r.status);
  } catch (err) {
    return (err as Error).name === "TimeoutError" ? "timeout" : "network error";
  }
}

/** Posts a bad input until it gets an answer the request decided (a 4xx, or a 200 it must never get). */
async function postBadInput(url: string, batch: PriceTick[], n: number, stats: ClientStats): Promise<void> {
  const bad = BAD_INPUTS[n % BAD_INPUTS.length];
  const body = JSON.stringify(batch.map((t, i) => (i === batch.length - 1 ? { ...t, ...bad.change } : t)));
  let status = "";
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    status = await post(url, body);
    if (status === "200" || status.startsWith("4")) break;
    await sleep(delay);
  }
  const answers = (stats.refused[bad.name] ??= {});
  answers[status] = (answers[status] ?? 0) + 1;
}

/** Posts batches, each under its own key, retrying every one until 200, until `stop` is set. */
async function client(url: string, stop: { done: boolean }, stats: ClientStats): Promise<void> {
  const next = tickSource();
  for (let batchNo = 0; !stop.done; batchNo++) {
    const batch = Array.from({ length: BATCH }, next);
    // A copy of the batch with one bad tick, never stored: the good batch itself follows.
    if (batchNo % BAD_INPUT_EVERY === BAD_INPUT_EVERY - 1)
      await postBadInput(url, batch, Math.floor(batchNo / BAD_INPUT_EVERY), stats);
    const body = JSON.stringify(batch);
    const key = `chaos-${run}-${batchNo}`;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      stats.posts += 1;
      const status = await post(url, body, key);
      stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
      if (status === "200") break;
      if (status.startsWith("4")) throw new Error(`the gateway refused batch ${batchNo}: ${status}`);
      stats.retries += 1;
      await sleep(delay);
    }
    stats.sent.push(...batch);
    await sleep((BATCH / RATE) * 1000);
  }
}

/** What one actor per symbol computes from the ticks in the order they were sent. */
function reference(sent: PriceTick[]) {
  const actors = new Map<string, SymbolActor>();
  const ticks: string[] = [];
  const signals: string[] = [];
  sent.forEach((t, offset) => {
    let actor = actors.get(t.stock_symbol);
    if (!actor) actors.set(t.stock_symbol, (actor = new SymbolActor(t.stock_symbol, SETTINGS)));
    const out = actor.apply(t, offset);
    if (out?.kind !== "tick") throw new Error("the reference skipped a tick");
    const r = out.tick;
    ticks.push(JSON.stringify([r.symbol, r.seq, r.close, r.sma, r.ema, r.rsi]));
    if (out.signal) signals.push(signalRow(out.signal));
  });
  const aggregates = [...actors.values()].map(a => {
    const v = a.view().aggregates;
    return JSON.stringify([a.symbol, v.tick_count, v.total_volume, v.lowest_price, v.highest_price]);
  });
  return { ticks: ticks.sort(), signals: signals.sort(), aggregates: aggregates.sort() };
}

const signalRow = (s: Signal) => JSON.stringify([s.symbol, s.seq, s.side]);

async function stored(url: string) {
  const ticks = await sql<{ r: string }>(
    url,
    `SELECT json_build_array(symbol, seq, closing_price, moving_average, exponential_moving_average,
            relative_strength_index)::text AS r FROM ticks`,
  );
  const signals = await sql<{ r: string }>(
    url,
    "SELECT json_build_array(symbol, seq, side)::text AS r FROM signals",
  );
  const aggregates = await sql<{ r: string }>(
    url,
    `SELECT json_build_array(symbol, tick_count, total_volume, lowest_price, highest_price)::text AS r
     FROM aggregated_metrics`,
  );
  // Through JSON.parse/stringify so that numbers print as JavaScript prints them.
  const norm = (rows: { r: string }[]) => rows.map(x => JSON.stringify(JSON.parse(x.r))).sort();
  return { ticks: norm(ticks), signals: norm(signals), aggregates: norm(aggregates) };
}

function compare(name: string, want: string[], got: string[]): string[] {
  const w = new Map<string, number>();
  for (const x of want) w.set(x, (w.get(x) ?? 0) + 1);
  const extra: string[] = [];
  for (const x of got) {
    const n = w.get(x) ?? 0;
    if (n === 0) extra.push(x);
    else w.set(x, n - 1);
  }
  const missing = [...w].flatMap(([x, n]) => Array<string>(n).fill(x));
  const problems: string[] = [];
  if (missing.length > 0)
    problems.push(`${name}: ${missing.length} missing or different, e.g. ${missing.slice(0, 3).join(" ")}`);
  if (extra.length > 0)
    problems.push(`${name}: ${extra.length} unexpected, e.g. ${extra.slice(0, 3).join(" ")}`);
  return problems;
}

async function main(): Promise<number> {
  const kafka = new PrivateKafka();
  const redis = new PrivateRedis();
  const postgres = new ChaosPostgres();
  const nodes: Node[] = [];
  const receiver = new WebhookReceiver(WEBHOOK_SECRET, n => (n % 3 === 0 ? 500 : 204));
  try {
    log(`run ${run}${quick ? " (quick)" : ""}: starting a private Kafka, Redis and Postgres`);
    await Promise.all([kafka.start(), redis.start(), postgres.start()]);
    const topic = `chaos_${run}`;
    const common = {
      KAFKA_BROKERS: kafka.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_PARTITIONS: "6",
      KAFKA_GROUP_ID: `chaos_${run}_actors`,
      KAFKA_SESSION_TIMEOUT_MS: "6000",
      DATABASE_URL: postgres.url,
      REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      NATS_URL: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
      NAMESPACE: `chaos-${run}`,
      RETRY_MAX_BACKOFF_MS: "1000",
      METRICS_PORT: "0",
      DEMO_FEED: "0",
      LOG_LEVEL: "warn",
    };
    await receiver.start();
    const port = await freePort();
    const gateway = new Node(`chaos-gateway-${run}`, {
      ...common,
      SERVICES: "gateway,ingest",
      PORT: String(port),
      HOST: "127.0.0.1",
    });
    nodes.push(gateway);
    for (let i = 1; i <= 3; i++)
      nodes.push(new Node(`chaos-actors-${i}-${run}`, { ...common, SERVICES: "actors" }));
    const notifier = new Node(`chaos-notifier-${run}`, {
      ...common,
      SERVICES: "notifier",
      NOTIFIER_SUBSCRIBERS: JSON.stringify([{ name: "chaos", url: receiver.url, from: "start" }]),
      NOTIFIER_WEBHOOK_SECRET: WEBHOOK_SECRET,
      NOTIFIER_TIMEOUT_MS: "2000",
    });
    nodes.push(notifier);
    for (const n of nodes) n.start();
    const base = `http://127.0.0.1:${port}`;
    await until(
      "the gateway to be ready",
      async () => (await fetch(`${base}/readyz`)).status === 200 || undefined,
    );

    const stats: ClientStats = { sent: [], posts: 0, retries: 0, statuses: {}, refused: {} };
    const stop = { done: false };
    const load = client(`${base}/ingest`, stop, stats);
    let older = "";
    const [, a1, a2] = nodes;
    const faults: [string, () => Promise<string>][] = [
      [
        "kill -9 an actors node",
        async () => {
          older = redis.save("older.rdb");
          await a1.stop("SIGKILL");
          await sleep(1000);
          a1.start();
          return `${a1.name} killed (kill -9) and restarted`;
        },
      ],
      [
        "SIGTERM an actors node",
        async () => {
          const code = await a2.stop("SIGTERM");
          a2.start();
          return `${a2.name} stopped (SIGTERM, exit ${code}) and restarted`;
        },
      ],
      [
        "Redis killed, restarted empty",
        async () => {
          await redis.kill();
          await sleep(1000);
          await redis.start();
          return "Redis killed and restarted empty";
        },
      ],
      [
        "Redis restarted from an older snapshot",
        async () => {
          await redis.kill();
          await redis.start(older);
          return "Redis killed and restarted from the snapshot file taken before the first fault";
        },
      ],
      [
        "Kafka kill -9",
        async () => {
          await kafka.stop("SIGKILL");
          await sleep(1000);
          await kafka.start();
          return "the Kafka broker killed (kill -9) and restarted";
        },
      ],
      ["Postgres crash", () => postgres.crash()],
      [
        "webhook receiver away for 15 s",
        async () => {
          await receiver.stop();
          setTimeout(() => void receiver.start(), 15000);
          return "the webhook receiver went away for 15 s";
        },
      ],
      ["kill -9 the notifier node", () => killAndRestart(notifier)],
      ["kill -9 the notifier node again", () => killAndRestart(notifier)],
    ];
    for (const [, fault] of faults) {
      await sleep(GAP_S * 1000);
      log(await fault());
    }
    await sleep(GAP_S * 1000);
    stop.done = true;
    await load;
    log(
      `client: ${stats.sent.length} ticks in ${stats.sent.length / BATCH} batches, ${stats.posts} posts, ${stats.retries} retried (${JSON.stringify(stats.statuses)}); bad inputs answered ${JSON.stringify(stats.refused)}`,
    );

    // Everything sent is in Kafka; wait until the actors committed all of it and stored every tick.
    const admin = new Kafka({
      clientId: "chaos",
      brokers: [kafka.brokers],
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    const drainStarted = Date.now();
    await until(
      "the actors to commit every message",
      async () => {
        const [ends, [group]] = await Promise.all([
          admin.fetchTopicOffsets(topic),
          admin.fetchOffsets({ groupId: common.KAFKA_GROUP_ID, topics: [topic] }),
        ]);
        const done = new Map(group.partitions.map(p => [p.partition, Number(p.offset)]));
        return ends.every(e => Number(e.high) === 0 || done.get(e.partition) === Number(e.high)) || undefined;
      },
      180000,
    );
    const inKafka = (await admin.fetchTopicOffsets(topic)).reduce((n, e) => n + Number(e.high), 0);
    await admin.disconnect();
    log(
      `drained ${((Date.now() - drainStarted) / 1000).toFixed(1)} s after the client stopped; ${inKafka} messages in Kafka for ${stats.sent.length} ticks`,
    );

    const want = reference(stats.sent);
    const got = await stored(postgres.url);
    const problems = [
      ...compare("ticks", want.ticks, got.ticks),
      ...compare("signals", want.signals, got.signals),
      ...compare("aggregates", want.aggregates, got.aggregates),
    ];
    for (const { name } of BAD_INPUTS) {
      const answers = Object.entries(stats.refused[name] ?? {});
      if (answers.length === 0) problems.push(`bad input ${name}: never sent`);
      for (const [status, n] of answers)
        if (!status.startsWith("4")) problems.push(`bad input ${name}: ${n} answered ${status}, not a 4xx`);
    }
    const [dead] = await sql<{ n: string }>(postgres.url, "SELECT count(*) AS n FROM dead_letters");
    if (Number(dead.n) > 0) problems.push(`dead_letters: ${dead.n} rows`);
    const [skipped] = await sql<{ n: string }>(
      postgres.url,
      "SELECT count(*) AS n FROM idempotency_keys WHERE completed_at IS NULL",
    );
    log(
      `stored ${got.ticks.length} ticks, ${got.signals.length} signals, ${got.aggregates.length} aggregates; ` +
        `reference ${want.ticks.length}, ${want.signals.length}, ${want.aggregates.length}; ${skipped.n} keys never completed`,
    );
    problems.push(...(await deliveries(receiver, got.signals)));
    if (problems.length > 0) {
      for (const p of problems) log(`MISMATCH ${p}`);
      for (const n of nodes) console.log(`--- ${n.name}\n${n.tail.slice(-30).join("\n")}`);
      return 1;
    }
    log(
      "every tick, indicator, signal and aggregate equals the single-actor reference: nothing missing, nothing twice",
    );
    return 0;
  } finally {
    await Promise.all(nodes.map(n => n.stop("SIGTERM")));
    await Promise.all([kafka.destroy(), redis.destroy(), postgres.destroy(), receiver.stop()]);
  }
}

async function killAndRestart(node: Node): Promise<string> {
  await node.stop("SIGKILL");
  await sleep(1000);
  node.start();
  return `${node.name} killed (kill -9) and restarted`;
}

/**
 * Every stored signal (rows `[symbol, seq, side]` as JSON) at the receiver, answered 2xx at least
 * once, every delivery signed, and each signal under one webhook-id.
 */
async function deliveries(receiver: WebhookReceiver, stored: string[]): Promise<string[]> {
  const want = new Map(
    stored.map(r => {
      const [symbol, seq] = JSON.parse(r) as [string, number, string];
      return [`sig_${symbol}_${seq}`, r];
    }),
  );
  const delivered = () => new Set(receiver.accepted().map(d => d.id));
  const started = Date.now();
  while ([...want.keys()].some(id => !delivered().has(id)) && Date.now() - started < 120000) await sleep(200);
  const got = delivered();
  const problems: string[] = [];
  const missing = [...want.keys()].filter(id => !got.has(id));
  if (missing.length > 0)
    problems.push(
      `webhook: ${missing.length} stored signals never delivered, e.g. ${missing.slice(0, 3).join(" ")}`,
    );
  const extra = [...got].filter(id => !want.has(id));
  if (extra.length > 0)
    problems.push(
      `webhook: ${extra.length} deliveries of no stored signal, e.g. ${extra.slice(0, 3).join(" ")}`,
    );
  const unsigned = receiver.received.filter(d => !d.verified);
  if (unsigned.length > 0) problems.push(`webhook: ${unsigned.length} deliveries without a valid signature`);
  const misnamed = receiver.received.filter(d => d.id !== `sig_${d.body.data.symbol}_${d.body.data.seq}`);
  if (misnamed.length > 0)
    problems.push(`webhook: ${misnamed.length} deliveries under another id than their signal's`);
  const repeats = receiver.accepted().length - got.size;
  log(
    `webhook: ${got.size} of ${want.size} stored signals delivered (${receiver.received.length} requests, ` +
      `${receiver.received.length - receiver.accepted().length} answered 500, ${repeats} delivered again), every one signed`,
  );
  return problems;
}

main().then(
  code => process.exit(code),
  err => {
    console.error(err);
    process.exit(1);
  },
);
