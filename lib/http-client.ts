import http from "node:http";
import https from "node:https";

/** An HTTP answer, whatever its status. */
export interface HttpAnswer {
  status: number;
  /** The body, cut at `maxBodyChars`; empty for a 200 when `skipOkBodies` is set. */
  body: string;
  /** `Retry-After` in seconds (the gateway sends it with 429 and some 503s); null when absent or a date. */
  retryAfterSeconds: number | null;
}

/** The network failure that kept an answer from arriving. */
export interface HttpFailure {
  /** In words, for messages: `ECONNREFUSED`, `no answer within 5000 ms`, `abandoned`. */
  error: string;
  /** Short, for counting failures by kind: an errno code such as `ECONNREFUSED`, `timeout` or `abandoned`. */
  code: string;
  /** The caller's AbortSignal ended the request. */
  aborted: boolean;
}

export type HttpOutcome = HttpAnswer | HttpFailure;

export interface HttpClientOptions {
  /** Sent as `Authorization: Bearer <token>` with every request. */
  token?: string;
  /** A request without a complete answer by then is destroyed: a failure with code `timeout`. */
  timeoutMs: number;
  /** Upper bound on open connections, each kept alive for the next request. */
  maxSockets: number;
  /** Bodies are cut after this many characters. */
  maxBodyChars: number;
  /** Drain a 200's body unread: for callers that only count successes, thousands of times a second. */
  skipOkBodies?: boolean;
  /** Sent with every request, before the per-request headers. */
  headers?: Readonly<Record<string, string>>;
}

export interface HttpRequestOptions {
  /** A JSON body: sent with `Content-Type: application/json` and its `Content-Length`. */
  json?: string;
  headers?: Readonly<Record<string, string>>;
  /** Aborted: the request is destroyed and answers a failure with `aborted: true`. */
  signal?: AbortSignal;
}

/**
 * A keep-alive HTTP client that never rejects: every failure becomes an outcome. Plain node:http
 * rather than fetch: an explicit Agent bounds the sockets and reuses them, and it is markedly
 * cheaper per request at thousands per second. Shared by the load generator and the replay.
 */
export class HttpClient {
  private readonly agents: { "http:": http.Agent; "https:": https.Agent };
  private readonly headers: Record<string, string>;

  constructor(private readonly options: HttpClientOptions) {
    // One origin per client: its sockets never outnumber maxSockets, so every idle one is kept.
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.maxSockets,
      maxFreeSockets: options.maxSockets,
    };
    this.agents = { "http:": new http.Agent(agentOptions), "https:": new https.Agent(agentOptions) };
    this.headers = { ...options.headers };
    if (options.token !== undefined) this.headers.Authorization = `Bearer ${options.token}`;
  }

  get(url: URL, options: Omit<HttpRequestOptions, "json"> = {}): Promise<HttpOutcome> {
    return this.request("GET", url, options);
  }

  post(url: URL, options: HttpRequestOptions = {}): Promise<HttpOutcome> {
    return this.request("POST", url, options);
  }

  request(method: string, url: URL, options: HttpRequestOptions = {}): Promise<HttpOutcome> {
    const { json, signal } = options;
    if (signal?.aborted) return Promise.resolve(this.failure(undefined, { aborted: true, timedOut: false }));
    return new Promise(resolve => {
      let settled = false;
      let timedOut = false;
      let req: http.ClientRequest;
      try {
        req = this.transport(url).request(url, {
          method,
          agent: this.agent(url),
          headers: this.requestHeaders(options),
        });
      } catch (err) {
        // Thrown before anything is sent, such as a header value node refuses (ERR_INVALID_CHAR).
        return resolve(this.failure(err, { aborted: false, timedOut: false }));
      }
      const onAbort = () => req.destroy(new Error("abandoned"));
      const settle = (outcome: HttpOutcome) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      const fail = (err: unknown) =>
        settle(this.failure(err, { aborted: signal?.aborted === true, timedOut }));
      signal?.addEventListener("abort", onAbort, { once: true });
      req.setTimeout(this.options.timeoutMs, () => {
        timedOut = true;
        req.destroy(new Error("timed out"));
      });
      req.on("error", fail);
      req.on("response", res => this.read(res, settle, fail));
      req.end(json);
    });
  }

  close(): void {
    this.agents["http:"].destroy();
    this.agents["https:"].destroy();
  }

  private transport(url: URL): typeof http | typeof https {
    return url.protocol === "https:" ? https : http;
  }

  private agent(url: URL): http.Agent {
    return url.protocol === "https:" ? this.agents["https:"] : this.agents["http:"];
  }

  private requestHeaders(options: HttpRequestOptions): Record<string, string | number> {
    const headers: Record<string, string | number> = { ...this.headers, ...options.headers };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = Buffer.byteLength(options.json);
    }
    return headers;
  }

  private read(
    res: http.IncomingMessage,
    settle: (o: HttpOutcome) => void,
    fail: (err: unknown) => void,
  ): void {
    const status = res.statusCode ?? 0;
    const max = this.options.maxBodyChars;
    let body = "";
    if (status === 200 && this.options.skipOkBodies === true) {
      // Drained unread: the socket goes back to the pool only once the body has been consumed.
      res.resume();
    } else {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (body.length < max) body += chunk.slice(0, max - body.length);
      });
    }
    res.on("end", () => settle({ status, body, retryAfterSeconds: retryAfter(res.headers["retry-after"]) }));
    res.on("error", fail);
    // Reached only when the connection dropped mid-body: "end" has settled every complete response.
    res.on("close", () => fail(Object.assign(new Error("response cut off"), { code: "ECONNRESET" })));
  }

  private failure(err: unknown, how: { aborted: boolean; timedOut: boolean }): HttpFailure {
    if (how.aborted) return { error: "abandoned", code: "abandoned", aborted: true };
    if (how.timedOut) {
      return { error: `no answer within ${this.options.timeoutMs} ms`, code: "timeout", aborted: false };
    }
    const errno = (err as NodeJS.ErrnoException | undefined)?.code;
    if (errno !== undefined) return { error: errno, code: errno, aborted: false };
    if (err instanceof Error) return { error: err.message, code: err.name, aborted: false };
    return { error: "unknown error", code: "unknown error", aborted: false };
  }
}

function retryAfter(header: string | undefined): number | null {
  if (header === undefined) return null;
  const seconds = Number(header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}
