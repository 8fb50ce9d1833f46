import type { SymbolReport } from "../domain/backtest";
import { describeOutcome, type GatewayClient } from "./client";

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** What the app holds of a symbol: how many price ticks it has analysed, their time span and price range. */
export interface Holdings {
  ticks: number;
  /** Epoch seconds; null when it holds none (or does not say). */
  firstTimestamp: number | null;
  lastTimestamp: number | null;
  lowestPrice: number | null;
  highestPrice: number | null;
}

/**
 * What the app holds of `symbol` (`GET /api/aggregates/:symbol`, whose `tick_count` moves when the
 * actor's results are committed): no tick for a symbol it has never seen (404).
 */
export async function fetchHoldings(
  client: GatewayClient,
  symbol: string,
  signal?: AbortSignal,
): Promise<Holdings> {
  const outcome = await client.get(`api/aggregates/${encodeURIComponent(symbol)}`, signal);
  if ("error" in outcome) throw new Error(`GET /api/aggregates/${symbol}: ${outcome.error}`);
  if (outcome.status === 404) {
    return { ticks: 0, firstTimestamp: null, lastTimestamp: null, lowestPrice: null, highestPrice: null };
  }
  if (outcome.status !== 200) throw new Error(`GET /api/aggregates/${symbol}: ${describeOutcome(outcome)}`);
  const body = JSON.parse(outcome.body) as {
    tick_count?: unknown;
    first_timestamp?: unknown;
    last_timestamp?: unknown;
    lowest_price?: unknown;
    highest_price?: unknown;
  };
  const ticks = Number(body.tick_count);
  if (!Number.isSafeInteger(ticks) || ticks < 0) {
    throw new Error(`GET /api/aggregates/${symbol}: no tick_count in ${outcome.body.slice(0, 200)}`);
  }
  return {
    ticks,
    firstTimestamp: epochSeconds(body.first_timestamp),
    lastTimestamp: epochSeconds(body.last_timestamp),
    lowestPrice: finiteOrNull(body.lowest_price),
    highestPrice: finiteOrNull(body.highest_price),
  };
}

/** The API's timestamps are ISO 8601 strings (Postgres timestamptz); epoch seconds are taken too. */
function epochSeconds(value: unknown): number | null {
  const ms = typeof value === "string" ? Date.parse(value) : typeof value === "number" ? value * 1000 : NaN;
  return Number.isFinite(ms) ? ms / 1000 : null;
}

const finiteOrNull = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : null);

/** How many price ticks of `symbol` the app has analysed: 0 for a symbol it has never seen. */
export async function fetchTickCount(
  client: GatewayClient,
  symbol: string,
  signal?: AbortSignal,
): Promise<number> {
  return (await fetchHoldings(client, symbol, signal)).ticks;
}

/** `GET /api/report/:symbol`: the figures and the RSI rule's backtest (domain/backtest.ts). */
export async function fetchReport(
  client: GatewayClient,
  symbol: string,
  signal?: AbortSignal,
): Promise<SymbolReport> {
  const outcome = await client.get(`api/report/${encodeURIComponent(symbol)}`, signal);
  if ("error" in outcome) throw new Error(`GET /api/report/${symbol}: ${outcome.error}`);
  if (outcome.status !== 200) throw new Error(`GET /api/report/${symbol}: ${describeOutcome(outcome)}`);
  const report = JSON.parse(outcome.body) as SymbolReport;
  if (typeof report.ticks !== "number" || typeof report.strategy !== "object" || report.strategy === null) {
    throw new Error(`GET /api/report/${symbol}: not a report: ${outcome.body.slice(0, 200)}`);
  }
  return report;
}
