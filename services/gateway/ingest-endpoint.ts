import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors, type Context, type ServiceBroker } from "moleculer";
import type { Config } from "../../lib/config";
import { METRIC } from "../../lib/metrics";
import type { IngestParams, IngestResult, LocalIngest } from "../contracts";
import { bodyFormat, decodeItems, HttpError, readBody } from "./http-body";

type Respond = (res: ServerResponse, status: number, body: unknown) => void;
type Fail = (res: ServerResponse, err: Error) => void;

/** moleculer-web's rate limiter of a route (`route.rateLimit` once the route is built). */
export interface RouteRateLimit {
  limit: number;
  headers: boolean;
  key(req: IncomingMessage): string | undefined;
  store: { inc(key: string): number | Promise<number>; resetTime: number };
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const given = Buffer.from(m[1].trim());
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The `Idempotency-Key` request header (IETF httpapi draft): null when absent; a 400 naming the
 * header when it is not 1 to 255 visible ASCII characters.
 */
function idempotencyKey(header: string | string[] | undefined): string | null {
  if (header === undefined) return null;
  const value = Array.isArray(header) ? header[0] : header;
  if (!/^[\x21-\x7e]{1,255}$/.test(value)) {
    throw new HttpError(
      400,
      "INVALID_IDEMPOTENCY_KEY",
      "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
      {
        issues: [
          {
            index: 0,
            path: "(header) Idempotency-Key",
            message: "must be 1 to 255 visible ASCII characters",
          },
        ],
      },
    );
  }
  return value;
}

/** What `POST /ingest` needs from the gateway. */
export interface IngestEndpointDeps {
  broker: ServiceBroker;
  ingest: Config["ingest"];
  /** KAFKA_ACK_TIMEOUT_MS: ingest answers every request without an Idempotency-Key within it. */
  ackTimeoutMs: number;
  respond: Respond;
  fail: Fail;
  /** The ingest route's `onError` for the rate limiter's 429. */
  rateLimited: (res: ServerResponse, err: Error) => void;
}

/** How a request reached the endpoint: moleculer-web's request context, or its id when it came directly. */
type Via = { ctx?: Context; requestID?: string };

/**
 * `POST /ingest`. The work goes to this node's ingest service as a plain function call when the node
 * runs it (`LocalIngest`: no Moleculer context, middlewares or action metrics), else to the
 * `ingest.push` action of another node, balanced by Moleculer, as before.
 */
export class IngestEndpoint {
  private readonly metrics: ServiceBroker["metrics"];
  private readonly requestTimeoutMs: number;

  constructor(private readonly deps: IngestEndpointDeps) {
    this.metrics = deps.broker.metrics;
    this.requestTimeoutMs = deps.broker.options.requestTimeout ?? 0;
  }

  /**
   * One `POST /ingest`, answered here: 200 `{accepted}` once the log acknowledged every message,
   * or the JSON error. `ctx` is moleculer-web's request context when it routed the request.
   */
  async handle(req: IncomingMessage, res: ServerResponse, via: Via): Promise<void> {
    try {
      this.authorize(req);
      const { items, body } = await this.readItems(req);
      const params = this.paramsOf(req, items, body);
      this.deps.respond(res, 200, await this.pushOrUnavailable(params, via));
    } catch (err) {
      this.deps.fail(res, err as Error);
    }
  }

  /**
   * The same request straight from the HTTP server, before moleculer-web's router: what its
   * `api.rest` action and the ingest route do first (the X-Request-ID header, the route's rate
   * limiter, with its store and its error answer), then `handle`.
   */
  async direct(
    req: IncomingMessage,
    res: ServerResponse,
    rateLimit: RouteRateLimit | undefined,
  ): Promise<void> {
    // moleculer-web names every request (its context's requestID) in X-Request-ID: the client's
    // X-Correlation-ID or X-Request-ID, else a new id.
    const given = req.headers["x-correlation-id"] || req.headers["x-request-id"];
    const requestID = given != null ? String(given) : this.deps.broker.generateUid();
    if (requestID) res.setHeader("X-Request-ID", requestID);
    if (rateLimit && !(await this.withinRateLimit(req, res, rateLimit))) return;
    await this.handle(req, res, { requestID });
  }

  /** A 401 when INGEST_TOKEN is set and the request does not carry it. */
  private authorize(req: IncomingMessage): void {
    const { token } = this.deps.ingest;
    if (token && !bearerMatches(req.headers.authorization, token)) {
      this.metrics.increment(METRIC.ingestRejected, { reason: "unauthorized" });
      throw new HttpError(
        401,
        "UNAUTHORIZED",
        "a valid bearer token is required (Authorization: Bearer <INGEST_TOKEN>)",
      );
    }
  }

  /** The body and its decoded items: 415 for another content type, 413 past the limits, 400 for bad JSON. */
  private async readItems(req: IncomingMessage): Promise<{ items: unknown[]; body: Buffer }> {
    const { ingest } = this.deps;
    const format = bodyFormat(req.headers["content-type"]);
    if (!format) {
      this.metrics.increment(METRIC.ingestRejected, { reason: "content_type" });
      req.resume();
      throw new HttpError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        `Content-Type must be application/json or application/x-ndjson, got ${JSON.stringify(req.headers["content-type"] ?? null)}`,
      );
    }
    let items: unknown[];
    let body: Buffer;
    try {
      body = await readBody(req, ingest.bodyLimitBytes);
      items = decodeItems(body, format);
    } catch (err) {
      this.metrics.increment(METRIC.ingestRejected, {
        reason: (err as HttpError).code === 413 ? "too_large" : "invalid_json",
      });
      throw err;
    }
    if (items.length > ingest.maxBatch) {
      this.metrics.increment(METRIC.ingestRejected, { reason: "too_large" });
      throw new HttpError(
        413,
        "BATCH_TOO_LARGE",
        `a batch holds at most ${ingest.maxBatch} messages (INGEST_MAX_BATCH), got ${items.length}`,
      );
    }
    return { items, body };
  }

  /** `ingest.push`'s params: the items, and the Idempotency-Key with the body's hash when it came with one. */
  private paramsOf(req: IncomingMessage, items: unknown[], body: Buffer): IngestParams {
    const key = idempotencyKey(req.headers["idempotency-key"]);
    return key === null
      ? { items }
      : { items, idempotency: { key, bodySha256: createHash("sha256").update(body).digest("hex") } };
  }

  private async pushOrUnavailable(params: IngestParams, via: Via): Promise<IngestResult> {
    try {
      return await this.push(params, via);
    } catch (err) {
      // Moleculer's own retryable failures (no ingest node reachable: 404; call timed out:
      // 504) say nothing about the request. A client must see "try again", not "wrong URL".
      const e = err as Error & { code?: unknown; retryable?: boolean };
      if (e.retryable && e.code !== 503) {
        throw new HttpError(503, "INGEST_UNAVAILABLE", `ingest is unavailable: ${e.message}`, {
          retryable: true,
        });
      }
      throw err;
    }
  }

  private push(params: IngestParams, via: Via): Promise<IngestResult> {
    const { broker, ackTimeoutMs } = this.deps;
    const local = broker.getLocalService("ingest") as Partial<LocalIngest> | undefined;
    const direct = local?.pushDirect?.(params);
    // Without an Idempotency-Key (Postgres) the produce settles within the ack timeout: when that
    // is the shorter, the call's own time limit can never strike, and its timer is left out.
    if (direct)
      return params.idempotency || ackTimeoutMs >= this.requestTimeoutMs ? this.limited(direct) : direct;
    return via.ctx
      ? via.ctx.call<IngestResult, IngestParams>("ingest.push", params)
      : // As moleculer-web's context would: the request's id, and this service as the caller.
        broker.call<IngestResult, IngestParams>("ingest.push", params, {
          requestID: via.requestID,
          caller: "gateway",
        });
  }

  /** A direct call keeps the action call's time limit (the broker's requestTimeout) and its error. */
  private limited(call: Promise<IngestResult>): Promise<IngestResult> {
    const requestTimeoutMs = this.requestTimeoutMs;
    if (!(requestTimeoutMs > 0)) return call;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Errors.RequestTimeoutError({ action: "ingest.push", nodeID: this.deps.broker.nodeID })),
        requestTimeoutMs,
      );
      call.then(
        result => {
          clearTimeout(timer);
          resolve(result);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /** The route's rate limiter, as moleculer-web applies it; false once it answered the request. */
  private async withinRateLimit(
    req: IncomingMessage,
    res: ServerResponse,
    rateLimit: RouteRateLimit,
  ): Promise<boolean> {
    try {
      const key = rateLimit.key(req);
      if (key) {
        const remaining = rateLimit.limit - (await rateLimit.store.inc(key));
        if (rateLimit.headers) {
          res.setHeader("X-Rate-Limit-Limit", rateLimit.limit);
          res.setHeader("X-Rate-Limit-Remaining", Math.max(0, remaining));
          res.setHeader("X-Rate-Limit-Reset", rateLimit.store.resetTime);
        }
        // moleculer-web's RateLimitExceeded, as the route's onError gets it (the message is replaced there).
        if (remaining < 0) throw new HttpError(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded");
      }
    } catch (err) {
      this.deps.rateLimited(res, err as Error);
      return false;
    }
    return true;
  }
}
