import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { RSI as OracleRsi } from "technicalindicators";
import type { SymbolReport } from "../../../domain/backtest";
import { referenceRsi } from "../../unit/domain/reference";
import { AppProcess } from "../../support/processes";
import { freePort } from "../../support/ports";
import { ROOT, waitFor } from "../../support/stack";

/**
 * `npm run replay` end to end: the app as a real process in embedded mode, the replay CLI as a child
 * process, and the results checked against a computation of the test's own from the CSV: RSI(14)
 * with Wilder smoothing, checked against the `technicalindicators` package, the 30/70 edge-triggered
 * signals of docs/indicators.md, and the long-only rule of domain/backtest.ts.
 */

const SAMPLE = path.join(ROOT, "samples/sp500-2000.csv");

interface Day {
  date: string;
  timestamp: number;
  low: number;
  high: number;
  close: number;
}

/** The sample read with a plain split: it is a simple, clean file, and this keeps the test apart from replay/csv.ts. */
function readSample(): Day[] {
  const [header, ...rows] = fs.readFileSync(SAMPLE, "utf8").trim().split("\n");
  expect(header).toBe("date,open,high,low,close,adjclose,volume");
  return rows.map(row => {
    const [date, , high, low, close] = row.split(",");
    // The replay sends a daily bar at 21:00 UTC of its date (README, replay section).
    return { date, timestamp: Date.parse(`${date}T21:00:00Z`) / 1000, low: +low, high: +high, close: +close };
  });
}

type Side = "buy" | "sell";

/** Edge-triggered: a signal on the tick RSI enters a zone, including the first defined RSI. */
function edgeSignals(rsi: readonly (number | null)[]): (Side | null)[] {
  let previous: number | null = null;
  return rsi.map(r => {
    if (r === null) return null;
    const side: Side | null =
      r < 30 && (previous === null || previous >= 30)
        ? "buy"
        : r > 70 && (previous === null || previous <= 70)
          ? "sell"
          : null;
    previous = r;
    return side;
  });
}

interface Expected {
  ticks: number;
  signals: { seq: number; side: Side; price: number }[];
  firstTimestamp: number;
  lastTimestamp: number;
  lowestPrice: number;
  highestPrice: number;
  returnPct: number;
  trades: number;
  open: boolean;
  buyAndHoldPct: number;
}

function expectedFromCsv(days: readonly Day[]): Expected {
  const closes = days.map(d => d.close);
  const ours = edgeSignals(referenceRsi(closes, 14));
  const signals = ours.flatMap((side, i) => (side === null ? [] : [{ seq: i + 1, side, price: closes[i] }]));
  let growth = 1;
  let entry: number | null = null;
  let trips = 0;
  for (const s of signals) {
    if (s.side === "buy" && entry === null) entry = s.price;
    else if (s.side === "sell" && entry !== null) {
      growth *= s.price / entry;
      entry = null;
      trips++;
    }
  }
  const last = closes[closes.length - 1];
  if (entry !== null) growth *= last / entry;
  return {
    ticks: days.length,
    signals,
    firstTimestamp: days[0].timestamp,
    lastTimestamp: days[days.length - 1].timestamp,
    lowestPrice: Math.min(...days.map(d => d.low)),
    highestPrice: Math.max(...days.map(d => d.high)),
    returnPct: (growth - 1) * 100,
    trades: trips + (entry === null ? 0 : 1),
    open: entry !== null,
    buyAndHoldPct: (last / closes[0] - 1) * 100,
  };
}

/**
 * technicalindicators as the outside reference (as test/unit/domain uses it): its RSI starts at index
 * 14 and is rounded to 2 decimals, so it must agree with ours within 0.01, and its signals must agree
 * with ours wherever that rounding cannot move a value across 30 or 70.
 */
function checkAgainstOracle(days: readonly Day[]): { ambiguous: number } {
  const closes = days.map(d => d.close);
  const rsi = referenceRsi(closes, 14);
  const oracle = OracleRsi.calculate({ period: 14, values: closes });
  expect(oracle).toHaveLength(closes.length - 14);
  const worst = Math.max(...oracle.map((v, k) => Math.abs((rsi[k + 14] as number) - v)));
  expect(worst).toBeLessThanOrEqual(0.01);
  const fromOracle = edgeSignals([...new Array<null>(14).fill(null), ...oracle]);
  const ours = edgeSignals(rsi);
  const near = (i: number) => i >= 14 && [30, 70].some(t => Math.abs(oracle[i - 14] - t) <= 0.01);
  let ambiguous = 0;
  for (let i = 0; i < closes.length; i++) {
    if (near(i) || near(i - 1)) ambiguous++;
    else if (fromOracle[i] !== ours[i])
      throw new Error(`index ${i}: oracle ${fromOracle[i]}, ours ${ours[i]}`);
  }
  return { ambiguous };
}

const closeTo = (actual: number | null, expected: number) =>
  actual !== null && Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The replay CLI as `npm run replay` runs it (tsx), in the repository. */
function startReplay(args: string[]): { pid: number; done: Promise<Run>; output(): string } {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin/replay.ts"), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<Run>(resolve => child.on("close", code => resolve({ code, stdout, stderr })));
  return { pid: child.pid!, done, output: () => stdout + stderr };
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await fetch(url);
  const text = await res.text();
  return { status: res.status, body: (text === "" ? null : JSON.parse(text)) as T };
}

describe("npm run replay (embedded app, real processes)", () => {
  let app: AppProcess | null = null;
  let base = "";
  const scratch: string[] = [];
  const days = readSample();
  const expected = expectedFromCsv(days);
  let sampleState = "";

  const stateDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "replay-state-"));
    scratch.push(dir);
    return dir;
  };
  const tickCount = async (symbol: string, at = base) => {
    const r = await getJson<{ tick_count: number }>(`${at}/api/aggregates/${symbol}`);
    return r.status === 200 ? r.body.tick_count : 0;
  };
  /** Every tick of `symbol` in the app, oldest first. */
  const history = async (symbol: string, at: string) =>
    (
      await getJson<{ ticks: { seq: number; timestamp: string; closing_price: number }[] }>(
        `${at}/api/symbols/${symbol}/history?limit=10000`,
      )
    ).body.ticks;
  const expectEveryRowOnceInOrder = async (symbol: string, at = base) => {
    await waitFor(
      `${symbol} to have ${days.length} ticks analysed`,
      async () => (await tickCount(symbol, at)) >= days.length,
      60000,
      250,
    );
    expect(await tickCount(symbol, at)).toBe(days.length);
    const ticks = await history(symbol, at);
    expect(ticks.map(t => t.seq)).toEqual(days.map((_, i) => i + 1));
    expect(ticks.map(t => Date.parse(t.timestamp) / 1000)).toEqual(days.map(d => d.timestamp));
    expect(ticks.map(t => t.closing_price)).toEqual(days.map(d => d.close));
  };

  /** An app of its own, embedded and in memory: it starts with no data at all. */
  const startApp = async (name: string): Promise<{ app: AppProcess; base: string }> => {
    const port = await freePort();
    const at = `http://127.0.0.1:${port}`;
    const started = new AppProcess(name, {
      PORT: String(port),
      METRICS_PORT: "0",
      DATA_DIR: "memory",
      DEMO_FEED: "0",
      LOG_LEVEL: "warn",
    }).start();
    await waitFor(
      "/readyz to answer 200",
      async () => (await fetch(`${at}/readyz`)).status === 200,
      90000,
      250,
    );
    return { app: started, base: at };
  };

  beforeAll(async () => {
    sampleState = stateDir();
    ({ app, base } = await startApp("replay-app"));
  }, 120000);

  afterAll(async () => {
    await app?.kill("SIGKILL");
    for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the reference RSI agrees with technicalindicators (within its 2-decimal rounding)", () => {
    const { ambiguous } = checkAgainstOracle(days);
    // A handful of days sit within 0.01 of a threshold, where the rounded oracle cannot decide.
    expect(ambiguous).toBeLessThan(30);
    expect(expected.signals.length).toBeGreaterThan(100);
  });

  it("replays the sample through the gateway: every row once, in order, at 21:00 UTC of its date", async () => {
    const run = await startReplay(["--sample", "--url", base, "--state-dir", sampleState, "--no-report"])
      .done;
    expect({ code: run.code, stderr: run.stderr }).toEqual({
      code: 0,
      stderr: expect.stringContaining("SPX: done"),
    });
    expect(run.stderr).toMatch(
      /SPX: done: 5,105 of 5,105 rows resolved, 5,105 accepted .* 0 rejected, 0 unreadable/,
    );
    await expectEveryRowOnceInOrder("SPX");
  }, 120000);

  it("produces the signals of an independent RSI(14) computation from the CSV", async () => {
    const r = await getJson<{ seq: number; side: Side; price: number }[]>(
      `${base}/api/signals?symbol=SPX&limit=10000`,
    );
    expect(r.status).toBe(200);
    const signals = r.body
      .map(s => ({ seq: s.seq, side: s.side, price: s.price }))
      .sort((a, b) => a.seq - b.seq);
    expect(signals).toEqual(expected.signals);
  });

  it("GET /api/report/SPX matches the RSI 30/70 rule and buy-and-hold computed from the CSV", async () => {
    const r = await getJson<SymbolReport>(`${base}/api/report/SPX`);
    expect(r.status).toBe(200);
    const report = r.body;
    expect(report).toMatchObject({
      symbol: "SPX",
      ticks: expected.ticks,
      signals: expected.signals.length,
      buySignals: expected.signals.filter(s => s.side === "buy").length,
      sellSignals: expected.signals.filter(s => s.side === "sell").length,
      firstTimestamp: expected.firstTimestamp,
      lastTimestamp: expected.lastTimestamp,
      lowestPrice: expected.lowestPrice,
      highestPrice: expected.highestPrice,
      strategy: { trades: expected.trades, open: expected.open },
    });
    expect({
      strategy: report.strategy.returnPct,
      close: closeTo(report.strategy.returnPct, expected.returnPct),
    }).toEqual({
      strategy: report.strategy.returnPct,
      close: true,
    });
    expect({
      buyAndHold: report.buyAndHold.returnPct,
      close: closeTo(report.buyAndHold.returnPct, expected.buyAndHoldPct),
    }).toEqual({
      buyAndHold: report.buyAndHold.returnPct,
      close: true,
    });
    const unknown = await getJson<{ error: string; type: string }>(`${base}/api/report/NOPE`);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: expect.any(String), type: expect.any(String) });
  });

  it("a rerun of a finished replay sends nothing and prints the report table", async () => {
    const run = await startReplay(["--sample", "--url", base, "--state-dir", sampleState]).done;
    expect(run.stderr).toMatch(/SPX: already replayed completely/);
    expect(await tickCount("SPX")).toBe(days.length);
    const row = run.stdout.split("\n").find(l => l.startsWith("SPX "));
    expect(row).toBeDefined();
    const pct = (x: number) => `${x < 0 ? "-" : "+"}${Math.abs(x).toFixed(2)}%`;
    expect(row).toContain("5,105");
    expect(row).toContain(`${days[0].date}  ${days[days.length - 1].date}`);
    expect(row).toContain(pct(expected.returnPct));
    expect(row).toContain(pct(expected.buyAndHoldPct));
    expect(run.code).toBe(0);
  }, 120000);

  it("with --restart, finds the app holding every row of the file already and sends none again", async () => {
    const run = await startReplay(["--sample", "--url", base, "--state-dir", sampleState, "--restart"]).done;
    expect(run.stderr).toContain(
      "SPX: the app already holds lines 2-5106 of this file (5,105 ticks, from an earlier replay): nothing to send",
    );
    expect(run.stdout.split("\n").find(l => l.startsWith("SPX "))).toContain("5,105");
    expect(run.code).toBe(0);
    expect(await tickCount("SPX")).toBe(days.length);
  }, 120000);

  it("a replay into a fresh app after a replay into another stores every row, and its report is complete", async () => {
    const fresh = await startApp("replay-app-2");
    try {
      // The same state as the replay into the first app, which says every row was sent.
      const run = await startReplay(["--sample", "--url", fresh.base, "--state-dir", sampleState]).done;
      expect(run.stderr).toMatch(
        /SPX: the app holds no tick of SPX, fewer than the 5,105 the state .*SPX-[0-9a-f]{16}\.json says it was sent .*: sending lines 2-5106 again/,
      );
      expect(run.stderr).not.toMatch(/already replayed completely/);
      expect(run.stderr).toMatch(
        /SPX: done: 5,105 of 5,105 rows resolved, 5,105 accepted \(5,105 by this run\)/,
      );
      await expectEveryRowOnceInOrder("SPX", fresh.base);
      const row = run.stdout.split("\n").find(l => l.startsWith("SPX "));
      expect(row).toContain("5,105");
      expect(row).toContain(`${days[0].date}  ${days[days.length - 1].date}`);
      expect(run.stdout).not.toMatch(/the figures are partial/);
      expect(run.code).toBe(0);
      // The first app was left as it was.
      expect(await tickCount("SPX")).toBe(days.length);
    } finally {
      await fresh.app.kill("SIGKILL");
    }
  }, 180000);

  it("resumes after Ctrl-C where it stopped, and no row reaches the app twice", async () => {
    const dir = stateDir();
    const args = [SAMPLE, "--symbol", "SPXR", "--url", base, "--state-dir", dir, "--no-report"];
    const first = startReplay([...args, "--rate", "400"]);
    const statePosition = () => {
      const files = fs.readdirSync(dir).filter(f => f.endsWith(".json"));
      if (files.length !== 1) return 0;
      try {
        return (JSON.parse(fs.readFileSync(path.join(dir, files[0]), "utf8")) as { position: number })
          .position;
      } catch {
        return 0; // between the write and the rename of a save
      }
    };
    await waitFor("the replay to have 1,000 rows acknowledged", () => statePosition() >= 1000, 60000, 20);
    process.kill(first.pid, "SIGINT");
    const stopped = await first.done;
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toMatch(/SIGINT: stopping after the request in flight/);
    expect(stopped.stderr).toMatch(
      /interrupted; the state is saved in .*SPXR-[0-9a-f]{16}\.json: run the same command again to resume/,
    );
    const position = statePosition();
    expect(position).toBeGreaterThanOrEqual(1000);
    expect(position).toBeLessThan(days.length);
    await waitFor(
      "the acknowledged rows to be analysed",
      async () => (await tickCount("SPXR")) >= position,
      30000,
      100,
    );
    expect(await tickCount("SPXR")).toBe(position);

    const second = await startReplay(args).done;
    expect(second.code).toBe(0);
    expect(second.stderr).toContain(
      `SPXR: resuming after line ${position + 1}: ${position.toLocaleString("en-US")} of 5,105 rows done`,
    );
    expect(second.stderr).toContain(`(${(days.length - position).toLocaleString("en-US")} by this run)`);
    await expectEveryRowOnceInOrder("SPXR");
  }, 120000);
});
