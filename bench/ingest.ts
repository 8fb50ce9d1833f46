import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Kafka, logLevel } from "kafkajs";
import type { BrokerOptions } from "moleculer";
import { loadConfig } from "../lib/config";
import { createNode, type StockNode } from "../app/node";
import { createMessageSource } from "../generator/models";
import { freePort } from "../lib/net";

/**
 * The ingest path's throughput on this machine, two figures:
 *   (a) single-message POST /ingest: requests/s and p99 latency of the gateway (moleculer-web, zod,
 *       Kafka acks=all) next to a bare node:http server that only parses the same JSON and answers 200,
 *       same connections and duration, in the same run;
 *   (b) ticks/s acknowledged by Kafka with 1,000-tick JSON array posts.
 * Plus one what-if row for (a): the same gateway with Moleculer's built-in metrics off.
 * The load comes from autocannon in a child process, so it does not share the server's event loop;
 * everything stays on loopback. Needs the local Kafka (`npm run stack:up`); writes to a fresh topic
 * and deletes it afterwards.
 *
 *   npm run bench:ingest [-- --duration 10 --connections 32 --batch-connections 4]
 */

interface Options {
  durationSeconds: number;
  connections: number;
  batchConnections: number;
  batchSize: number;
  brokers: string;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    durationSeconds: 10,
    connections: 32,
    batchConnections: 4,
    batchSize: 1000,
    brokers: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
  };
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1]);
    const needPositive = () => {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new Error(`${argv[i]} needs a positive whole number`);
      i++;
      return value;
    };
    switch (argv[i]) {
      case "--duration":
        options.durationSeconds = needPositive();
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
      default:
        throw new Error(
          `unknown option ${argv[i]} (known: --duration, --connections, --batch-connections, --batch-size)`,
        );
    }
  }
  return options;
}

/** What the autocannon CLI prints with --json, the parts used here. */
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  throughput: { average: number };
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
  durationSeconds: number;
  contentType?: string;
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
    `Content-Type=${load.contentType ?? "application/json"}`,
    "-i",
    bodyFile,
    "-c",
    String(load.connections),
    "-d",
    String(load.durationSeconds),
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

async function startGateway(
  brokers: string,
  topic: string,
  port: number,
  extra: Partial<BrokerOptions> = {},
): Promise<StockNode> {
  const config = loadConfig({
    SERVICES: "gateway,ingest",
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC: topic,
    PORT: String(port),
    HOST: "127.0.0.1",
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    LOG_LEVEL: "warn",
    NODE_ID: `bench-ingest-${process.pid}`,
  });
  const node = createNode(config, extra);
  await node.broker.start();
  return node;
}

async function withAdmin<T>(
  brokers: string,
  fn: (admin: ReturnType<Kafka["admin"]>) => Promise<T>,
): Promise<T> {
  const admin = new Kafka({
    clientId: "bench-ingest",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

const topicSize = (brokers: string, topic: string) =>
  withAdmin(brokers, async admin =>
    (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0),
  );

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

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const scratch = mkdtempSync(path.join(os.tmpdir(), "bench-ingest-"));
  const topic = `bench_ingest_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
  const cpus = os.cpus();
  console.log("Ingest benchmark");
  console.log(
    `node ${process.version}, ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? "unknown"}), ` +
      `${fmt(os.totalmem() / 1024 ** 3, 1)} GiB RAM, load average ${os
        .loadavg()
        .map(l => l.toFixed(2))
        .join(" ")}`,
  );
  console.log(
    `Kafka ${o.brokers}, topic ${topic}; ${o.durationSeconds} s per measurement after a ${Math.min(3, o.durationSeconds)} s warm-up\n`,
  );

  const source = createMessageSource({ seed: "bench-ingest" });
  const single = JSON.stringify(source.nextPrice());
  const batch = JSON.stringify(Array.from({ length: o.batchSize }, () => source.nextPrice()));

  const barePort = await freePort();
  const bare = await startBareServer(barePort);
  const nodes: StockNode[] = [];
  try {
    const gatewayPort = await freePort();
    nodes.push(await startGateway(o.brokers, topic, gatewayPort));
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}/ingest`;
    const bareUrl = `http://127.0.0.1:${barePort}/ingest`;
    const warmUp = Math.min(3, o.durationSeconds);
    const measure = async (url: string, body: string, connections: number) => {
      await cannon({ url, body, connections, durationSeconds: warmUp }, scratch);
      return cannon({ url, body, connections, durationSeconds: o.durationSeconds }, scratch);
    };

    const bareResult = await measure(bareUrl, single, o.connections);
    const before = await topicSize(o.brokers, topic);
    const gatewayResult = await measure(gatewayUrl, single, o.connections);
    const batchResult = await measure(gatewayUrl, batch, o.batchConnections);
    const landed = (await topicSize(o.brokers, topic)) - before;
    await nodes.pop()!.broker.stop();

    // What-if, not the configured system: the same node with Moleculer's built-in metrics off.
    // They time every action call (the gateway's own `api.rest` call and `ingest.push`) into
    // histograms that keep every sample for a minute; the difference is what they cost here.
    const whatIfPort = await freePort();
    nodes.push(await startGateway(o.brokers, topic, whatIfPort, { metrics: false }));
    const whatIfResult = await measure(`http://127.0.0.1:${whatIfPort}/ingest`, single, o.connections);

    const ratio = gatewayResult.requests.average / bareResult.requests.average;
    console.log(`(a) single-message requests, ${o.connections} connections`);
    console.log(
      table([
        ["server", "requests/s", "p50 ms", "p99 ms", "failed"],
        ...(
          [
            ["bare node:http (JSON.parse, 200)", bareResult],
            ["gateway -> ingest -> Kafka", gatewayResult],
            ["  what-if: Moleculer metrics off", whatIfResult],
          ] as const
        ).map(([name, r]) => [
          name,
          fmt(r.requests.average),
          fmt(r.latency.p50, 1),
          fmt(r.latency.p99, 1),
          fmt(failures(r)),
        ]),
      ]),
    );
    console.log(`gateway / bare requests/s: ${(ratio * 100).toFixed(1)}% (target >= 50%)`);
    console.log(
      `  what-if, metrics off / bare: ${((whatIfResult.requests.average / bareResult.requests.average) * 100).toFixed(1)}%\n`,
    );

    const ticksPerSecond = batchResult.requests.average * o.batchSize;
    console.log(`(b) ${fmt(o.batchSize)}-tick JSON arrays, ${o.batchConnections} connections`);
    console.log(
      table([
        ["measure", "requests/s", "ticks/s", "p50 ms", "p99 ms", "failed"],
        [
          "gateway -> ingest -> Kafka",
          fmt(batchResult.requests.average, 1),
          fmt(ticksPerSecond),
          fmt(batchResult.latency.p50, 1),
          fmt(batchResult.latency.p99, 1),
          fmt(failures(batchResult)),
        ],
      ]),
    );
    console.log(`ticks acknowledged by Kafka: ${fmt(ticksPerSecond)}/s (target >= 50,000/s)`);
    const answered200 = gatewayResult["2xx"] + batchResult["2xx"] * o.batchSize;
    // Warm-up runs also land in Kafka, so the topic holds at least what the measured runs got 200 for.
    console.log(
      `check: the topic grew by ${fmt(landed)} messages; measured runs were answered 200 for ${fmt(answered200)}` +
        (landed >= answered200 ? " (all there)" : " (MISSING MESSAGES)"),
    );
    if (failures(gatewayResult) + failures(batchResult) > 0 || landed < answered200) process.exitCode = 1;
  } finally {
    for (const node of nodes) await node.broker.stop();
    await new Promise(resolve => bare.close(resolve));
    await withAdmin(o.brokers, admin => admin.deleteTopics({ topics: [topic] })).catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
