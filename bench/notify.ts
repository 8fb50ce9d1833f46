import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { Webhook } from "standardwebhooks";
import { WebSocket } from "ws";
import type { PriceTick } from "../domain/messages";
import { ALL_SERVICES } from "../lib/config";
import { freePort } from "../lib/net";
import { ActorsProcess, actorsRun } from "./harness/actors-process";
import { parseOptions } from "./harness/args";
import { fmt, percentiles, rounded } from "./harness/figures";
import { machine, printLines, table } from "./harness/print";
import { BenchStack, serversFromEnv } from "./harness/stack";

/**
 * How soon a tick's consequences reach people, through a node process (bin/start.ts):
 * live ticks, from the 200 of `POST /ingest` to the tick on a `/ws` client, in embedded mode
 * (DATA_DIR=memory, no demo feed, no servers); signals, from the 200 of the POST of a tick that
 * causes one to its webhook's receipt by a receiver that verifies it and answers 204 at once, in
 * embedded mode and on the full stack (the local Kafka, Postgres, Redis and NATS; every service on
 * one node). With RSI_PERIOD=1 a fall puts the RSI at 0 and a rise at 100, so each symbol's ticks,
 * falling and rising in turn, each enter a zone: one signal apiece. One sample at a time (the next
 * once it arrived), after a random pause of up to `--pause-ms`, so the samples fall at every phase
 * of the node's timers; `--symbols` symbols take turns.
 *
 *   npm run bench:notify [-- --samples 200 --warmup 20 --pause-ms 100 --symbols 4]
 */

type Options = { samples: number; warmup: number; pauseMs: number; symbols: number };

const SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const LIVE = "LIVE";
const EPOCH = 1_700_000_000;
/** Who waits for a tick (`SYMBOL:seq`): for it on `/ws`, or for its signal at the receiver. */
type Arrivals = Map<string, (at: number) => void>;

/** A webhook receiver that verifies each delivery (a forged or stale one stops the bench) and answers 204 at once. */
async function receiver(arrivals: Arrivals): Promise<http.Server> {
  const hook = new Webhook(SECRET);
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      const at = performance.now();
      const headers = req.headers as Record<string, string>;
      const { data } = hook.verify(body, headers) as { data: { symbol: string; seq: number } };
      res.writeHead(204).end();
      arrivals.get(`${data.symbol}:${data.seq}`)?.(at);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** A node in a process of its own, once it is ready and its webhook subscriber is registered. */
async function startNode(env: Record<string, string>, hookUrl: string) {
  const port = await freePort();
  const node = new ActorsProcess({
    ...env,
    ...{ PORT: String(port), METRICS_PORT: "0", DEMO_FEED: "0", LOG_LEVEL: "warn", RSI_PERIOD: "1" },
    ...{ NOTIFIER_WEBHOOK_URL: hookUrl, NOTIFIER_WEBHOOK_SECRET: SECRET },
  });
  const base = `http://127.0.0.1:${port}`;
  const subscribers = async () =>
    ((await (await fetch(`${base}/api/notifications`)).json()) as { subscribers: unknown[] }).subscribers;
  const ready = async () =>
    (await fetch(`${base}/readyz`).catch(() => null))?.status === 200 && (await subscribers()).length > 0;
  for (const deadline = Date.now() + 90000; !(await ready()); await sleep(200))
    node.assertAlive(deadline, "not ready with its webhook subscriber after 90 s");
  return { node, base };
}

/** A `/ws` client of the node's `LIVE` ticks. */
function liveClient(base: string, arrivals: Arrivals): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace("http", "ws")}/ws?symbols=${LIVE}`);
    ws.on("open", () => resolve(ws)).on("error", reject);
    ws.on("message", data => {
      const at = performance.now();
      const message = JSON.parse(data.toString()) as { ticks?: { symbol: string; seq: number }[] };
      for (const t of message.ticks ?? []) arrivals.get(`${t.symbol}:${t.seq}`)?.(at);
    });
  });
}

/** A symbol's `n`-th tick (from 0): its seq is `n + 1`. */
const tick = (symbol: string, n: number, close: number): PriceTick => {
  const prices = { opening_price: close, closing_price: close, high: close + 0.5, low: close - 0.5 };
  return { stock_symbol: symbol, ...prices, volume: 1000, timestamp: EPOCH + n };
};

/** POSTs `t`; when its 200 came (performance.now()). */
async function post(base: string, t: PriceTick): Promise<number> {
  const res = await fetch(`${base}/ingest`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(t),
  });
  const answered = performance.now();
  if (res.status !== 200) throw new Error(`POST /ingest answered ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
  return answered;
}

/**
 * `o.samples` samples after `o.warmup`, each after a random pause: the milliseconds from the 200 of
 * the POST of `next(i)` to its arrival (0 when the arrival beat the 200).
 */
async function measure(base: string, arrivals: Arrivals, o: Options, next: (i: number) => PriceTick) {
  const latencies: number[] = [];
  for (let i = 0; i < o.warmup + o.samples; i++) {
    await sleep(Math.random() * o.pauseMs);
    const t = next(i);
    const key = `${t.stock_symbol}:${t.timestamp - EPOCH + 1}`;
    const arrived = new Promise<number>(resolve => arrivals.set(key, resolve));
    const answered = await post(base, t);
    const late = sleep(30000, null, { ref: false });
    const at = await Promise.race([arrived, late]);
    if (at === null) throw new Error(`${key}: nothing arrived 30 s after the 200`);
    arrivals.delete(key);
    if (i >= o.warmup) latencies.push(Math.max(0, at - answered));
  }
  return latencies;
}

/** Signal samples: the symbols take turns, each falling to 90 and rising to 100 again. */
async function signals(base: string, arrivals: Arrivals, o: Options): Promise<number[]> {
  const symbols = Array.from({ length: o.symbols }, (_, s) => `SIG${s}`);
  // A symbol's first tick has no RSI yet (RSI_PERIOD=1 needs two closes).
  for (const s of symbols) await post(base, tick(s, 0, 100));
  return measure(base, arrivals, o, i => {
    const n = Math.floor(i / o.symbols) + 1;
    return tick(symbols[i % o.symbols], n, n % 2 === 1 ? 90 : 100);
  });
}

/** Live ticks and signals in embedded mode. */
async function embedded(hookUrl: string, arrivals: Arrivals, o: Options) {
  const { node, base } = await startNode({ DATA_DIR: "memory" }, hookUrl);
  const ws = await liveClient(base, arrivals);
  try {
    // A flat price keeps the RSI at 50: live ticks cause no signal.
    const live = await measure(base, arrivals, o, i => tick(LIVE, i, 100));
    return { live, signals: await signals(base, arrivals, o) };
  } finally {
    ws.terminate();
    await node.stop(10000);
  }
}

/** Signals on the full stack: a topic, a database and a namespace of its own. */
async function fullStack(hookUrl: string, arrivals: Arrivals, o: Options) {
  const stack = new BenchStack(serversFromEnv(), 12, "bench-notify");
  try {
    const run = await actorsRun(stack, await stack.topic("bench_notify"), "bench_notify");
    const nats = { NATS_URL: process.env.NATS_URL ?? "nats://127.0.0.1:4222", NAMESPACE: run.groupId };
    const env = { ...run.env, ...nats, SERVICES: ALL_SERVICES.join(",") };
    const { node, base } = await startNode(env, hookUrl);
    try {
      return { signals: await signals(base, arrivals, o), servers: await stack.serversLine() };
    } finally {
      await node.stop(10000);
    }
  } finally {
    await stack.close();
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2), { samples: 200, warmup: 20, pauseMs: 100, symbols: 4 });
  const arrivals: Arrivals = new Map();
  const server = await receiver(arrivals);
  const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const local = await embedded(hookUrl, arrivals, o);
  const stack = await fullStack(hookUrl, arrivals, o).finally(() => server.close());
  const row = (key: string, what: string, latencies: number[], target?: number) => {
    const p = percentiles(latencies, [0.5, 0.9, 0.99, 1]);
    const verdict = target === undefined ? "" : `p99 <= ${target} ms: ${p[2] <= target ? "met" : "NOT met"}`;
    return { key, p, cells: [what, ...p.map(v => fmt(v, 1)), verdict] };
  };
  const rows = [
    row("live", "live tick: 200 -> /ws, embedded", local.live),
    row("signal_embedded", "signal: 200 -> webhook, embedded", local.signals, 100),
    row("signal_stack", "signal: 200 -> webhook, full stack", stack.signals, 250),
  ];
  printLines(
    `${o.samples} samples each after ${o.warmup} warm-up, pauses of 0-${o.pauseMs} ms, RSI_PERIOD=1, ${o.symbols} signal symbols in turn`,
    machine(),
    stack.servers,
    "",
    table([["path", "median ms", "p90 ms", "p99 ms", "max ms", "target"], ...rows.map(r => r.cells)]),
  );
  const figures = rows.flatMap(r =>
    ["p50", "p90", "p99", "max"].map((p, i) => [`${r.key}_${p}_ms`, rounded(r.p[i], 1)]),
  );
  console.log(JSON.stringify({ ...Object.fromEntries(figures), samples: o.samples }));
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
