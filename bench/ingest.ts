import { spawn } from "node:child_process";
import { Session } from "node:inspector/promises";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Kafka, logLevel, Partitioners, type Admin, type Message } from "kafkajs";
import { loadConfig } from "../lib/config";
import { createNode, type StockNode } from "../app/node";
import { createMessageSource } from "../generator/models";
import { freePort } from "../lib/net";
import { partitionForKey } from "../lib/partitioner";
import { messageKey, parseMessage } from "../domain/messages";
import { summarizeProfiles } from "./harness/cpu-profile";

/**
 * The ingest path's throughput on this machine, against what the machine can do at all:
 *   (a) single-message POST /ingest: requests/s and p99 latency of the gateway (moleculer-web, zod,
 *       Kafka acks=all) next to a bare node:http server that only parses the same JSON and answers 200;
 *   (b) 1,000-tick JSON arrays: ticks/s answered 200 (acknowledged by Kafka), next to a bare kafkajs
 *       producer (idempotent, acks=all, one send in flight: what the gateway's producer does) sending
 *       the same validated messages, as fast as it can, to a topic of its own.
 * Each pair runs interleaved (A B A B ...), `--repeats` times; the figures are medians with min and
 * max, and each ratio is the median of the per-repeat ratios. The load comes from autocannon in a
 * child process, so it does not share the servers' event loop; everything stays on loopback.
 *
 * Every measured gateway run sends a fixed number of requests (sized from the previous run to last
 * about `--duration` seconds) and waits for every answer, so no request is in flight when it ends:
 * the topic must then have grown by exactly what was answered 200 in that run (warm-ups are outside
 * the window), or the run fails.
 *
 * Needs the local Kafka (`npm run stack:up`); writes to two fresh topics and deletes them afterwards.
 *
 *   npm run bench:ingest [-- --quick] [-- --repeats 7 --duration 8 --connections 32 --batch-connections 4]
 *   npm run bench:ingest -- --profile     # where the gateway process's CPU goes (V8 CPU profile of the measured runs)
 *
 * --quick: 5 repeats of 3 s (under 3 minutes in all); --only single|batch runs one part;
 * --raw-per-send N sends N messages per bare-producer call instead of one request's worth.
 * The last line printed is one JSON object with the pinned figures.
 */

interface Options {
  durationSeconds: number;
  warmupSeconds: number;
  repeats: number;
  connections: number;
  batchConnections: number;
  batchSize: number;
  /** Messages per send of the bare producer (default: --batch-size, one request's worth). */
  rawPerSend: number | null;
  brokers: string;
  partitions: number;
  /** Which parts run: single messages (a), batches (b). */
  parts: Set<"single" | "batch">;
  /** Only the gateway runs (no bare server, no raw producer): for a CPU profile of the gateway. */
  gatewayOnly: boolean;
  quick: boolean;
  /** Instead of the comparison: the gateway alone, one run of each part, CPU-profiled (implies --gateway-only). */
  profile: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    durationSeconds: 8,
    warmupSeconds: 3,
    repeats: 7,
    connections: 32,
    batchConnections: 4,
    batchSize: 1000,
    rawPerSend: null,
    brokers: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
    partitions: 12,
    parts: new Set(["single", "batch"]),
    gatewayOnly: false,
    quick: false,
    profile: false,
  };
  const explicit = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1]);
    const needPositive = () => {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new Error(`${argv[i]} needs a positive whole number`);
      i++;
      explicit.add(argv[i - 1]);
      return value;
    };
    switch (argv[i]) {
      case "--quick":
        options.quick = true;
        break;
      case "--duration":
        options.durationSeconds = needPositive();
        break;
      case "--warmup":
        options.warmupSeconds = needPositive();
        break;
      case "--repeats":
        options.repeats = needPositive();
        break;
      case "--connections":
        options.connections = needPositive();
        break;
      case "--batch-connections":
        options.batchConnections = needPositive();
        break;
      case "--batch-size":
        options.batchSize = needPositive();
        break;
      case "--raw-per-send":
        options.rawPerSend = needPositive();
        break;
      case "--only": {
        const part = argv[++i];
        if (part !== "single" && part !== "batch") throw new Error("--only takes single or batch");
        options.parts = new Set([part]);
        break;
      }
      case "--gateway-only":
        options.gatewayOnly = true;
        break;
      case "--profile":
        options.profile = true;
        break;
      default:
        throw new Error(
          `unknown option ${argv[i]} (known: --quick, --repeats, --duration, --warmup, --connections, ` +
            `--batch-connections, --batch-size, --raw-per-send, --only single|batch, --gateway-only, --profile)`,
        );
    }
  }
  if (options.quick) {
    if (!explicit.has("--duration")) options.durationSeconds = 3;
    if (!explicit.has("--warmup")) options.warmupSeconds = 2;
    if (!explicit.has("--repeats")) options.repeats = 5;
  }
  return options;
}

/** What the autocannon CLI prints with --json, the parts used here. */
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  "2xx": number;
}

interface Load {
  url: string;
  body: string;
  connections: number;
  /** Run this long (a warm-up)... */
  durationSeconds?: number;
  /** ...or send exactly this many requests and wait for every answer (a measurement). */
  amount?: number;
}

/** Runs autocannon's CLI in its own process and returns its JSON summary. */
function cannon(load: Load, scratch: string): Promise<CannonResult> {
  const bodyFile = path.join(scratch, `body-${randomBytes(4).toString("hex")}.json`);
  writeFileSync(bodyFile, load.body);
  const args = [
    require.resolve("autocannon/autocannon.js"),
    "--json",
    "--no-progress",
    "-m",
    "POST",
    "-H",
    "Content-Type=application/json",
    "-i",
    bodyFile,
    "-c",
    String(load.connections),
    // The end of an --amount run is noticed at the next sample: sample often, so it is timed closely.
    "-L",
    "20",
    ...(load.amount !== undefined ? ["-a", String(load.amount)] : ["-d", String(load.durationSeconds)]),
    "-t",
    "20",
    load.url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", reject);
    child.on("exit", code => {
      const line = out.trim().split("\n").pop() ?? "";
      try {
        if (code !== 0) throw new Error(`exit code ${code}`);
        resolve(JSON.parse(line) as CannonResult);
      } catch (e) {
        reject(new Error(`autocannon failed (${(e as Error).message}):\n${err}\n${out}`));
      }
    });
  });
}

/** The floor to compare with: read the body, JSON.parse it, answer what the gateway answers. */
function startBareServer(port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let status = 200;
      let payload: string;
      try {
        const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        payload = JSON.stringify({ accepted: Array.isArray(value) ? value.length : 1 });
      } catch {
        status = 400;
        payload = JSON.stringify({ error: "the request body is not valid JSON" });
      }
      res.writeHead(status, {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(payload),
      });
      res.end(payload);
    });
  });
  return new Promise(resolve => server.listen(port, "127.0.0.1", () => resolve(server)));
}

async function startGateway(o: Options, topic: string, port: number): Promise<StockNode> {
  const config = loadConfig({
    SERVICES: "gateway,ingest",
    KAFKA_BROKERS: o.brokers,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(o.partitions),
    PORT: String(port),
    HOST: "127.0.0.1",
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    LOG_LEVEL: "warn",
    NODE_ID: `bench-ingest-${process.pid}`,
  });
  const node = createNode(config);
  await node.broker.start();
  return node;
}

/** Ingest connects to Kafka in the background: wait until a request is answered 200. */
async function untilAccepting(url: string, body: string): Promise<void> {
  const deadline = Date.now() + 60000;
  for (;;) {
    const status = await new Promise<number>(resolve => {
      const req = http.request(url, { method: "POST", headers: { "Content-Type": "application/json" } });
      req.on("response", res => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", () => resolve(0));
      req.end(body);
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`the gateway still answers ${status} after 60 s`);
    await new Promise(r => setTimeout(r, 200));
  }
}

async function topicSize(admin: Admin, topic: string): Promise<number> {
  return (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
}

/** The topic's size once nothing more arrives (what a warm-up left in flight has landed). */
async function settledTopicSize(admin: Admin, topic: string): Promise<number> {
  let last = await topicSize(admin, topic);
  for (;;) {
    await new Promise(r => setTimeout(r, 250));
    const now = await topicSize(admin, topic);
    if (now === last) return now;
    last = now;
  }
}

/**
 * The bare producer: kafkajs with the settings of adapters/log/kafka-log.ts (idempotent, acks=all,
 * one request in flight, the partition named per message), sending the same messages in sends of
 * `perSend` messages, one after the other, for `seconds`. Returns messages acknowledged per second.
 */
async function rawProduce(
  producer: ReturnType<Kafka["producer"]>,
  topic: string,
  messages: Message[],
  perSend: number,
  seconds: number,
): Promise<{ perSecond: number; acknowledged: number; cpuMicrosPerMessage: number }> {
  const sends: Message[][] = [];
  const cycle = Array.from(
    { length: Math.max(1, Math.ceil(perSend / messages.length)) },
    () => messages,
  ).flat();
  for (let i = 0; i < cycle.length; i += perSend) sends.push(cycle.slice(i, i + perSend));
  let acknowledged = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const until = started + seconds * 1000;
  let i = 0;
  while (performance.now() < until) {
    const chunk = sends[i++ % sends.length];
    await producer.send({ topic, acks: -1, messages: chunk });
    acknowledged += chunk.length;
  }
  const used = process.cpuUsage(cpu);
  return {
    perSecond: acknowledged / ((performance.now() - started) / 1000),
    acknowledged,
    cpuMicrosPerMessage: (used.user + used.system) / acknowledged,
  };
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map(w => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

function failures(r: CannonResult): number {
  return r.non2xx + r.errors + r.timeouts;
}

interface Stat {
  median: number;
  min: number;
  max: number;
}

function stat(values: number[]): Stat {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

const showStat = (s: Stat, digits = 0) =>
  `${fmt(s.median, digits)} (${fmt(s.min, digits)}-${fmt(s.max, digits)})`;
const showPct = (s: Stat) =>
  `${(s.median * 100).toFixed(1)}% (${(s.min * 100).toFixed(1)}-${(s.max * 100).toFixed(1)}%)`;
const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

/** One measured autocannon run of the gateway with its topic window. */
interface GatewayRun {
  result: CannonResult;
  perSecond: number;
  /** CPU time of this process (the server's side: all its threads) per request answered 200. */
  cpuMicrosPerRequest: number;
  accepted: number;
  landed: number;
}

const PINNED = [
  "bench",
  "gateway_rps",
  "bare_rps",
  "ratio",
  "p99_ms",
  "batch_ticks_per_s",
  "raw_producer_ticks_per_s",
  "batch_ratio",
] as const;

/**
 * With --profile: the V8 CPU profiler of this process (the inspector, as `node --cpu-prof` uses)
 * runs during each measured gateway run only, so start-up and warm-ups stay out of the profile.
 */
class GatewayProfiler {
  private readonly session = new Session();
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), "bench-ingest-profile-"));

  async start(): Promise<void> {
    this.session.connect();
    await this.session.post("Profiler.enable");
    await this.session.post("Profiler.start");
  }

  /** Stops, and prints where the CPU went: self time by module and by function, shares of the busy time. */
  async stop(title: string): Promise<void> {
    const { profile } = await this.session.post("Profiler.stop");
    this.session.disconnect();
    writeFileSync(path.join(this.dir, "gateway.cpuprofile"), JSON.stringify(profile));
    const [summary] = summarizeProfiles(this.dir, 40);
    rmSync(this.dir, { recursive: true, force: true });
    const idle = summary.byModule.find(m => m.name === "(idle)")?.share ?? 0;
    const busy = (share: number) => `${((share / (1 - idle)) * 100).toFixed(1).padStart(5)}%`;
    console.log(
      `CPU profile of this process (the gateway) during ${title}: ${fmt(summary.seconds, 1)} s sampled, ` +
        `${(idle * 100).toFixed(0)}% idle; self time as a share of the busy time`,
    );
    console.log("  by module:");
    for (const m of summary.byModule.filter(x => x.name !== "(idle)").slice(0, 14))
      console.log(`    ${busy(m.share)}  ${m.name}`);
    console.log("  by function:");
    for (const f of summary.byFunction.filter(x => !x.name.startsWith("(idle)")).slice(0, 16))
      console.log(`    ${busy(f.share)}  ${f.name}`);
    console.log("");
  }
}

async function main(): Promise<Record<string, unknown>> {
  const o = parseArgs(process.argv.slice(2));
  if (o.profile) {
    o.gatewayOnly = true;
    o.repeats = 1;
  }
  const scratch = mkdtempSync(path.join(os.tmpdir(), "bench-ingest-"));
  const suffix = `${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
  const topic = `bench_ingest_${suffix}`;
  const rawTopic = `bench_ingest_raw_${suffix}`;
  const cpus = os.cpus();
  const began = performance.now();
  console.log("Ingest benchmark");
  console.log(
    `node ${process.version}, ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? "unknown"}), ` +
      `${fmt(os.totalmem() / 1024 ** 3, 1)} GiB RAM, load average ${os
        .loadavg()
        .map(l => l.toFixed(2))
        .join(" ")}`,
  );
  console.log(
    `Kafka ${o.brokers}, topics ${topic} and ${rawTopic} (${o.partitions} partitions); ${o.repeats} interleaved ` +
      `repeats of ${o.durationSeconds} s per measurement, after one ${o.warmupSeconds} s warm-up of each side\n`,
  );

  const source = createMessageSource({ seed: "bench-ingest" });
  const single = JSON.stringify(source.nextPrice());
  const batchItems = Array.from({ length: o.batchSize }, () => source.nextPrice());
  const batch = JSON.stringify(batchItems);
  // What the gateway produces for that batch: the validated message, keyed and placed by symbol.
  const rawMessages: Message[] = batchItems.map(item => {
    const parsed = parseMessage(item);
    if (!parsed.ok) throw new Error(`the generator made an invalid tick: ${JSON.stringify(parsed.issues)}`);
    const key = messageKey(parsed.message);
    return { key, value: JSON.stringify(parsed.message), partition: partitionForKey(key, o.partitions) };
  });

  const kafka = new Kafka({
    clientId: "bench-ingest",
    brokers: o.brokers.split(","),
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  const barePort = await freePort();
  const bare = await startBareServer(barePort);
  let node: StockNode | null = null;
  try {
    await admin.createTopics({
      topics: [{ topic: rawTopic, numPartitions: o.partitions }],
      waitForLeaders: true,
    });
    await producer.connect();
    const gatewayPort = await freePort();
    node = await startGateway(o, topic, gatewayPort);
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}/ingest`;
    const bareUrl = `http://127.0.0.1:${barePort}/ingest`;
    await untilAccepting(gatewayUrl, single);

    /** Requests/s of the previous run per target: sizes the next fixed-amount run. */
    const rates = new Map<string, number>();
    const warmUp = async (name: string, url: string, body: string, connections: number) => {
      const r = await cannon({ url, body, connections, durationSeconds: o.warmupSeconds }, scratch);
      rates.set(name, Math.max(1, r["2xx"] / r.duration));
    };
    const measure = async (name: string, url: string, body: string, connections: number) => {
      const amount = Math.max(connections * 4, Math.round((rates.get(name) ?? 100) * o.durationSeconds));
      // The servers run in this process, the load in another: this process's CPU is the server's.
      const cpu = process.cpuUsage();
      const result = await cannon({ url, body, connections, amount }, scratch);
      const used = process.cpuUsage(cpu);
      const perSecond = result["2xx"] / result.duration;
      rates.set(name, Math.max(1, perSecond));
      return {
        result,
        perSecond,
        cpuMicrosPerRequest: (used.user + used.system) / Math.max(1, result["2xx"]),
      };
    };
    const measureGateway = async (name: string, body: string, connections: number, perRequest: number) => {
      const before = await settledTopicSize(admin, topic);
      const profiler = o.profile ? new GatewayProfiler() : null;
      await profiler?.start();
      const run = await measure(name, gatewayUrl, body, connections);
      await profiler?.stop(
        perRequest === 1
          ? `single messages, ${connections} connections, ${fmt(run.perSecond)} requests/s`
          : `${fmt(perRequest)}-tick arrays, ${connections} connections, ${fmt(run.perSecond * perRequest)} ticks/s`,
      );
      // Every request was answered: what was answered 200 is acknowledged, hence in the topic now.
      const landed = (await settledTopicSize(admin, topic)) - before;
      return { ...run, accepted: run.result["2xx"] * perRequest, landed } satisfies GatewayRun;
    };

    const summary: Record<string, unknown> = { bench: "ingest" };
    let failed = false;
    const checks: string[] = [];
    const checkRuns = (what: string, runs: GatewayRun[]) => {
      const accepted = runs.reduce((n, r) => n + r.accepted, 0);
      const landed = runs.reduce((n, r) => n + r.landed, 0);
      const bad = runs.filter(r => r.landed !== r.accepted).length;
      const failedRequests = runs.reduce((n, r) => n + failures(r.result), 0);
      if (bad > 0 || failedRequests > 0) failed = true;
      checks.push(
        `check ${what}: ${fmt(accepted)} messages answered 200 in the measured runs, the topic grew by ` +
          `${fmt(landed)} in those windows` +
          (bad === 0 ? " (equal in every run)" : ` (MISMATCH in ${bad} run(s))`) +
          `; ${fmt(failedRequests)} failed requests`,
      );
      return { accepted, landed };
    };

    if (o.parts.has("single")) {
      if (!o.gatewayOnly) await warmUp("bare", bareUrl, single, o.connections);
      await warmUp("gateway", gatewayUrl, single, o.connections);
      const bareRuns: { result: CannonResult; perSecond: number; cpuMicrosPerRequest: number }[] = [];
      const gatewayRuns: GatewayRun[] = [];
      for (let r = 0; r < o.repeats; r++) {
        if (!o.gatewayOnly) bareRuns.push(await measure("bare", bareUrl, single, o.connections));
        gatewayRuns.push(await measureGateway("gateway", single, o.connections, 1));
      }
      const gw = stat(gatewayRuns.map(r => r.perSecond));
      const p99 = stat(gatewayRuns.map(r => r.result.latency.p99));
      const p50 = stat(gatewayRuns.map(r => r.result.latency.p50));
      console.log(
        `(a) single-message requests, ${o.connections} connections, median (min-max) of ${o.repeats}`,
      );
      const rows = [["server", "requests/s", "p50 ms", "p99 ms", "CPU µs/request", "failed"]];
      if (!o.gatewayOnly) {
        const bs = stat(bareRuns.map(r => r.perSecond));
        rows.push([
          "bare node:http (JSON.parse, 200)",
          showStat(bs),
          showStat(stat(bareRuns.map(r => r.result.latency.p50)), 1),
          showStat(stat(bareRuns.map(r => r.result.latency.p99)), 1),
          showStat(stat(bareRuns.map(r => r.cpuMicrosPerRequest))),
          fmt(bareRuns.reduce((n, r) => n + failures(r.result), 0)),
        ]);
        summary.bare_cpu_us_per_request = Math.round(stat(bareRuns.map(r => r.cpuMicrosPerRequest)).median);
      }
      rows.push([
        "gateway -> ingest -> Kafka (acks=all)",
        showStat(gw),
        showStat(p50, 1),
        showStat(p99, 1),
        showStat(stat(gatewayRuns.map(r => r.cpuMicrosPerRequest))),
        fmt(gatewayRuns.reduce((n, r) => n + failures(r.result), 0)),
      ]);
      summary.gateway_cpu_us_per_request = Math.round(
        stat(gatewayRuns.map(r => r.cpuMicrosPerRequest)).median,
      );
      console.log(table(rows));
      console.log(
        `per repeat, gateway / bare requests/s: ${gatewayRuns
          .map((g, i) => (bareRuns[i] ? `${((g.perSecond / bareRuns[i].perSecond) * 100).toFixed(1)}%` : "-"))
          .join(", ")}`,
      );
      summary.gateway_rps = Math.round(gw.median);
      if (!o.gatewayOnly) {
        const bs = stat(bareRuns.map(r => r.perSecond));
        const ratio = stat(gatewayRuns.map((g, i) => g.perSecond / bareRuns[i].perSecond));
        console.log(
          `gateway / bare: ${showPct(ratio)} (target >= 50%); gateway p99 ${showStat(p99, 1)} ms (target <= 10 ms)`,
        );
        summary.bare_rps = Math.round(bs.median);
        summary.ratio = round(ratio.median, 3);
        summary.ratio_min = round(ratio.min, 3);
        summary.ratio_max = round(ratio.max, 3);
        summary.bare_rps_min = Math.round(bs.min);
        summary.bare_rps_max = Math.round(bs.max);
      }
      summary.p99_ms = p99.median;
      summary.p99_ms_max = p99.max;
      summary.gateway_rps_min = Math.round(gw.min);
      summary.gateway_rps_max = Math.round(gw.max);
      checkRuns("(a)", gatewayRuns);
      console.log("");
    }

    if (o.parts.has("batch")) {
      await warmUp("batch", gatewayUrl, batch, o.batchConnections);
      const rawPerSend = o.rawPerSend ?? o.batchSize;
      if (!o.gatewayOnly) await rawProduce(producer, rawTopic, rawMessages, rawPerSend, o.warmupSeconds);
      const gatewayRuns: GatewayRun[] = [];
      const rawResults: { perSecond: number; cpuMicrosPerMessage: number }[] = [];
      for (let r = 0; r < o.repeats; r++) {
        gatewayRuns.push(await measureGateway("batch", batch, o.batchConnections, o.batchSize));
        if (!o.gatewayOnly)
          rawResults.push(await rawProduce(producer, rawTopic, rawMessages, rawPerSend, o.durationSeconds));
      }
      const rawRuns = rawResults.map(r => r.perSecond);
      const gatewayCpuPerTick = stat(gatewayRuns.map(r => r.cpuMicrosPerRequest / o.batchSize));
      const ticks = stat(gatewayRuns.map(r => r.perSecond * o.batchSize));
      console.log(
        `(b) ${fmt(o.batchSize)}-tick JSON arrays, ${o.batchConnections} connections, median (min-max) of ${o.repeats}`,
      );
      const rows = [["measure", "ticks/s", "p50 ms", "p99 ms", "CPU µs/tick", "failed"]];
      rows.push([
        "gateway -> ingest -> Kafka (acks=all)",
        showStat(ticks),
        showStat(stat(gatewayRuns.map(r => r.result.latency.p50)), 1),
        showStat(stat(gatewayRuns.map(r => r.result.latency.p99)), 1),
        showStat(gatewayCpuPerTick, 1),
        fmt(gatewayRuns.reduce((n, r) => n + failures(r.result), 0)),
      ]);
      summary.batch_cpu_us_per_tick = round(gatewayCpuPerTick.median, 1);
      if (!o.gatewayOnly) {
        const rawCpu = stat(rawResults.map(r => r.cpuMicrosPerMessage));
        rows.push([
          `bare kafkajs producer, ${fmt(rawPerSend)} per send`,
          showStat(stat(rawRuns)),
          "-",
          "-",
          showStat(rawCpu, 1),
          "0",
        ]);
        summary.raw_cpu_us_per_tick = round(rawCpu.median, 1);
      }
      console.log(table(rows));
      summary.batch_ticks_per_s = Math.round(ticks.median);
      if (!o.gatewayOnly) {
        const raw = stat(rawRuns);
        const ratio = stat(gatewayRuns.map((g, i) => (g.perSecond * o.batchSize) / rawRuns[i]));
        console.log(
          `per repeat, gateway / bare producer: ${gatewayRuns
            .map((g, i) => `${(((g.perSecond * o.batchSize) / rawRuns[i]) * 100).toFixed(1)}%`)
            .join(", ")}`,
        );
        console.log(
          `gateway / bare producer: ${showPct(ratio)} (target >= 60%); gateway ${fmt(ticks.median)} ticks/s (target >= 50,000)`,
        );
        summary.raw_producer_ticks_per_s = Math.round(raw.median);
        summary.batch_ratio = round(ratio.median, 3);
        summary.batch_ratio_min = round(ratio.min, 3);
        summary.batch_ratio_max = round(ratio.max, 3);
        summary.raw_producer_ticks_per_s_min = Math.round(raw.min);
        summary.raw_producer_ticks_per_s_max = Math.round(raw.max);
      }
      summary.batch_ticks_per_s_min = Math.round(ticks.min);
      summary.batch_ticks_per_s_max = Math.round(ticks.max);
      summary.batch_p99_ms = stat(gatewayRuns.map(r => r.result.latency.p99)).median;
      checkRuns("(b)", gatewayRuns);
      console.log("");
    }

    for (const line of checks) console.log(line);
    summary.repeats = o.repeats;
    summary.duration_s = o.durationSeconds;
    summary.loss_check = failed ? "failed" : "ok";
    summary.elapsed_s = Math.round((performance.now() - began) / 1000);
    summary.load_average = os.loadavg().map(l => round(l, 2));
    if (failed) process.exitCode = 1;
    return summary;
  } finally {
    await node?.broker.stop();
    await producer.disconnect().catch(() => undefined);
    await new Promise(resolve => bare.close(resolve));
    await admin.deleteTopics({ topics: [topic, rawTopic] }).catch(() => undefined);
    await admin.disconnect();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  summary => {
    // The pinned fields first, then the rest; the last line of the output.
    const ordered: Record<string, unknown> = {};
    for (const k of PINNED) ordered[k] = summary[k] ?? null;
    for (const [k, v] of Object.entries(summary)) if (!(k in ordered)) ordered[k] = v;
    console.log(JSON.stringify(ordered));
  },
  err => {
    console.error(err);
    process.exit(1);
  },
);
