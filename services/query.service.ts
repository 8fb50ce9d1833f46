import { Errors, type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
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
import type { SqlClient } from "../adapters/sql/types";
import type { ServiceDeps } from "./contracts";
import { serviceSchema } from "./service-schema";

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

/** What the query service holds between its lifecycle steps. */
interface QueryState {
  /** What the start-up waits for, for NOT_READY answers. */
  startState: string;
  /** The start-up's wait for Postgres, while it lasts. */
  startOutage: OutageState | null;
  startAbort: AbortController | null;
  startup: Promise<void> | null;
  /** Set once Postgres is migrated. */
  results: ResultsQueries | null;
  /** Postgres' state between reads (none for PGlite, which runs in the process). */
  health: DependencyHealth | null;
}

type QueryMethods = {
  store(): ResultsQueries;
  read<T>(fn: (store: ResultsQueries) => Promise<T>): Promise<T>;
  waitForPostgres(signal: AbortSignal): Promise<SqlClient>;
  serving(sql: SqlClient): void;
};

type QueryFields = { deps: ServiceDeps; state: QueryState };
type QueryService = Service & QueryMethods & QueryFields;

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
  return serviceSchema<ServiceSettingSchema, QueryMethods, QueryFields>({
    name: "query",
    mixins: [resourcesMixin(deps.resources)],
    actions,
    methods,
    created() {
      this.deps = deps;
      this.state = {
        startState: "starting",
        startOutage: null,
        startAbort: null,
        startup: null,
        results: null,
        health: null,
      };
    },
    started,
    stopped,
  });
}

const actions = {
  /** Every symbol seen, with its running aggregates and its latest price and indicators. */
  symbols: {
    handler(this: QueryService) {
      return this.read(s => s.latestPerSymbol());
    },
  },

  /** Prices and indicators of one symbol, oldest first: the last `limit` ticks within the range. */
  history: {
    async handler(this: QueryService, ctx: Context<unknown>) {
      const p: HistoryParams = parseParams(historyParams, ctx.params);
      const ticks = await this.read(s => s.history(p));
      return { symbol: p.symbol, from: p.from ?? null, to: p.to ?? null, ticks };
    },
  },

  /** Buy/sell signals, newest first. */
  signals: {
    handler(this: QueryService, ctx: Context<unknown>) {
      const p: SignalsParams = parseParams(signalsParams, ctx.params);
      return this.read(s => s.signals(p));
    },
  },

  /**
   * Aggregates of one symbol: over all its ticks without a range (aggregated_metrics), or over
   * the whole minutes a range covers (minute_buckets).
   */
  aggregates: {
    async handler(this: QueryService, ctx: Context<unknown>) {
      const p: AggregatesParams = parseParams(aggregatesParams, ctx.params);
      if (p.from === undefined && p.to === undefined) {
        const all = await this.read(s => s.aggregates(p.symbol));
        if (!all) throw unknownSymbol(p.symbol);
        return { range: null, ...all };
      }
      const range = minuteRange(p.from, p.to);
      const row = await this.read(s => s.aggregatesOverMinutes(p.symbol, range.from, range.to));
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
    handler(this: QueryService, ctx: Context<unknown>) {
      return this.read(s => s.deadLetters(parseParams(deadLetterParams, ctx.params)));
    },
  },

  /** What the RSI rule would have done on the symbol's stored history, next to buy-and-hold. */
  report: {
    async handler(this: QueryService, ctx: Context<unknown>) {
      const { symbol } = parseParams(symbolParams, ctx.params);
      const input = await this.read(s => s.reportInput(symbol));
      if (!input) throw unknownSymbol(symbol);
      return symbolReport(input);
    },
  },
};

/** Returns at once; waits for Postgres in the background (see the actors service for why). */
function started(this: QueryService): void {
  const { state } = this;
  const abort = new AbortController();
  state.startAbort = abort;
  state.startState = "starting";
  this.deps.resources.reportStartup("query", state.startState);
  state.startup = this.waitForPostgres(abort.signal).then(
    sql => this.serving(sql),
    (err: Error) => {
      if (err instanceof WaitAborted || abort.signal.aborted) return;
      this.broker.fatal(`the query service cannot start: ${err.message}`, err, true);
    },
  );
}

async function stopped(this: QueryService): Promise<void> {
  const { state } = this;
  state.startAbort?.abort();
  await state.startup;
  state.health?.stop();
  state.health = null;
  state.results = null;
}

const methods = {
  /** The results store; 503 while the service is starting or Postgres is known to be away. */
  store() {
    const { results, startOutage, startState, health } = this.state;
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
  },

  /** One read: 503 at once while Postgres is known to be away; a read failing with an outage says so. */
  async read<T>(fn: (store: ResultsQueries) => Promise<T>): Promise<T> {
    const s = this.store();
    try {
      return await fn(s);
    } catch (err) {
      if (!isRetriable(err)) throw err;
      const health = this.state.health;
      health?.failed(err);
      throw postgresUnavailable(health?.down ?? { since: Date.now(), error: (err as Error).message });
    }
  },

  waitForPostgres(signal) {
    const { config, resources } = this.deps;
    return untilAvailable("migrate the database (Postgres)", () => resources.sql(), {
      outage: new Outage("query", this.logger, { failing: "waiting", recovered: "resumed" }),
      signal,
      maxBackoffMs: config.actors.retryMaxBackoffMs,
      onChange: outageState => {
        this.state.startOutage = outageState;
        this.state.startState = describeOutage(outageState);
        resources.reportStartup("query", this.state.startState);
      },
    });
  },

  /** From here on the reads answer; Postgres (not PGlite) is probed in the background. */
  serving(sql) {
    const { state } = this;
    state.startOutage = null;
    state.results = new ResultsQueries(sql);
    // PGlite runs in the process: never unreachable, and a probe would only queue behind
    // the actors' transactions on its one connection.
    if (sql.kind === "postgres") {
      state.health = new DependencyHealth({
        subject: "query",
        what: "reach Postgres",
        note: "; the REST API's reads answer 503 POSTGRES_UNAVAILABLE until it is back",
        logger: this.logger,
        probe: () => sql.query("SELECT 1"),
        // As long as the pool waits for a connection: a busy pool is not an outage.
        timeoutMs: 5000,
      });
      state.health.start();
    }
    this.deps.resources.reportStartup("query", null);
  },
} satisfies QueryMethods & ThisType<QueryService>;
