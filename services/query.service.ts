import { Errors, type Context, type ServiceSchema } from "moleculer";
import { symbolReport } from "../domain/backtest";
import {
  aggregatesParams,
  deadLetterParams,
  historyParams,
  parseParams,
  signalsParams,
  symbolParams,
  type AggregatesParams,
  type HistoryParams,
  type SignalsParams,
} from "../lib/query-params";
import { isRetriable } from "../domain/errors";
import { DependencyHealth } from "../lib/health";
import { describeOutage, Outage, untilAvailable, WaitAborted, type OutageState } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import { ResultsQueries } from "../runtime/store/results-queries";
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

/** The answer of every read while Postgres is away: 503, retryable, naming the reason. */
export const postgresUnavailable = (down: Pick<OutageState, "since" | "error">) =>
  new Errors.MoleculerRetryableError(
    `Postgres unreachable since ${new Date(down.since).toISOString()}: ${down.error}; the query API answers again once it is back`,
    503,
    "POSTGRES_UNAVAILABLE",
    { retryable: true },
  );

/**
 * Reads results from Postgres through the results store: the latest figures per symbol, a
 * symbol's history, signals, aggregates over any range of whole minutes (one query over
 * `minute_buckets`, no tick scan), and a symbol's replay report.
 *
 * While Postgres is away every read answers `503 POSTGRES_UNAVAILABLE` (retryable) at once: the
 * service keeps Postgres' state current in the background (`DependencyHealth`: SELECT 1 every 5 s,
 * every second while it is down) and a read that fails with an outage marks it down too, so
 * requests neither hang on a dead connection nor become 500s, and cost no probe of their own.
 */
export default function createQueryService(deps: ServiceDeps): ServiceSchema {
  const { config, resources } = deps;
  let results: ResultsQueries | null = null;
  let health: DependencyHealth | null = null;
  let startState = "starting";
  /** The start-up's wait for Postgres, while it lasts. */
  let startOutage: OutageState | null = null;
  let startAbort: AbortController | null = null;
  let startup: Promise<void> | null = null;
  const store = () => {
    if (!results) {
      if (startOutage) throw postgresUnavailable(startOutage);
      throw new Errors.MoleculerRetryableError(
        `the query service is not running yet: ${startState}`,
        503,
        "NOT_READY",
      );
    }
    const down = health?.down;
    if (down) throw postgresUnavailable(down);
    return results;
  };
  /** One read: 503 at once while Postgres is known to be away; a read failing with an outage says so. */
  async function read<T>(fn: (store: ResultsQueries) => Promise<T>): Promise<T> {
    const s = store();
    try {
      return await fn(s);
    } catch (err) {
      if (!isRetriable(err)) throw err;
      health?.failed(err);
      throw postgresUnavailable(health?.down ?? { since: Date.now(), error: (err as Error).message });
    }
  }

  return {
    name: "query",
    mixins: [resourcesMixin(resources)],

    actions: {
      /** Every symbol seen, with its running aggregates and its latest price and indicators. */
      symbols: {
        handler: () => read(s => s.latestPerSymbol()),
      },

      /** Prices and indicators of one symbol, oldest first: the last `limit` ticks within the range. */
      history: {
        async handler(ctx: Context<unknown>) {
          const p: HistoryParams = parseParams(historyParams, ctx.params);
          const ticks = await read(s => s.history(p));
          return { symbol: p.symbol, from: p.from ?? null, to: p.to ?? null, ticks };
        },
      },

      /** Buy/sell signals, newest first. */
      signals: {
        handler(ctx: Context<unknown>) {
          const p: SignalsParams = parseParams(signalsParams, ctx.params);
          return read(s => s.signals(p));
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
            const all = await read(s => s.aggregates(p.symbol));
            if (!all) throw unknownSymbol(p.symbol);
            return { range: null, ...all };
          }
          const range = minuteRange(p.from, p.to);
          const row = await read(s => s.aggregatesOverMinutes(p.symbol, range.from, range.to));
          return {
            range: {
              from: range.from === null ? null : new Date(range.from * 1000).toISOString(),
              to: range.to === null ? null : new Date(range.to * 1000).toISOString(),
            },
            ...row,
          };
        },
      },

      /** Messages the actors did not apply (table dead_letters), newest first, with the reason. */
      deadLetters: {
        handler(ctx: Context<unknown>) {
          return read(s => s.deadLetters(parseParams(deadLetterParams, ctx.params)));
        },
      },

      /** What the RSI rule would have done on the symbol's stored history, next to buy-and-hold. */
      report: {
        async handler(ctx: Context<unknown>) {
          const { symbol } = parseParams(symbolParams, ctx.params);
          const input = await read(s => s.reportInput(symbol));
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
          startOutage = state;
          startState = describeOutage(state);
          resources.reportStartup("query", startState);
        },
      }).then(
        sql => {
          startOutage = null;
          results = new ResultsQueries(sql);
          // PGlite runs in the process: never unreachable, and a probe would only queue behind
          // the actors' transactions on its one connection.
          if (sql.kind === "postgres") {
            health = new DependencyHealth({
              subject: "query",
              what: "reach Postgres",
              note: "; the REST API's reads answer 503 POSTGRES_UNAVAILABLE until it is back",
              logger,
              probe: () => sql.query("SELECT 1"),
              // As long as the pool waits for a connection: a busy pool is not an outage.
              timeoutMs: 5000,
            });
            health.start();
          }
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
      health?.stop();
      health = null;
      results = null;
    },
  };
}
