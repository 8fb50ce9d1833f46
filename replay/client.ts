import { HttpClient, type HttpOutcome } from "../lib/http-client";

export type { HttpOutcome };

/** Bodies past this are cut: a validation report of 100 issues is a few KB, a report well under 1 KB. */
const MAX_BODY_CHARS = 1_000_000;

/**
 * The gateway as the replay talks to it: `POST /ingest` with JSON arrays and the API's GETs, by
 * paths under its base URL. Every body is read whole (a 400's `issues` say which rows to drop), and
 * each request can be abandoned through an AbortSignal.
 */
export class GatewayClient {
  private readonly base: URL;
  private readonly http: HttpClient;

  constructor(baseUrl: string, options: { token?: string; timeoutMs: number; maxSockets: number }) {
    this.base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`);
    this.http = new HttpClient({
      ...options,
      maxBodyChars: MAX_BODY_CHARS,
      headers: { Accept: "application/json" },
    });
  }

  url(pathname: string): URL {
    return new URL(pathname.replace(/^\//, ""), this.base);
  }

  postJson(
    pathname: string,
    json: string,
    signal?: AbortSignal,
    headers?: Readonly<Record<string, string>>,
  ): Promise<HttpOutcome> {
    return this.http.post(this.url(pathname), { json, signal, headers });
  }

  get(pathname: string, signal?: AbortSignal): Promise<HttpOutcome> {
    return this.http.get(this.url(pathname), { signal });
  }

  close(): void {
    this.http.close();
  }
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
