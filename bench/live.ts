import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { WebSocket } from "ws";
import { freePort } from "../lib/net";
import { projectRoot } from "../lib/paths";
import { parseOptions } from "./harness/args";
import { fmt, percentiles } from "./harness/figures";
import { machine, printLines, table } from "./harness/print";

/**
 * How soon a tick reaches a dashboard: from the 200 of `POST /ingest` (the tick is in the log) to
 * the tick on a `/ws` client, through a real node process in embedded mode (DATA_DIR=memory, no
 * demo feed: no servers needed). One tick at a time, each after a random pause of up to
 * `--pause-ms`, so the samples fall at every phase of the hub's flushing.
 *
 * --baseline DIR runs the build of another checkout (DIR/dist/bin/start.js, built there) beside
 * this one and interleaves the samples (A B, B A, ...), so both sides share the machine's drift.
 *
 *   npm run bench:live [-- --samples 200 --pause-ms 100 --baseline /path/to/other/checkout]
 */

interface Options {
  samples: number;
  warmup: number;
  pauseMs: number;
  baseline: string | null;
}

const SYMBOL = "LIVE";

function parseArgs(argv: string[]): Options {
  return parseOptions(
    argv,
    { samples: 200, warmup: 20, pauseMs: 100, baseline: null as string | null },
    { "--baseline": (dir, o) => (o.baseline = path.resolve(dir)) },
  );
}

/** One node process and a WebSocket client of it, fed one tick at a time. */
class Side {
  readonly latencies: number[] = [];
  private child: ChildProcess | null = null;
  private socket: WebSocket | null = null;
  private posted = 0;
  private ingestUrl = "";
  private waiting: { seq: number; resolve: (at: number) => void } | null = null;

  constructor(
    readonly name: string,
    private readonly root: string,
  ) {}

  async start(): Promise<void> {
    const port = await freePort();
    const env = { PATH: process.env.PATH ?? "", PORT: String(port), METRICS_PORT: "0" };
    this.child = spawn(process.execPath, [path.join(this.root, "dist/bin/start.js")], {
      cwd: this.root,
      env: { ...env, DATA_DIR: "memory", DEMO_FEED: "0", LOG_LEVEL: "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const base = `http://127.0.0.1:${port}`;
    for (let started = Date.now(); ;) {
      if ((await fetch(`${base}/readyz`).catch(() => null))?.status === 200) break;
      if (Date.now() - started > 90000) throw new Error(`${this.name}: /readyz not 200 after 90 s`);
      await new Promise(resolve => setTimeout(resolve, 200));
    }
    this.socket = await new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?symbols=${SYMBOL}`);
      ws.on("open", () => resolve(ws));
      ws.on("error", reject);
      ws.on("message", data => this.onMessage(data.toString(), performance.now()));
    });
    this.ingestUrl = `${base}/ingest`;
  }

  private onMessage(text: string, at: number): void {
    const message = JSON.parse(text) as { type: string; ticks?: { symbol: string; seq: number }[] };
    const tick = message.ticks?.find(t => t.symbol === SYMBOL);
    if (tick && this.waiting && tick.seq >= this.waiting.seq) this.waiting.resolve(at);
  }

  /** Posts the next tick; the milliseconds from its 200 to its arrival on the socket. */
  async sample(): Promise<number> {
    const seq = ++this.posted;
    const close = 100 + (seq % 50);
    const tick = {
      stock_symbol: SYMBOL,
      opening_price: close,
      closing_price: close,
      high: close + 0.5,
      low: close - 0.5,
      volume: 1000,
      timestamp: 1_700_000_000 + seq,
    };
    const arrived = new Promise<number>(resolve => (this.waiting = { seq, resolve }));
    const res = await fetch(this.ingestUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(tick),
    });
    const answered = performance.now();
    if (res.status !== 200) throw new Error(`${this.name}: POST /ingest answered ${res.status}`);
    await res.arrayBuffer();
    const at = await arrived;
    this.waiting = null;
    // The push may even beat the answer to this process: then the tick was live at the 200.
    return Math.max(0, at - answered);
  }

  stop(): void {
    this.socket?.terminate();
    this.child?.kill("SIGKILL");
  }
}

const pause = (maxMs: number) => new Promise(resolve => setTimeout(resolve, Math.random() * maxMs));

function figures(side: Side): string[] {
  const [p50, p90, p99, max] = percentiles(side.latencies, [0.5, 0.9, 0.99, 1]).map(v => fmt(v, 1));
  return [side.name, String(side.latencies.length), p50, p90, p99, max];
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const root = projectRoot();
  execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit", cwd: root });
  const sides = [new Side("this checkout", root)];
  if (options.baseline) sides.push(new Side(`baseline ${options.baseline}`, options.baseline));
  try {
    for (const side of sides) await side.start();
    for (let i = 0; i < options.warmup; i++) for (const side of sides) await side.sample();
    for (let i = 0; i < options.samples; i++) {
      const order = i % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        await pause(options.pauseMs);
        side.latencies.push(await side.sample());
      }
    }
  } finally {
    for (const side of sides) side.stop();
  }
  printLines(
    `POST /ingest 200 -> tick on /ws, embedded mode, ${options.samples} samples per side, pauses of 0-${options.pauseMs} ms`,
    machine(),
    "",
    table([["side", "samples", "median ms", "p90 ms", "p99 ms", "max ms"], ...sides.map(figures)]),
  );
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
