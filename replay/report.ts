import type { SymbolReport } from "../domain/backtest";
import { fetchReport, fetchTickCount, sleep } from "./api";
import type { GatewayClient } from "./client";
import { DAILY_TIME_UTC } from "./csv";
import { formatCount } from "./progress";
import type { ReplayJob } from "./run";

/**
 * The end of a replay: wait until the app has analysed every tick sent (results land in Postgres a
 * little after the gateway's 200), then show `GET /api/report/:symbol` per symbol as a table.
 */

export interface ReportTarget {
  symbol: string;
  /** The symbol's tick count once everything sent is analysed: the baseline plus the rows accepted. */
  expectedTicks: number;
  /** Whether the app's count before the replay was known (else it was taken as 0). */
  baselineKnown: boolean;
  /** Ticks the app had before the replay; the report covers them too. */
  baselineTicks: number;
}

/** What to wait for per job: the ticks the app had of the symbol before the replay, plus the rows it accepted. */
export function reportTargets(jobs: readonly ReplayJob[]): ReportTarget[] {
  return jobs.map(j => ({
    symbol: j.symbol,
    expectedTicks: (j.state.baselineTicks ?? 0) + j.state.accepted,
    baselineKnown: j.state.baselineTicks !== null,
    baselineTicks: j.state.baselineTicks ?? 0,
  }));
}

export interface ReportRow {
  symbol: string;
  report: SymbolReport | null;
  /** The app had analysed every tick sent before the report was fetched. */
  complete: boolean;
  /** Said under the table: incomplete processing, extra ticks, a failed request. */
  notes: string[];
}

export interface WaitResult {
  /** The last count read, null if it could never be read. */
  count: number | null;
  converged: boolean;
}

/** Polls the symbol's analysed tick count until it reaches `expected`, for at most `timeoutMs`. */
export async function waitForTicks(
  client: GatewayClient,
  symbol: string,
  expected: number,
  options: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal; now?: () => number },
): Promise<WaitResult> {
  const now = options.now ?? (() => performance.now());
  const deadline = now() + options.timeoutMs;
  let count: number | null = null;
  for (;;) {
    try {
      count = await fetchTickCount(client, symbol, options.signal);
      if (count >= expected) return { count, converged: true };
    } catch {
      // The app may be restarting or busy; the deadline decides.
    }
    if (now() >= deadline || options.signal?.aborted) return { count, converged: false };
    await sleep(options.intervalMs ?? 250, options.signal);
  }
}

/** Waits for each target, then fetches its report; every problem becomes a note, never an exception. */
export async function collectReports(
  client: GatewayClient,
  targets: readonly ReportTarget[],
  options: { timeoutMs: number; signal?: AbortSignal; log?: (line: string) => void },
): Promise<ReportRow[]> {
  const rows: ReportRow[] = [];
  for (const t of targets) {
    const notes: string[] = [];
    options.log?.(`${t.symbol}: waiting until the app has analysed ${formatCount(t.expectedTicks)} ticks`);
    const waited = await waitForTicks(client, t.symbol, t.expectedTicks, options);
    if (!waited.converged) {
      notes.push(
        `the app had analysed ${waited.count === null ? "an unknown number of" : formatCount(waited.count)} of ` +
          `${formatCount(t.expectedTicks)} ticks after ${Math.round(options.timeoutMs / 1000)} s ` +
          `(is the actors service running? see GET /api/cluster); the figures are partial`,
      );
    } else if (waited.count !== null && waited.count > t.expectedTicks) {
      notes.push(
        `the app has ${formatCount(waited.count)} ticks, ${formatCount(waited.count - t.expectedTicks)} more than ` +
          `expected: another feed of ${t.symbol}, or rows taken twice after a request with no answer`,
      );
    }
    if (t.baselineTicks > 0) {
      notes.push(
        `${formatCount(t.baselineTicks)} ticks were there before the replay; the report includes them`,
      );
    }
    if (!t.baselineKnown) notes.push("the app's tick count before the replay could not be read; taken as 0");
    let report: SymbolReport | null = null;
    try {
      report = await fetchReport(client, t.symbol, options.signal);
    } catch (err) {
      notes.push((err as Error).message);
    }
    rows.push({ symbol: t.symbol, report, complete: waited.converged, notes });
  }
  return rows;
}

const DAILY_SECONDS_OF_DAY =
  Number(DAILY_TIME_UTC.slice(0, 2)) * 3600 + Number(DAILY_TIME_UTC.slice(3, 5)) * 60;

/** `2000-01-03` for a daily bar (replayed at 21:00 UTC); `2000-01-03 14:30` otherwise; `-` for null. */
export function formatReportDate(epochSeconds: number | null): string {
  if (epochSeconds === null || !Number.isFinite(epochSeconds)) return "-";
  const iso = new Date(epochSeconds * 1000).toISOString();
  const secondOfDay = ((epochSeconds % 86400) + 86400) % 86400;
  return secondOfDay === DAILY_SECONDS_OF_DAY ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/** `3,393.52`, `0.004512`; `-` for null. */
export function formatPrice(price: number | null): string {
  if (price === null || !Number.isFinite(price)) return "-";
  if (Math.abs(price) < 1) return String(Number(price.toPrecision(4)));
  const [whole, cents] = price.toFixed(2).split(".");
  return `${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${cents}`;
}

/** `+52.31%`, `-4.00%`, `n/a`. */
export function formatReturn(pct: number | null): string {
  if (pct === null || !Number.isFinite(pct)) return "n/a";
  const text = `${Math.abs(pct).toFixed(2)}%`;
  return pct < 0 && text !== "0.00%" ? `-${text}` : `+${text}`;
}

const HEADERS = [
  "symbol",
  "ticks",
  "signals (buy/sell)",
  "first",
  "last",
  "low",
  "high",
  "RSI 30/70 rule",
  "buy & hold",
  "trades",
];
/** Numbers read best right-aligned. */
const RIGHT = new Set(["ticks", "low", "high", "RSI 30/70 rule", "buy & hold"]);

/** The report as an aligned text table, with the notes under it. */
export function formatReportTable(rows: readonly ReportRow[]): string {
  const cells = rows.map(({ symbol, report: r }) =>
    r === null
      ? [symbol, "-", "-", "-", "-", "-", "-", "-", "-", "-"]
      : [
          symbol,
          formatCount(r.ticks),
          `${formatCount(r.signals)} (${formatCount(r.buySignals)}/${formatCount(r.sellSignals)})`,
          formatReportDate(r.firstTimestamp),
          formatReportDate(r.lastTimestamp),
          formatPrice(r.lowestPrice),
          formatPrice(r.highestPrice),
          formatReturn(r.strategy.returnPct),
          formatReturn(r.buyAndHold.returnPct),
          r.strategy.open ? `${formatCount(r.strategy.trades)} (1 open)` : formatCount(r.strategy.trades),
        ],
  );
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...cells.map(c => c[i].length)));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (RIGHT.has(HEADERS[i]) ? v.padStart(widths[i]) : v.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  const out = [line(HEADERS), line(widths.map(w => "-".repeat(w))), ...cells.map(line)];
  const notes = rows.flatMap(r => r.notes.map(n => `${r.symbol}: ${n}`));
  if (notes.length > 0) out.push("", ...notes);
  out.push(
    "",
    "RSI 30/70 rule: long only, buy the close of a buy signal (RSI enters below 30) when flat, sell the close",
    "of a sell signal (RSI enters above 70) when long, all capital reinvested, an open position valued at the",
    "last close; no costs or dividends. Buy & hold: last close / first close - 1 over the same ticks.",
  );
  return out.join("\n");
}
