import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { symbolReport } from "../../../domain/backtest";
import { parseMessage, type PriceTick } from "../../../domain/messages";

/** What the fake does with one `POST /ingest`: validate and accept (the default), or answer otherwise. */
export type Answer =
  | "validate"
  | { status: number; body?: unknown; headers?: Record<string, string>; produce?: boolean }
  /** Never answered; with `produce`, the rows were taken all the same (as after Kafka's ack, before the 200). */
  | { hang: true; produce: boolean };

export interface IngestCall {
  symbols: string[];
  timestamps: number[];
  /** The request's Idempotency-Key header, if it had one. */
  key?: string;
}

export interface FakeGateway {
  base: string;
  /** Every accepted tick, per symbol, in the order they were produced. */
  accepted: Map<string, PriceTick[]>;
  calls: IngestCall[];
  /** Most requests in flight at once, overall and for any single symbol. */
  maxInFlight(): number;
  maxInFlightPerSymbol(): number;
  /** Decides each request's answer; `n` counts requests from 0. */
  answer: (n: number, items: unknown[]) => Answer;
  /** Added to the accepted count in GET /api/aggregates/:symbol (ticks from elsewhere). */
  extraTicks: Map<string, number>;
  /** Set: every GET /api/... answers 503 with this error (the query API cannot read Postgres). */
  queryDown: string | null;
  close(): Promise<void>;
}

/**
 * A stand-in for the gateway: `POST /ingest` validates with the real message schema and answers as
 * the gateway does (400 `{error, type, issues: [{index, path, message}]}`, at most 100 issues),
 * honours `Idempotency-Key` as it does (the same key and body again: 200, nothing produced; another
 * body: 422), `GET /api/aggregates/:symbol` sums up what it accepted (count, first and last time as
 * ISO strings, lowest and highest price) and `GET /api/report/:symbol` reports it (with no signal:
 * the fake computes no RSI). Failures are injected through `answer`.
 */
export async function startFakeGateway(): Promise<FakeGateway> {
  const accepted = new Map<string, PriceTick[]>();
  const calls: IngestCall[] = [];
  const extraTicks = new Map<string, number>();
  const flight = new InFlight();
  let requests = 0;
  const hanging: http.ServerResponse[] = [];

  const keys = new KeyStore();
  const produce = (items: unknown[]) => addTicks(accepted, items as PriceTick[]);

  const fake: FakeGateway = {
    base: "",
    accepted,
    calls,
    maxInFlight: () => flight.max,
    maxInFlightPerSymbol: () => flight.maxPerSymbol,
    answer: () => "validate",
    extraTicks,
    queryDown: null,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>(resolve => server.close(() => resolve()));
    },
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method === "GET") {
      const query = queryAnswer(url.pathname, fake);
      if (query !== null) return send(res, query.status, query.body);
    }
    if (req.method !== "POST" || url.pathname !== "/ingest") return send(res, 404, { error: "Not found" });
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => {
      const items = JSON.parse(text) as unknown[];
      const symbols = [...new Set(items.map(i => (i as PriceTick).stock_symbol))];
      const header = req.headers["idempotency-key"];
      const key = Array.isArray(header) ? header[0] : header;
      calls.push({ symbols, timestamps: items.map(i => (i as PriceTick).timestamp), key });
      const done = flight.begin(symbols);
      const answer = fake.answer(requests++, items);
      // Answered on a later turn, so requests of different symbols overlap as they would on a real server.
      setTimeout(() => {
        if (answer !== "validate" && "hang" in answer) {
          if (answer.produce && keys.take(key, text)) produce(items);
          hanging.push(res);
          res.on("close", done);
          return;
        }
        done();
        if (answer !== "validate") {
          if (answer.produce === true && keys.take(key, text)) produce(items);
          return send(res, answer.status, answer.body ?? {}, answer.headers);
        }
        const invalid = validationFailure(items);
        if (invalid !== null) return send(res, 400, invalid);
        if (key !== undefined && keys.conflicts(key, text)) {
          return send(res, 422, {
            error: `Idempotency-Key ${JSON.stringify(key)} was already used for another request body`,
            type: "IDEMPOTENCY_KEY_REUSED",
          });
        }
        if (keys.take(key, text)) produce(items);
        send(res, 200, { accepted: items.length });
      }, 2);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  fake.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}

function addTicks(accepted: Map<string, PriceTick[]>, ticks: readonly PriceTick[]): void {
  for (const t of ticks) {
    const list = accepted.get(t.stock_symbol) ?? [];
    list.push(t);
    accepted.set(t.stock_symbol, list);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Requests being handled, overall and per symbol, and the most there ever were at once. */
class InFlight {
  max = 0;
  maxPerSymbol = 0;
  private now = 0;
  private readonly perSymbol = new Map<string, number>();

  /** Counts a request of `symbols` in; the function returned counts it out. */
  begin(symbols: readonly string[]): () => void {
    this.max = Math.max(this.max, ++this.now);
    for (const s of symbols) {
      const n = (this.perSymbol.get(s) ?? 0) + 1;
      this.perSymbol.set(s, n);
      this.maxPerSymbol = Math.max(this.maxPerSymbol, n);
    }
    return () => {
      this.now--;
      for (const s of symbols) this.perSymbol.set(s, (this.perSymbol.get(s) ?? 1) - 1);
    };
  }
}

/** The gateway's Idempotency-Key store in miniature: per key, the body's SHA-256 and whether it was produced. */
class KeyStore {
  private readonly keys = new Map<string, { sha: string; produced: boolean }>();

  /** Another body under a key already taken: the gateway's 422. */
  conflicts(key: string, body: string): boolean {
    const seen = this.keys.get(key);
    return seen !== undefined && seen.sha !== sha256(body);
  }

  /** Takes `key` for `body` if it is new; true when the messages are to be produced (not yet under this key). */
  take(key: string | undefined, body: string): boolean {
    if (key === undefined) return true;
    const seen = this.keys.get(key) ?? { sha: sha256(body), produced: false };
    this.keys.set(key, seen);
    if (seen.produced) return false;
    seen.produced = true;
    return true;
  }
}

/** The gateway's 400 body when any item is invalid (at most 100 issues), else null. */
function validationFailure(items: readonly unknown[]): object | null {
  const issues: { index: number; path: string; message: string }[] = [];
  let invalid = 0;
  items.forEach((item, index) => {
    const r = parseMessage(item);
    if (r.ok) return;
    invalid++;
    for (const issue of r.issues) if (issues.length < 100) issues.push({ index, ...issue });
  });
  if (invalid === 0) return null;
  return {
    error: `${invalid} of ${items.length} messages are invalid; nothing was accepted`,
    type: "VALIDATION_ERROR",
    issues,
  };
}

/** The answer to a GET of the query API (aggregates, report), or null for another path. */
function queryAnswer(
  pathname: string,
  fake: Pick<FakeGateway, "accepted" | "extraTicks" | "queryDown">,
): { status: number; body: unknown } | null {
  if (!pathname.startsWith("/api/")) return null;
  if (fake.queryDown !== null) {
    return { status: 503, body: { error: fake.queryDown, type: "POSTGRES_UNAVAILABLE", retryable: true } };
  }
  const route = /^\/api\/(aggregates|report)\/([^/]+)$/.exec(pathname);
  if (route === null) return null;
  const symbol = decodeURIComponent(route[2]);
  const ticks = fake.accepted.get(symbol) ?? [];
  const count = ticks.length + (route[1] === "aggregates" ? (fake.extraTicks.get(symbol) ?? 0) : 0);
  if (count === 0)
    return { status: 404, body: { error: `no data for symbol ${symbol}`, type: "UNKNOWN_SYMBOL" } };
  if (route[1] === "report") return { status: 200, body: reportOf(symbol, ticks) };
  return { status: 200, body: { symbol, tick_count: count, ...span(ticks) } };
}

/** The time span and price range of `ticks`, as GET /api/aggregates/:symbol shows them. */
function span(ticks: readonly PriceTick[]) {
  if (ticks.length === 0)
    return { first_timestamp: null, last_timestamp: null, lowest_price: null, highest_price: null };
  const times = ticks.map(t => t.timestamp);
  return {
    first_timestamp: new Date(Math.min(...times) * 1000).toISOString(),
    last_timestamp: new Date(Math.max(...times) * 1000).toISOString(),
    lowest_price: Math.min(...ticks.map(t => t.low)),
    highest_price: Math.max(...ticks.map(t => t.high)),
  };
}

/** The app's report of `ticks` as if no signal had fired. */
function reportOf(symbol: string, ticks: readonly PriceTick[]) {
  const { first_timestamp, last_timestamp, lowest_price, highest_price } = span(ticks);
  return symbolReport({
    symbol,
    tickCount: ticks.length,
    firstTimestamp: first_timestamp === null ? null : Date.parse(first_timestamp) / 1000,
    lastTimestamp: last_timestamp === null ? null : Date.parse(last_timestamp) / 1000,
    lowestPrice: lowest_price,
    highestPrice: highest_price,
    firstClose: ticks[0].closing_price,
    lastClose: ticks[ticks.length - 1].closing_price,
    signals: [],
  });
}
