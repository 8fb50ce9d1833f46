import http from "node:http";
import type { AddressInfo } from "node:net";
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
  close(): Promise<void>;
}

/**
 * A stand-in for the gateway: `POST /ingest` validates with the real message schema and answers as
 * the gateway does (400 `{error, type, issues: [{index, path, message}]}`, at most 100 issues), and
 * `GET /api/aggregates/:symbol` counts what it accepted. Failures are injected through `answer`.
 */
export async function startFakeGateway(): Promise<FakeGateway> {
  const accepted = new Map<string, PriceTick[]>();
  const calls: IngestCall[] = [];
  const extraTicks = new Map<string, number>();
  let inFlight = 0;
  let maxInFlight = 0;
  const perSymbol = new Map<string, number>();
  let maxPerSymbol = 0;
  let requests = 0;
  const hanging: http.ServerResponse[] = [];

  const send = (
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
  const produce = (items: unknown[]) => {
    for (const t of items as PriceTick[]) {
      const list = accepted.get(t.stock_symbol) ?? [];
      list.push(t);
      accepted.set(t.stock_symbol, list);
    }
  };

  const fake: FakeGateway = {
    base: "",
    accepted,
    calls,
    maxInFlight: () => maxInFlight,
    maxInFlightPerSymbol: () => maxPerSymbol,
    answer: () => "validate",
    extraTicks,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>(resolve => server.close(() => resolve()));
    },
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const aggregates = /^\/api\/aggregates\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && aggregates) {
      const symbol = decodeURIComponent(aggregates[1]);
      const count = (accepted.get(symbol)?.length ?? 0) + (extraTicks.get(symbol) ?? 0);
      if (count === 0)
        return send(res, 404, { error: `no data for symbol ${symbol}`, type: "UNKNOWN_SYMBOL" });
      return send(res, 200, { symbol, tick_count: count });
    }
    if (req.method !== "POST" || url.pathname !== "/ingest") return send(res, 404, { error: "Not found" });
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => {
      const items = JSON.parse(text) as unknown[];
      const symbols = [...new Set(items.map(i => (i as PriceTick).stock_symbol))];
      calls.push({ symbols, timestamps: items.map(i => (i as PriceTick).timestamp) });
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      for (const s of symbols) {
        const n = (perSymbol.get(s) ?? 0) + 1;
        perSymbol.set(s, n);
        maxPerSymbol = Math.max(maxPerSymbol, n);
      }
      const done = () => {
        inFlight--;
        for (const s of symbols) perSymbol.set(s, (perSymbol.get(s) ?? 1) - 1);
      };
      const answer = fake.answer(requests++, items);
      // Answered on a later turn, so requests of different symbols overlap as they would on a real server.
      setTimeout(() => {
        if (answer !== "validate" && "hang" in answer) {
          if (answer.produce) produce(items);
          hanging.push(res);
          res.on("close", done);
          return;
        }
        done();
        if (answer !== "validate") {
          if (answer.produce === true) produce(items);
          return send(res, answer.status, answer.body ?? {}, answer.headers);
        }
        const issues: { index: number; path: string; message: string }[] = [];
        let invalid = 0;
        items.forEach((item, index) => {
          const r = parseMessage(item);
          if (r.ok) return;
          invalid++;
          for (const issue of r.issues) if (issues.length < 100) issues.push({ index, ...issue });
        });
        if (invalid > 0) {
          return send(res, 400, {
            error: `${invalid} of ${items.length} messages are invalid; nothing was accepted`,
            type: "VALIDATION_ERROR",
            issues,
          });
        }
        produce(items);
        send(res, 200, { accepted: items.length });
      }, 2);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  fake.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}
