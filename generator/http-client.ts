import http from "node:http";
import https from "node:https";

/** What one POST came to: a status, or the kind of network failure that kept it from getting one. */
export type PostOutcome = { status: number; body: string } | { error: string };

export interface IngestClientOptions {
  token?: string;
  timeoutMs: number;
  /** Upper bound on open connections; kept alive so thousands of requests per second reuse them. */
  maxSockets: number;
}

/** Failure bodies are kept for the log; a gateway's validation report fits well inside this. */
const MAX_BODY_CHARS = 2000;

/**
 * A keep-alive HTTP client for `POST /ingest`. Plain node:http rather than fetch: an explicit Agent
 * bounds the sockets and reuses them, and it is markedly cheaper per request at thousands per second.
 */
export class IngestClient {
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly headers: Record<string, string>;

  constructor(
    url: string,
    private readonly options: IngestClientOptions,
  ) {
    this.url = new URL(url);
    const secure = this.url.protocol === "https:";
    this.transport = secure ? https : http;
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.maxSockets,
      maxFreeSockets: options.maxSockets,
    };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.headers = { "Content-Type": "application/json" };
    if (options.token !== undefined) this.headers.Authorization = `Bearer ${options.token}`;
  }

  /** Never rejects: every failure becomes an outcome, so the caller only counts. */
  post(json: string): Promise<PostOutcome> {
    return new Promise(resolve => {
      let settled = false;
      let timedOut = false;
      const settle = (outcome: PostOutcome) => {
        if (settled) return;
        settled = true;
        resolve(outcome);
      };
      const failure = (err: unknown): PostOutcome => {
        if (timedOut) return { error: "timeout" };
        const code = (err as NodeJS.ErrnoException | undefined)?.code;
        return { error: code ?? (err instanceof Error ? err.name : "unknown error") };
      };

      const req = this.transport.request(this.url, {
        method: "POST",
        agent: this.agent,
        headers: { ...this.headers, "Content-Length": Buffer.byteLength(json) },
      });
      // The course client has no timeout, but a load run must end even if the gateway stops answering.
      req.setTimeout(this.options.timeoutMs, () => {
        timedOut = true;
        req.destroy(new Error("request timed out"));
      });
      req.on("error", err => settle(failure(err)));
      req.on("response", res => {
        const status = res.statusCode ?? 0;
        let body = "";
        if (status === 200) {
          // Drained unread: the socket goes back to the pool only once the body has been consumed.
          res.resume();
        } else {
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            if (body.length < MAX_BODY_CHARS) body += chunk.slice(0, MAX_BODY_CHARS - body.length);
          });
        }
        res.on("end", () => settle({ status, body }));
        res.on("error", err => settle(failure(err)));
        // Reached only when the connection dropped mid-body: "end" has settled every complete response.
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
