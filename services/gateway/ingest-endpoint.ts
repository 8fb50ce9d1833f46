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

export interface IngestEndpoint {
  /**
   * One `POST /ingest`, answered here: 200 `{accepted}` once the log acknowledged every message,
   * or the JSON error. `ctx` is moleculer-web's request context when it routed the request.
   */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    via: { ctx?: Context; requestID?: string },
  ): Promise<void>;
  /**
   * The same request straight from the HTTP server, before moleculer-web's router: what its
   * `api.rest` action and the ingest route do first (the X-Request-ID header, the route's rate
   * limiter, with its store and its error answer), then `handle`.
   */
  direct(req: IncomingMessage, res: ServerResponse, rateLimit: RouteRateLimit | undefined): Promise<void>;
}

/**
 * `POST /ingest`. The work goes to this node's ingest service as a plain function call when the node
 * runs it (`LocalIngest`: no Moleculer context, middlewares or action metrics), else to the
 * `ingest.push` action of another node, balanced by Moleculer, as before.
 */
export function ingestEndpoint(deps: {
  broker: ServiceBroker;
  ingest: Config["ingest"];
  /** KAFKA_ACK_TIMEOUT_MS: ingest answers every request without an Idempotency-Key within it. */
  ackTimeoutMs: number;
  respond: Respond;
  fail: Fail;
  /** The ingest route's `onError` for the rate limiter's 429. */
  rateLimited: (res: ServerResponse, err: Error) => void;
}): IngestEndpoint {
  const { broker, ingest, respond, fail } = deps;
  const metrics = broker.metrics;
  const requestTimeoutMs = broker.options.requestTimeout ?? 0;
  const ackTimeoutMs = deps.ackTimeoutMs;

  /** A direct call keeps the action call's time limit (the broker's requestTimeout) and its error. */
  function limited(call: Promise<IngestResult>): Promise<IngestResult> {
    if (!(requestTimeoutMs > 0)) return call;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Errors.RequestTimeoutError({ action: "ingest.push", nodeID: broker.nodeID })),
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

  function push(params: IngestParams, via: { ctx?: Context; requestID?: string }): Promise<IngestResult> {
    const local = broker.getLocalService("ingest") as Partial<LocalIngest> | undefined;
    const direct = local?.pushDirect?.(params);
    // Without an Idempotency-Key (Postgres) the produce settles within the ack timeout: when that
    // is the shorter, the call's own time limit can never strike, and its timer is left out.
    if (direct) return params.idempotency || ackTimeoutMs >= requestTimeoutMs ? limited(direct) : direct;
    return via.ctx
      ? via.ctx.call<IngestResult, IngestParams>("ingest.push", params)
      : // As moleculer-web's context would: the request's id, and this service as the caller.
        broker.call<IngestResult, IngestParams>("ingest.push", params, {
          requestID: via.requestID,
          caller: "gateway",
        });
  }

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    via: { ctx?: Context; requestID?: string },
  ): Promise<void> {
    try {
      if (ingest.token && !bearerMatches(req.headers.authorization, ingest.token)) {
        metrics.increment(METRIC.ingestRejected, { reason: "unauthorized" });
        throw new HttpError(
          401,
          "UNAUTHORIZED",
          "a valid bearer token is required (Authorization: Bearer <INGEST_TOKEN>)",
        );
      }
      const format = bodyFormat(req.headers["content-type"]);
      if (!format) {
        metrics.increment(METRIC.ingestRejected, { reason: "content_type" });
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
        metrics.increment(METRIC.ingestRejected, {
          reason: (err as HttpError).code === 413 ? "too_large" : "invalid_json",
        });
        throw err;
      }
      if (items.length > ingest.maxBatch) {
        metrics.increment(METRIC.ingestRejected, { reason: "too_large" });
        throw new HttpError(
          413,
          "BATCH_TOO_LARGE",
          `a batch holds at most ${ingest.maxBatch} messages (INGEST_MAX_BATCH), got ${items.length}`,
        );
      }
      const key = idempotencyKey(req.headers["idempotency-key"]);
      const params: IngestParams =
        key === null
          ? { items }
          : { items, idempotency: { key, bodySha256: createHash("sha256").update(body).digest("hex") } };
      let result: IngestResult;
      try {
        result = await push(params, via);
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
      respond(res, 200, result);
    } catch (err) {
      fail(res, err as Error);
    }
  }

  async function direct(
    req: IncomingMessage,
    res: ServerResponse,
    rateLimit: RouteRateLimit | undefined,
  ): Promise<void> {
    // moleculer-web names every request (its context's requestID) in X-Request-ID: the client's
    // X-Correlation-ID or X-Request-ID, else a new id.
    const given = req.headers["x-correlation-id"] || req.headers["x-request-id"];
    const requestID = given != null ? String(given) : broker.generateUid();
    if (requestID) res.setHeader("X-Request-ID", requestID);
    if (rateLimit) {
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
        deps.rateLimited(res, err as Error);
        return;
      }
    }
    await handle(req, res, { requestID });
  }

  return { handle, direct };
}
