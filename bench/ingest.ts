import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { Admin, Message, Producer } from "kafkajs";
import { createNode, type StockNode } from "../app/node";
import { messageKey, parseMessage } from "../domain/messages";
import { createMessageSource } from "../generator/models";
import { loadConfig } from "../lib/config";
import { freePort } from "../lib/net";
import { partitionForKey } from "../lib/partitioner";
import { parseOptions } from "./harness/args";
import { summarizeProfiles } from "./harness/cpu-profile";
import { fmt, rounded, spread, spreadText, type Spread } from "./harness/figures";
import { machine, table } from "./harness/print";
import { runNode } from "./harness/proc";
import { BenchStack, serversFromEnv, unique } from "./harness/stack";

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

/** The topics' partitions. */
const PARTITIONS = 12;

interface Options {
  /** Seconds per measured run. */
  duration: number;
  /** Seconds of the warm-up of each side. */
  warmup: number;
  repeats: number;
  connections: number;
  batchConnections: number;
  batchSize: number;
  /** Messages per send of the bare producer (0: --batch-size, one request's worth). */
  rawPerSend: number;
  quick: boolean;
  /** Instead of the comparison: the gateway alone, one run of each part, CPU-profiled (implies --gateway-only). */
  profile: boolean;
  /** Only the gateway runs (no bare server, no raw producer): for a CPU profile of the gateway. */
  gatewayOnly: boolean;
  /** Which parts run: single messages (a), batches (b). */
  parts: Set<"single" | "batch">;
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const defaults: Options = {
    ...(quick ? { duration: 3, warmup: 2, repeats: 5 } : { duration: 8, warmup: 3, repeats: 7 }),
    ...{ connections: 32, batchConnections: 4, batchSize: 1000, rawPerSend: 0 },
    ...{ parts: new Set(["single", "batch"]), gatewayOnly: false, quick, profile: false },
  };
  const o = parseOptions(argv, defaults, {
    "--only": (part, o) => {
      if (part !== "single" && part !== "batch") throw new Error("--only takes single or batch");
      o.parts = new Set([part]);
    },
  });
  return o.profile ? { ...o, gatewayOnly: true, repeats: 1 } : o;
}

/** What the autocannon CLI prints with --json, the parts used here. */
interface CannonResult {
  latency: { p50: number; p99: number };
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
async function cannon(load: Load, scratch: string): Promise<CannonResult> {
  const bodyFile = path.join(scratch, `body-${randomBytes(4).toString("hex")}.json`);
  writeFileSync(bodyFile, load.body);
  const args = [
    require.resolve("autocannon/autocannon.js"),
    ...["--json", "--no-progress", "-m", "POST", "-H", "Content-Type=application/json", "-i", bodyFile],
    ...["-c", String(load.connections), "-t", "20", load.url],
    // The end of an --amount run is noticed at the next sample: sample often, so it is timed closely.
    ...["-L", "20"],
    ...(load.amount !== undefined ? ["-a", String(load.amount)] : ["-d", String(load.durationSeconds)]),
  ];
  const { code, out, err } = await runNode(args);
  try {
    if (code !== 0) throw new Error(`exit code ${code}`);
    return JSON.parse(out.trim().split("\n").pop() ?? "") as CannonResult;
  } catch (e) {
    throw new Error(`autocannon failed (${(e as Error).message}):\n${err}\n${out}`);
  }
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

async function startGateway(brokers: string, topic: string, port: number): Promise<StockNode> {
  const config = loadConfig({
    SERVICES: "gateway,ingest",
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(PARTITIONS),
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
  producer: Producer,
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

function failures(r: CannonResult): number {
  return r.non2xx + r.errors + r.timeouts;
}

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

const showPct = (s: Spread) =>
  `${(s.median * 100).toFixed(1)}% (${(s.min * 100).toFixed(1)}-${(s.max * 100).toFixed(1)}%)`;

/** One measured autocannon run against a server in this process. */
interface LoadRun {
  result: CannonResult;
  perSecond: number;
  /** CPU time of this process (the server's side: all its threads) per request answered 200. */
  cpuMicrosPerRequest: number;
}

/** One measured run of the gateway with its topic window. */
interface GatewayRun extends LoadRun {
  accepted: number;
  landed: number;
}

/** The servers and bodies of a run, and its results so far. */
interface IngestRun {
  o: Options;
  scratch: string;
  admin: Admin;
  producer: Producer;
  topic: string;
  rawTopic: string;
  gatewayUrl: string;
  bareUrl: string;
  single: string;
  batch: string;
  /** What the gateway produces for `batch`: the validated messages, keyed and placed by symbol. */
  rawMessages: Message[];
  /** Requests/s of the previous run per target: sizes the next fixed-amount run. */
  rates: Map<string, number>;
  /** The result line's fields, in the order they follow the pinned ones. */
  summary: Record<string, unknown>;
  checks: string[];
  failed: boolean;
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

function printHeader(o: Options, brokers: string, topic: string, rawTopic: string): void {
  console.log("Ingest benchmark");
  console.log(
    `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim() ?? "unknown"}), ` +
      `${machine.memory()}, load average ${machine.load()}`,
  );
  console.log(
    `Kafka ${brokers}, topics ${topic} and ${rawTopic} (${PARTITIONS} partitions); ${o.repeats} interleaved ` +
      `repeats of ${o.duration} s per measurement, after one ${o.warmup} s warm-up of each side\n`,
  );
}

/** A course-generator price tick, a JSON array of `batchSize` of them, and what the gateway produces for it. */
function requestBodies(o: Options): Pick<IngestRun, "single" | "batch" | "rawMessages"> {
  const source = createMessageSource({ seed: "bench-ingest" });
  const single = JSON.stringify(source.nextPrice());
  const batchItems = Array.from({ length: o.batchSize }, () => source.nextPrice());
  const rawMessages: Message[] = batchItems.map(item => {
    const parsed = parseMessage(item);
    if (!parsed.ok) throw new Error(`the generator made an invalid tick: ${JSON.stringify(parsed.issues)}`);
    const key = messageKey(parsed.message);
    return { key, value: JSON.stringify(parsed.message), partition: partitionForKey(key, PARTITIONS) };
  });
  return { single, batch: JSON.stringify(batchItems), rawMessages };
}

async function warmUp(run: IngestRun, name: string, url: string, body: string, connections: number) {
  const r = await cannon({ url, body, connections, durationSeconds: run.o.warmup }, run.scratch);
  run.rates.set(name, Math.max(1, r["2xx"] / r.duration));
}

async function measure(run: IngestRun, name: string, url: string, body: string, connections: number) {
  const amount = Math.max(connections * 4, Math.round((run.rates.get(name) ?? 100) * run.o.duration));
  // The servers run in this process, the load in another: this process's CPU is the server's.
  const cpu = process.cpuUsage();
  const result = await cannon({ url, body, connections, amount }, run.scratch);
  const used = process.cpuUsage(cpu);
  const perSecond = result["2xx"] / result.duration;
  run.rates.set(name, Math.max(1, perSecond));
  const cpuMicrosPerRequest = (used.user + used.system) / Math.max(1, result["2xx"]);
  return { result, perSecond, cpuMicrosPerRequest } satisfies LoadRun;
}

async function measureGateway(
  run: IngestRun,
  name: string,
  body: string,
  connections: number,
  perRequest: number,
) {
  const before = await settledTopicSize(run.admin, run.topic);
  const profiler = run.o.profile ? new GatewayProfiler() : null;
  await profiler?.start();
  const load = await measure(run, name, run.gatewayUrl, body, connections);
  await profiler?.stop(
    perRequest === 1
      ? `single messages, ${connections} connections, ${fmt(load.perSecond)} requests/s`
      : `${fmt(perRequest)}-tick arrays, ${connections} connections, ${fmt(load.perSecond * perRequest)} ticks/s`,
  );
  // Every request was answered: what was answered 200 is acknowledged, hence in the topic now.
  const landed = (await settledTopicSize(run.admin, run.topic)) - before;
  return { ...load, accepted: load.result["2xx"] * perRequest, landed } satisfies GatewayRun;
}

/** The topic grew by exactly what was answered 200, in every measured run, or the bench fails. */
function checkRuns(run: IngestRun, what: string, runs: GatewayRun[]): void {
  const accepted = runs.reduce((n, r) => n + r.accepted, 0);
  const landed = runs.reduce((n, r) => n + r.landed, 0);
  const bad = runs.filter(r => r.landed !== r.accepted).length;
  const failedRequests = runs.reduce((n, r) => n + failures(r.result), 0);
  if (bad > 0 || failedRequests > 0) run.failed = true;
  run.checks.push(
    `check ${what}: ${fmt(accepted)} messages answered 200 in the measured runs, the topic grew by ` +
      `${fmt(landed)} in those windows` +
      (bad === 0 ? " (equal in every run)" : ` (MISMATCH in ${bad} run(s))`) +
      `; ${fmt(failedRequests)} failed requests`,
  );
}

/** A table row: rate, p50, p99 and CPU per unit (a request holds `perRequest` units), failed requests. */
function loadRow(label: string, runs: LoadRun[], perRequest = 1, cpuDigits = 0): string[] {
  return [
    label,
    spreadText(spread(runs.map(r => r.perSecond * perRequest))),
    spreadText(spread(runs.map(r => r.result.latency.p50)), 1),
    spreadText(spread(runs.map(r => r.result.latency.p99)), 1),
    spreadText(spread(runs.map(r => r.cpuMicrosPerRequest / perRequest)), cpuDigits),
    fmt(runs.reduce((n, r) => n + failures(r.result), 0)),
  ];
}

/** (a): single messages, the bare server and the gateway interleaved. */
async function partSingle(run: IngestRun): Promise<void> {
  const { o, single } = run;
  if (!o.gatewayOnly) await warmUp(run, "bare", run.bareUrl, single, o.connections);
  await warmUp(run, "gateway", run.gatewayUrl, single, o.connections);
  const bareRuns: LoadRun[] = [];
  const gatewayRuns: GatewayRun[] = [];
  for (let r = 0; r < o.repeats; r++) {
    if (!o.gatewayOnly) bareRuns.push(await measure(run, "bare", run.bareUrl, single, o.connections));
    gatewayRuns.push(await measureGateway(run, "gateway", single, o.connections, 1));
  }
  reportSingle(run, bareRuns, gatewayRuns);
  checkRuns(run, "(a)", gatewayRuns);
  console.log("");
}

function reportSingle(run: IngestRun, bareRuns: LoadRun[], gatewayRuns: GatewayRun[]): void {
  const { o, summary } = run;
  const gw = spread(gatewayRuns.map(r => r.perSecond));
  const p99 = spread(gatewayRuns.map(r => r.result.latency.p99));
  const cpu = (runs: LoadRun[]) => Math.round(spread(runs.map(r => r.cpuMicrosPerRequest)).median);
  console.log(`(a) single-message requests, ${o.connections} connections, median (min-max) of ${o.repeats}`);
  const rows = [["server", "requests/s", "p50 ms", "p99 ms", "CPU µs/request", "failed"]];
  if (!o.gatewayOnly) {
    rows.push(loadRow("bare node:http (JSON.parse, 200)", bareRuns));
    summary.bare_cpu_us_per_request = cpu(bareRuns);
  }
  rows.push(loadRow("gateway -> ingest -> Kafka (acks=all)", gatewayRuns));
  summary.gateway_cpu_us_per_request = cpu(gatewayRuns);
  console.log(table(rows));
  console.log(
    `per repeat, gateway / bare requests/s: ${gatewayRuns
      .map((g, i) => (bareRuns[i] ? `${((g.perSecond / bareRuns[i].perSecond) * 100).toFixed(1)}%` : "-"))
      .join(", ")}`,
  );
  summary.gateway_rps = Math.round(gw.median);
  if (!o.gatewayOnly) {
    const bs = spread(bareRuns.map(r => r.perSecond));
    const ratio = spread(gatewayRuns.map((g, i) => g.perSecond / bareRuns[i].perSecond));
    console.log(
      `gateway / bare: ${showPct(ratio)} (target >= 50%); gateway p99 ${spreadText(p99, 1)} ms (target <= 10 ms)`,
    );
    Object.assign(summary, {
      bare_rps: Math.round(bs.median),
      ratio: rounded(ratio.median, 3),
      ratio_min: rounded(ratio.min, 3),
      ratio_max: rounded(ratio.max, 3),
      bare_rps_min: Math.round(bs.min),
      bare_rps_max: Math.round(bs.max),
    });
  }
  Object.assign(summary, {
    p99_ms: p99.median,
    p99_ms_max: p99.max,
    gateway_rps_min: Math.round(gw.min),
    gateway_rps_max: Math.round(gw.max),
  });
}

/** (b): 1,000-tick arrays through the gateway, interleaved with the bare producer sending the same messages. */
async function partBatch(run: IngestRun): Promise<void> {
  const { o } = run;
  await warmUp(run, "batch", run.gatewayUrl, run.batch, o.batchConnections);
  const rawPerSend = o.rawPerSend || o.batchSize;
  const raw = (seconds: number) =>
    rawProduce(run.producer, run.rawTopic, run.rawMessages, rawPerSend, seconds);
  if (!o.gatewayOnly) await raw(o.warmup);
  const gatewayRuns: GatewayRun[] = [];
  const rawRuns: { perSecond: number; cpuMicrosPerMessage: number }[] = [];
  for (let r = 0; r < o.repeats; r++) {
    gatewayRuns.push(await measureGateway(run, "batch", run.batch, o.batchConnections, o.batchSize));
    if (!o.gatewayOnly) rawRuns.push(await raw(o.duration));
  }
  reportBatch(run, rawPerSend, gatewayRuns, rawRuns);
  checkRuns(run, "(b)", gatewayRuns);
  console.log("");
}

function reportBatch(
  run: IngestRun,
  rawPerSend: number,
  gatewayRuns: GatewayRun[],
  rawRuns: { perSecond: number; cpuMicrosPerMessage: number }[],
): void {
  const { o, summary } = run;
  const ticks = spread(gatewayRuns.map(r => r.perSecond * o.batchSize));
  console.log(
    `(b) ${fmt(o.batchSize)}-tick JSON arrays, ${o.batchConnections} connections, median (min-max) of ${o.repeats}`,
  );
  const rows = [["measure", "ticks/s", "p50 ms", "p99 ms", "CPU µs/tick", "failed"]];
  rows.push(loadRow("gateway -> ingest -> Kafka (acks=all)", gatewayRuns, o.batchSize, 1));
  summary.batch_cpu_us_per_tick = rounded(
    spread(gatewayRuns.map(r => r.cpuMicrosPerRequest / o.batchSize)).median,
    1,
  );
  if (!o.gatewayOnly) {
    const rawCpu = spread(rawRuns.map(r => r.cpuMicrosPerMessage));
    const rate = spreadText(spread(rawRuns.map(r => r.perSecond)));
    rows.push([
      `bare kafkajs producer, ${fmt(rawPerSend)} per send`,
      rate,
      "-",
      "-",
      spreadText(rawCpu, 1),
      "0",
    ]);
    summary.raw_cpu_us_per_tick = rounded(rawCpu.median, 1);
  }
  console.log(table(rows));
  summary.batch_ticks_per_s = Math.round(ticks.median);
  if (!o.gatewayOnly) {
    const raw = spread(rawRuns.map(r => r.perSecond));
    const ratios = gatewayRuns.map((g, i) => (g.perSecond * o.batchSize) / rawRuns[i].perSecond);
    const ratio = spread(ratios);
    console.log(
      `per repeat, gateway / bare producer: ${ratios.map(r => `${(r * 100).toFixed(1)}%`).join(", ")}`,
    );
    console.log(
      `gateway / bare producer: ${showPct(ratio)} (target >= 60%); gateway ${fmt(ticks.median)} ticks/s (target >= 50,000)`,
    );
    Object.assign(summary, {
      raw_producer_ticks_per_s: Math.round(raw.median),
      batch_ratio: rounded(ratio.median, 3),
      batch_ratio_min: rounded(ratio.min, 3),
      batch_ratio_max: rounded(ratio.max, 3),
      raw_producer_ticks_per_s_min: Math.round(raw.min),
      raw_producer_ticks_per_s_max: Math.round(raw.max),
    });
  }
  Object.assign(summary, {
    batch_ticks_per_s_min: Math.round(ticks.min),
    batch_ticks_per_s_max: Math.round(ticks.max),
    batch_p99_ms: spread(gatewayRuns.map(r => r.result.latency.p99)).median,
  });
}

/** Gateway and ingest in this process, on a topic they create; answering 200 once ingest reaches Kafka. */
async function startedGateway(stack: BenchStack, topic: string, body: string) {
  const port = await freePort();
  const node = await startGateway(stack.servers.brokers, topic, port);
  stack.atEnd(() => node.broker.stop());
  const url = `http://127.0.0.1:${port}/ingest`;
  await untilAccepting(url, body);
  return url;
}

async function main(): Promise<Record<string, unknown>> {
  const o = parseArgs(process.argv.slice(2));
  const began = performance.now();
  const stack = new BenchStack(serversFromEnv(), PARTITIONS, "bench-ingest");
  const scratch = mkdtempSync(path.join(os.tmpdir(), "bench-ingest-"));
  stack.atEnd(async () => rmSync(scratch, { recursive: true, force: true }));
  try {
    const topic = unique("bench_ingest");
    stack.atEnd(async () => (await stack.connectedAdmin()).deleteTopics({ topics: [topic] }));
    const rawTopic = await stack.topic("bench_ingest_raw");
    printHeader(o, stack.servers.brokers, topic, rawTopic);
    const bodies = requestBodies(o);
    const barePort = await freePort();
    const bare = await startBareServer(barePort);
    stack.atEnd(() => new Promise(resolve => bare.close(resolve)));
    const producer = await stack.producer();
    stack.atEnd(() => producer.disconnect());
    const gatewayUrl = await startedGateway(stack, topic, bodies.single);
    const bareUrl = `http://127.0.0.1:${barePort}/ingest`;
    const admin = await stack.connectedAdmin();
    const results = { rates: new Map(), summary: { bench: "ingest" }, checks: [], failed: false };
    const run: IngestRun = {
      o,
      scratch,
      admin,
      producer,
      topic,
      rawTopic,
      gatewayUrl,
      bareUrl,
      ...bodies,
      ...results,
    };
    if (o.parts.has("single")) await partSingle(run);
    if (o.parts.has("batch")) await partBatch(run);
    for (const line of run.checks) console.log(line);
    Object.assign(run.summary, {
      repeats: o.repeats,
      duration_s: o.duration,
      loss_check: run.failed ? "failed" : "ok",
      elapsed_s: Math.round((performance.now() - began) / 1000),
      load_average: os.loadavg().map(l => rounded(l, 2)),
    });
    if (run.failed) process.exitCode = 1;
    return run.summary;
  } finally {
    await stack.close();
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
