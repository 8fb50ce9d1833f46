import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Admin, Message } from "kafkajs";
import { createNode } from "../app/node";
import { messageKey, parseMessage } from "../domain/messages";
import { createMessageSource } from "../generator/models";
import { loadConfig } from "../lib/config";
import { freePort } from "../lib/net";
import { partitionForKey } from "../lib/partitioner";
import { parseOptions } from "./harness/args";
import { printProfile } from "./harness/cpu-profile";
import { fmt, pct, pctSpread, rounded, spread, spreadFields, spreadText } from "./harness/figures";
import { machine, printLines, table } from "./harness/print";
import { cpuMicrosSince, nodeJson } from "./harness/proc";
import { BenchStack, serversFromEnv } from "./harness/stack";

/**
 * The ingest path against what the machine does without our code, as BENCHMARKS.md ("Ingest")
 * explains: (a) single-message POST /ingest next to a bare node:http server, (b) 1,000-tick arrays
 * next to a bare kafkajs producer, each pair interleaved; the load from autocannon in a child process.
 * A run whose topic did not grow by exactly what was answered 200 fails the bench.
 *
 *   npm run bench:ingest [-- --quick] [-- --repeats 7 --duration 8 --connections 32 --batch-connections 4]
 *   npm run bench:ingest -- --profile   # the gateway alone, one run of each part, under the V8 CPU profiler
 */

/** The topics' partitions, and the ticks in one request of (b). */
const PARTITIONS = 12;
const BATCH = 1000;

function parseArgs(argv: string[]) {
  const quick = argv.includes("--quick");
  const o = parseOptions(argv, {
    // Seconds per measured run, and of each side's warm-up.
    ...(quick ? { duration: 3, warmup: 2, repeats: 5 } : { duration: 8, warmup: 3, repeats: 7 }),
    ...{ connections: 32, batchConnections: 4, quick, profile: false },
  });
  return o.profile ? { ...o, repeats: 1 } : o;
}

type Options = ReturnType<typeof parseArgs>;

/** What the autocannon CLI prints with --json, the parts read here. */
interface CannonResult {
  latency: { p50: number; p99: number };
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  "2xx": number;
}

const failures = (r: CannonResult) => r.non2xx + r.errors + r.timeouts;

/** One measured run of one side: units (requests, or ticks in (b)) per second, CPU µs of this process per unit, and for a load run what autocannon saw. */
type Sample = { perSecond: number; cpuMicros: number; result?: CannonResult };

/** autocannon in a process of its own, for `limit` (`-d seconds` or `-a requests`); its JSON summary. */
function cannon(run: IngestRun, url: string, body: string, connections: number, limit: string[]) {
  const bodyFile = path.join(run.scratch, `body-${randomBytes(4).toString("hex")}.json`);
  writeFileSync(bodyFile, body);
  return nodeJson<CannonResult>("autocannon", [
    require.resolve("autocannon/autocannon.js"),
    ...["--json", "--no-progress", "-m", "POST", "-H", "Content-Type=application/json", "-i", bodyFile],
    ...["-c", String(connections), "-t", "20", url, ...limit],
    // The end of an -a run is noticed at the next sample: sample often, so it is timed closely.
    ...["-L", "20"],
  ]);
}

/** The floor to compare with: reads the body, JSON.parses it (the bench sends only valid JSON), answers as the gateway does. */
function startBareServer(port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const payload = JSON.stringify({ accepted: Array.isArray(value) ? value.length : 1 });
      const length = Buffer.byteLength(payload);
      res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": length });
      res.end(payload);
    });
  });
  return new Promise(resolve => server.listen(port, "127.0.0.1", () => resolve(server)));
}

/** Gateway and ingest in this process, on `topic`; its URL once a request is answered 200 (ingest connects to Kafka in the background). */
async function startGateway(stack: BenchStack, topic: string, body: string): Promise<string> {
  const port = await freePort();
  const config = loadConfig({
    SERVICES: "gateway,ingest",
    KAFKA_BROKERS: stack.servers.brokers,
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
  stack.atEnd(() => node.broker.stop());
  const url = `http://127.0.0.1:${port}/ingest`;
  const deadline = Date.now() + 60000;
  for (;;) {
    const init = { method: "POST", headers: { "Content-Type": "application/json" }, body };
    const answer = await fetch(url, init).catch(() => undefined);
    await answer?.arrayBuffer();
    if (answer?.status === 200) return url;
    if (Date.now() > deadline)
      throw new Error(`the gateway still answers ${answer?.status ?? "nothing"} after 60 s`);
    await sleep(200);
  }
}

/** The topic's size once nothing more arrives (what a warm-up left in flight has landed). */
async function settledTopicSize(admin: Admin, topic: string): Promise<number> {
  const size = async () => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
  for (let last = await size(); ;) {
    await sleep(250);
    const now = await size();
    if (now === last) return now;
    last = now;
  }
}

/**
 * The bare producer: kafkajs with the settings of adapters/log/kafka-log.ts (idempotent, acks=all,
 * one request in flight, the partition named per message), sending the messages of one request of
 * (b) per send, one send after the other, for `seconds`.
 */
async function rawProduce(run: IngestRun, seconds: number): Promise<Sample> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  let acknowledged = 0;
  while (performance.now() < started + seconds * 1000) {
    await run.producer.send({ topic: run.rawTopic, acks: -1, messages: run.rawMessages });
    acknowledged += run.rawMessages.length;
  }
  const perSecond = acknowledged / ((performance.now() - started) / 1000);
  return { perSecond, cpuMicros: cpuMicrosSince(cpu) / acknowledged };
}

/** The requests/s of the previous run with this URL and body: sizes the next fixed-amount run. */
const rateKey = (url: string, body: string) => `${url} ${body.length}`;

async function warmUp(run: IngestRun, url: string, body: string, connections: number) {
  const r = await cannon(run, url, body, connections, ["-d", String(run.o.warmup)]);
  run.rates.set(rateKey(url, body), Math.max(1, r["2xx"] / r.duration));
}

/** About `duration` seconds' worth of requests at the previous run's rate, every answer awaited. */
async function measure(run: IngestRun, url: string, body: string, connections: number, perRequest = 1) {
  const amount = Math.max(
    connections * 4,
    Math.round((run.rates.get(rateKey(url, body)) ?? 100) * run.o.duration),
  );
  // The servers run in this process, the load in another: this process's CPU is the server's.
  const cpu = process.cpuUsage();
  const result = await cannon(run, url, body, connections, ["-a", String(amount)]);
  const micros = cpuMicrosSince(cpu);
  run.rates.set(rateKey(url, body), Math.max(1, result["2xx"] / result.duration));
  const perSecond = (result["2xx"] * perRequest) / result.duration;
  return { result, perSecond, cpuMicros: micros / (Math.max(1, result["2xx"]) * perRequest) };
}

/** A measured gateway run, and what was answered 200 and what the topic grew by meanwhile. */
async function measureGateway(run: IngestRun, body: string, connections: number, perRequest: number) {
  const before = await settledTopicSize(run.admin, run.topic);
  const load = () => measure(run, run.gatewayUrl, body, connections, perRequest);
  const what = perRequest === 1 ? "single messages" : `${fmt(perRequest)}-tick arrays`;
  const unit = perRequest === 1 ? "requests" : "ticks";
  const s = run.o.profile
    ? await profiled(load, s => `${what}, ${connections} connections, ${fmt(s.perSecond)} ${unit}/s`)
    : await load();
  // Every request was answered: what was answered 200 is acknowledged, hence in the topic now.
  const landed = (await settledTopicSize(run.admin, run.topic)) - before;
  return { ...s, accepted: s.result["2xx"] * perRequest, landed };
}

type GatewayRun = Awaited<ReturnType<typeof measureGateway>>;

/** With --profile: the V8 CPU profiler of this process (the gateway's) runs during one measured run only. */
async function profiled<T>(load: () => Promise<T>, title: (result: T) => string): Promise<T> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  const result = await load();
  const { profile } = await session.post("Profiler.stop");
  session.disconnect();
  console.log(`CPU profile of this process (the gateway) during ${title(result)}:`);
  printProfile(profile, 16);
  console.log("");
  return result;
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

/** A table row: rate, p50, p99, CPU per unit, failed requests; "-" where autocannon did not measure. */
function row(label: string, runs: Sample[], cpuDigits = 0): string[] {
  const results = runs.flatMap(r => (r.result ? [r.result] : []));
  const latency = (p: "p50" | "p99") =>
    results.length ? spreadText(spread(results.map(r => r.latency[p])), 1) : "-";
  const rate = spreadText(spread(runs.map(r => r.perSecond)));
  const cpu = spreadText(spread(runs.map(r => r.cpuMicros)), cpuDigits);
  return [
    label,
    rate,
    latency("p50"),
    latency("p99"),
    cpu,
    fmt(results.reduce((n, r) => n + failures(r), 0)),
  ];
}

/** Per repeat, gateway / baseline; printed, and their spread. */
function ratios(gateway: Sample[], baseline: Sample[], what: string) {
  const each = gateway.map((g, i) => g.perSecond / baseline[i].perSecond);
  console.log(`per repeat, ${what}: ${each.map(r => pct(r, 1)).join(", ")}`);
  return spread(each);
}

async function partSingle(run: IngestRun): Promise<void> {
  const { o, single, summary } = run;
  const [bare, gateway]: [Sample[], GatewayRun[]] = [[], []];
  if (!o.profile) await warmUp(run, run.bareUrl, single, o.connections);
  await warmUp(run, run.gatewayUrl, single, o.connections);
  for (let r = 0; r < o.repeats; r++) {
    if (!o.profile) bare.push(await measure(run, run.bareUrl, single, o.connections));
    gateway.push(await measureGateway(run, single, o.connections, 1));
  }
  const gw = spread(gateway.map(r => r.perSecond));
  const p99 = spread(gateway.map(r => r.result.latency.p99));
  const cpu = (runs: Sample[]) => Math.round(spread(runs.map(r => r.cpuMicros)).median);
  const rows = [["server", "requests/s", "p50 ms", "p99 ms", "CPU µs/request", "failed"]];
  if (!o.profile) rows.push(row("bare node:http (JSON.parse, 200)", bare));
  rows.push(row("gateway -> ingest -> Kafka (acks=all)", gateway));
  printLines(
    `(a) single-message requests, ${o.connections} connections, median (min-max) of ${o.repeats}`,
    table(rows),
  );
  if (!o.profile) {
    const bs = spread(bare.map(r => r.perSecond));
    const ratio = ratios(gateway, bare, "gateway / bare requests/s");
    console.log(
      `gateway / bare: ${pctSpread(ratio, 1)} (target >= 50%); gateway p99 ${spreadText(p99, 1)} ms (target <= 10 ms)`,
    );
    Object.assign(summary, spreadFields("bare_rps", bs), spreadFields("ratio", ratio, 3));
    summary.bare_cpu_us_per_request = cpu(bare);
  }
  Object.assign(summary, spreadFields("gateway_rps", gw), { p99_ms: p99.median, p99_ms_max: p99.max });
  summary.gateway_cpu_us_per_request = cpu(gateway);
  checkRuns(run, "(a)", gateway);
  console.log("");
}

async function partBatch(run: IngestRun): Promise<void> {
  const { o, summary } = run;
  const [raw, gateway]: [Sample[], GatewayRun[]] = [[], []];
  await warmUp(run, run.gatewayUrl, run.batch, o.batchConnections);
  if (!o.profile) await rawProduce(run, o.warmup);
  for (let r = 0; r < o.repeats; r++) {
    gateway.push(await measureGateway(run, run.batch, o.batchConnections, BATCH));
    if (!o.profile) raw.push(await rawProduce(run, o.duration));
  }
  const ticks = spread(gateway.map(r => r.perSecond));
  const cpu = (runs: Sample[]) => rounded(spread(runs.map(r => r.cpuMicros)).median, 1);
  const rows = [["measure", "ticks/s", "p50 ms", "p99 ms", "CPU µs/tick", "failed"]];
  rows.push(row("gateway -> ingest -> Kafka (acks=all)", gateway, 1));
  if (!o.profile) rows.push(row(`bare kafkajs producer, ${fmt(BATCH)} per send`, raw, 1));
  printLines(
    `(b) ${fmt(BATCH)}-tick JSON arrays, ${o.batchConnections} connections, median (min-max) of ${o.repeats}`,
    table(rows),
  );
  Object.assign(summary, spreadFields("batch_ticks_per_s", ticks), { batch_cpu_us_per_tick: cpu(gateway) });
  if (!o.profile) {
    const rs = spread(raw.map(r => r.perSecond));
    const ratio = ratios(gateway, raw, "gateway / bare producer");
    console.log(
      `gateway / bare producer: ${pctSpread(ratio, 1)} (target >= 60%); gateway ${fmt(ticks.median)} ticks/s (target >= 50,000)`,
    );
    Object.assign(
      summary,
      spreadFields("raw_producer_ticks_per_s", rs),
      spreadFields("batch_ratio", ratio, 3),
    );
    summary.raw_cpu_us_per_tick = cpu(raw);
  }
  summary.batch_p99_ms = spread(gateway.map(r => r.result.latency.p99)).median;
  checkRuns(run, "(b)", gateway);
  console.log("");
}

/** A course-generator price tick, a JSON array of `BATCH` of them, and what the gateway produces for it. */
function requestBodies() {
  const source = createMessageSource({ seed: "bench-ingest" });
  const single = JSON.stringify(source.nextPrice());
  const batchItems = Array.from({ length: BATCH }, () => source.nextPrice());
  // What the gateway produces for the batch: the validated messages, keyed and placed by symbol.
  const rawMessages: Message[] = batchItems.map(item => {
    const parsed = parseMessage(item);
    if (!parsed.ok) throw new Error(`the generator made an invalid tick: ${JSON.stringify(parsed.issues)}`);
    const key = messageKey(parsed.message);
    return { key, value: JSON.stringify(parsed.message), partition: partitionForKey(key, PARTITIONS) };
  });
  return { single, batch: JSON.stringify(batchItems), rawMessages };
}

/** The JSON line, its pinned fields (README, BENCHMARKS.md) first, null where a part did not run. */
function pinnedFirst(): Record<string, unknown> {
  const pinned = "gateway_rps bare_rps ratio p99_ms batch_ticks_per_s raw_producer_ticks_per_s batch_ratio";
  return { bench: "ingest", ...Object.fromEntries(pinned.split(" ").map(k => [k, null])) };
}

/** The servers, topics and request bodies of a run, and its results so far. */
async function setUp(stack: BenchStack, o: Options) {
  const scratch = mkdtempSync(path.join(os.tmpdir(), "bench-ingest-"));
  stack.atEnd(async () => rmSync(scratch, { recursive: true, force: true }));
  const topic = await stack.topic("bench_ingest");
  const rawTopic = await stack.topic("bench_ingest_raw");
  printLines(
    "Ingest benchmark",
    machine(),
    `Kafka ${stack.servers.brokers}, topics ${topic} and ${rawTopic} (${PARTITIONS} partitions); ${o.repeats} interleaved ` +
      `repeats of ${o.duration} s per measurement, after one ${o.warmup} s warm-up of each side\n`,
  );
  const bodies = requestBodies();
  const barePort = await freePort();
  const bare = await startBareServer(barePort);
  stack.atEnd(() => new Promise(resolve => bare.close(resolve)));
  const producer = await stack.producer();
  stack.atEnd(() => producer.disconnect());
  const gatewayUrl = await startGateway(stack, topic, bodies.single);
  const admin = await stack.connectedAdmin();
  const bareUrl = `http://127.0.0.1:${barePort}/ingest`;
  return {
    ...{ o, scratch, admin, producer, topic, rawTopic, gatewayUrl, bareUrl, ...bodies },
    rates: new Map<string, number>(),
    summary: pinnedFirst(),
    checks: [] as string[],
    failed: false,
  };
}

type IngestRun = Awaited<ReturnType<typeof setUp>>;

async function main(): Promise<Record<string, unknown>> {
  const o = parseArgs(process.argv.slice(2));
  const began = performance.now();
  const stack = new BenchStack(serversFromEnv(), PARTITIONS, "bench-ingest");
  try {
    const run = await setUp(stack, o);
    await partSingle(run);
    await partBatch(run);
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
  summary => console.log(JSON.stringify(summary)),
  err => {
    console.error(err);
    process.exit(1);
  },
);
