import http from "node:http";
import https from "node:https";

/** An HTTP answer, or the network failure that kept one from arriving. */
export type HttpOutcome =
  { status: number; body: string; retryAfterSeconds: number | null } | { error: string; aborted: boolean };

/** Bodies past this are cut: a validation report of 100 issues is a few KB, a report well under 1 KB. */
const MAX_BODY_CHARS = 1_000_000;

/**
 * A keep-alive client for the gateway: `POST /ingest` with JSON arrays, and the API's GETs.
 * Plain node:http, as the generator's client, with two additions a replay needs: the whole error
 * body (the 400's `issues` say which rows to drop) and an AbortSignal to abandon a request.
 */
export class GatewayClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly headers: Record<string, string>;

  constructor(
    baseUrl: string,
    private readonly options: { token?: string; timeoutMs: number; maxSockets: number },
  ) {
    this.base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`);
    const secure = this.base.protocol === "https:";
    this.transport = secure ? https : http;
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.headers = {};
    if (options.token !== undefined) this.headers.Authorization = `Bearer ${options.token}`;
  }

  url(pathname: string): URL {
    return new URL(pathname.replace(/^\//, ""), this.base);
  }

  postJson(pathname: string, json: string, signal?: AbortSignal): Promise<HttpOutcome> {
    return this.request("POST", pathname, json, signal);
  }

  get(pathname: string, signal?: AbortSignal): Promise<HttpOutcome> {
    return this.request("GET", pathname, undefined, signal);
  }

  /** Never rejects: every failure becomes an outcome. */
  private request(
    method: string,
    pathname: string,
    json: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<HttpOutcome> {
    return new Promise(resolve => {
      let settled = false;
      let timedOut = false;
      const settle = (outcome: HttpOutcome) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      const failure = (err: unknown): HttpOutcome => {
        if (signal?.aborted) return { error: "abandoned", aborted: true };
        if (timedOut) return { error: `no answer within ${this.options.timeoutMs} ms`, aborted: false };
        const code = (err as NodeJS.ErrnoException | undefined)?.code;
        return { error: code ?? (err instanceof Error ? err.message : "unknown error"), aborted: false };
      };
      if (signal?.aborted) return settle({ error: "abandoned", aborted: true });

      const headers: Record<string, string | number> = { ...this.headers, Accept: "application/json" };
      if (json !== undefined) {
        headers["Content-Type"] = "application/json";
        headers["Content-Length"] = Buffer.byteLength(json);
      }
      const req = this.transport.request(this.url(pathname), { method, agent: this.agent, headers });
      const onAbort = () => req.destroy(new Error("abandoned"));
      signal?.addEventListener("abort", onAbort, { once: true });
      req.setTimeout(this.options.timeoutMs, () => {
        timedOut = true;
        req.destroy(new Error("timed out"));
      });
      req.on("error", err => settle(failure(err)));
      req.on("response", res => {
        const status = res.statusCode ?? 0;
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < MAX_BODY_CHARS) body += chunk.slice(0, MAX_BODY_CHARS - body.length);
        });
        res.on("end", () =>
          settle({ status, body, retryAfterSeconds: retryAfter(res.headers["retry-after"]) }),
        );
        res.on("error", err => settle(failure(err)));
        res.on("close", () =>
          settle(failure(Object.assign(new Error("response cut off"), { code: "ECONNRESET" }))),
        );
      });
      req.end(json);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function retryAfter(header: string | undefined): number | null {
  if (header === undefined) return null;
  const seconds = Number(header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

/** `HTTP 503 LOG_UNAVAILABLE: Kafka did not acknowledge...` or the network error, for messages. */
export function describeOutcome(outcome: HttpOutcome): string {
  if ("error" in outcome) return outcome.error;
  let detail = "";
  try {
    const body = JSON.parse(outcome.body) as { error?: unknown; type?: unknown };
    const parts = [body.type, body.error].filter(p => typeof p === "string" && p !== "");
    detail = parts.join(": ");
  } catch {
    detail = outcome.body.slice(0, 200);
  }
  return detail === "" ? `HTTP ${outcome.status}` : `HTTP ${outcome.status} ${detail}`;
}
