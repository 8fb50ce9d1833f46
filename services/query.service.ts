import { Errors, type Context, type ServiceSchema } from "moleculer";
import { symbolReport } from "../domain/backtest";
import {
  aggregatesParams,
  historyParams,
  parseParams,
  signalsParams,
  symbolParams,
  type AggregatesParams,
  type HistoryParams,
  type SignalsParams,
} from "../lib/query-params";
import { describeOutage, Outage, untilAvailable, WaitAborted } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import { ResultsStore } from "../runtime/results-store";
import type { ServiceDeps } from "./contracts";

/** Epoch seconds of the minute boundaries a range covers: whole minutes, from floored, to rounded up. */
export function minuteRange(from?: number, to?: number): { from: number | null; to: number | null } {
  return {
    from: from === undefined ? null : Math.floor(from / 60) * 60,
    to: to === undefined ? null : Math.ceil(to / 60) * 60,
  };
}

const unknownSymbol = (symbol: string) =>
  new Errors.MoleculerClientError(`no data for symbol ${symbol}`, 404, "UNKNOWN_SYMBOL");

/**
 * Reads results from Postgres through the results store: the latest figures per symbol, a
 * symbol's history, signals, aggregates over any range of whole minutes (one query over
 * `minute_buckets`, no tick scan), and a symbol's replay report.
 */
export default function createQueryService(deps: ServiceDeps): ServiceSchema {
  const { config, resources } = deps;
  let results: ResultsStore | null = null;
  let startState = "starting";
  let startAbort: AbortController | null = null;
  let startup: Promise<void> | null = null;
  const store = () => {
    if (!results)
      throw new Errors.MoleculerRetryableError(
        `the query service is not running yet: ${startState}`,
        503,
        "NOT_READY",
      );
    return results;
  };

  return {
    name: "query",
    mixins: [resourcesMixin(resources)],

    actions: {
      /** Every symbol seen, with its running aggregates and its latest price and indicators. */
      symbols: {
        handler: () => store().latestPerSymbol(),
      },

      /** Prices and indicators of one symbol, oldest first: the last `limit` ticks within the range. */
      history: {
        async handler(ctx: Context<unknown>) {
          const p: HistoryParams = parseParams(historyParams, ctx.params);
          const ticks = await store().history(p);
          return { symbol: p.symbol, from: p.from ?? null, to: p.to ?? null, ticks };
        },
      },

      /** Buy/sell signals, newest first. */
      signals: {
        handler(ctx: Context<unknown>) {
          const p: SignalsParams = parseParams(signalsParams, ctx.params);
          return store().signals(p);
        },
      },

      /**
       * Aggregates of one symbol: over all its ticks without a range (aggregated_metrics), or over
       * the whole minutes a range covers (minute_buckets).
       */
      aggregates: {
        async handler(ctx: Context<unknown>) {
          const p: AggregatesParams = parseParams(aggregatesParams, ctx.params);
          if (p.from === undefined && p.to === undefined) {
            const all = await store().aggregates(p.symbol);
            if (!all) throw unknownSymbol(p.symbol);
            return { range: null, ...all };
          }
          const range = minuteRange(p.from, p.to);
          const row = await store().aggregatesOverMinutes(p.symbol, range.from, range.to);
          return {
            range: {
              from: range.from === null ? null : new Date(range.from * 1000).toISOString(),
              to: range.to === null ? null : new Date(range.to * 1000).toISOString(),
            },
            ...row,
          };
        },
      },

      /** What the RSI rule would have done on the symbol's stored history, next to buy-and-hold. */
      report: {
        async handler(ctx: Context<unknown>) {
          const { symbol } = parseParams(symbolParams, ctx.params);
          const input = await store().reportInput(symbol);
          if (!input) throw unknownSymbol(symbol);
          return symbolReport(input);
        },
      },
    },

    /** Returns at once; waits for Postgres in the background (see the actors service for why). */
    started(this: { broker: Context["broker"]; logger: Context["broker"]["logger"] }) {
      const { broker, logger } = this;
      const abort = new AbortController();
      startAbort = abort;
      startState = "starting";
      resources.reportStartup("query", startState);
      startup = untilAvailable("migrate the database (Postgres)", () => resources.sql(), {
        outage: new Outage("query", logger, { failing: "waiting", recovered: "resumed" }),
        signal: abort.signal,
        maxBackoffMs: config.actors.retryMaxBackoffMs,
        onChange: state => {
          startState = describeOutage(state);
          resources.reportStartup("query", startState);
        },
      }).then(
        sql => {
          results = new ResultsStore(sql);
          resources.reportStartup("query", null);
        },
        (err: Error) => {
          if (err instanceof WaitAborted || abort.signal.aborted) return;
          broker.fatal(`the query service cannot start: ${err.message}`, err, true);
        },
      );
    },

    async stopped() {
      startAbort?.abort();
      await startup;
      results = null;
    },
  };
}
