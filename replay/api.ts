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

/**
 * How many price ticks of `symbol` the app has analysed (`GET /api/aggregates/:symbol`, whose
 * `tick_count` moves when the actor's results are committed): 0 for a symbol it has never seen.
 */
export async function fetchTickCount(
  client: GatewayClient,
  symbol: string,
  signal?: AbortSignal,
): Promise<number> {
  const outcome = await client.get(`api/aggregates/${encodeURIComponent(symbol)}`, signal);
  if ("error" in outcome) throw new Error(`GET /api/aggregates/${symbol}: ${outcome.error}`);
  if (outcome.status === 404) return 0;
  if (outcome.status !== 200) throw new Error(`GET /api/aggregates/${symbol}: ${describeOutcome(outcome)}`);
  const count = Number((JSON.parse(outcome.body) as { tick_count?: unknown }).tick_count);
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new Error(`GET /api/aggregates/${symbol}: no tick_count in ${outcome.body.slice(0, 200)}`);
  }
  return count;
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
