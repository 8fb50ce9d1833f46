import fs from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import path from "node:path";
import type { Context, Service, ServiceSchema } from "moleculer";
import ApiGateway, { type ApiRouteSchema, type ApiSettingsSchema, type IncomingRequest } from "moleculer-web";
import { METRIC, registerMetrics } from "../lib/metrics";
import { projectRoot } from "../lib/paths";
import { isReady } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import type { AnalysedEvent, AssignmentEvent, ServiceDeps, SignalNotification } from "./contracts";
import { ActorDirectory } from "./gateway/actor-directory";
import { apiRoute } from "./gateway/api-route";
import { HttpError } from "./gateway/http-body";
import { ingestEndpoint, type IngestEndpoint, type RouteRateLimit } from "./gateway/ingest-endpoint";
import { LiveHub } from "./gateway/live-hub";

type GatewayError = Error & {
  code?: unknown;
  type?: string;
  data?: { issues?: unknown; retryable?: boolean };
};

/** Every error leaves the gateway as JSON: `{error, type, issues?, retryable?}` with its 4xx/5xx status. */
export function sendJsonError(res: ServerResponse, err: GatewayError): void {
  const status = typeof err.code === "number" && err.code >= 400 && err.code < 600 ? err.code : 500;
  const body: Record<string, unknown> = { error: status === 500 ? "internal error" : err.message };
  // Some errors come from moleculer-web without a type (its rate limiter's 429); clients branch on it.
  const type =
    status === 500 ? "INTERNAL_ERROR" : (err.type ?? (status === 429 ? "RATE_LIMIT_EXCEEDED" : undefined));
  if (type) body.type = type;
  if (err.data?.issues) body.issues = err.data.issues;
  if (status === 503 || err.data?.retryable) body.retryable = true;
  if (res.headersSent) {
    res.end();
    return;
  }
  const headers: Record<string, string> = { "Content-Type": "application/json; charset=utf-8" };
  if (status === 401) headers["WWW-Authenticate"] = 'Bearer realm="ingest"';
  if (status === 413) headers.Connection = "close";
  // The ingest rate limit counts per one-second window.
  if (status === 429) headers["Retry-After"] = "1";
  res.writeHead(status, headers);
  res.end(JSON.stringify(body));
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(payload),
  });
  res.end(payload);
}

/**
 * The HTTP edge (moleculer-web): `POST /ingest` for generators and feeds, health endpoints,
 * the REST API and the static dashboard. Ingest work goes to this node's `ingest` service as a
 * plain function call when the node runs it (Moleculer's balancer prefers the local service
 * anyway), else to the `ingest.push` action, balanced over every node that runs it.
 */
export default function createGatewayService(deps: ServiceDeps): ServiceSchema<ApiSettingsSchema> {
  const { config, resources } = deps;
  const { ingest } = config;

  /** The ingest route's errors: moleculer-web's 429 gets its metric and a message that names the limit. */
  const ingestError = (broker: Context["broker"], res: ServerResponse, err: GatewayError) => {
    if (err.code === 429) {
      broker.metrics.increment(METRIC.ingestRejected, { reason: "rate_limited" });
      err.message = `more than ${ingest.rateLimitPerSecond} requests in one second from this client (INGEST_RATE_LIMIT); retry in a second`;
    }
    sendJsonError(res, err);
  };
  let ingestHandler: IngestEndpoint | null = null;
  const endpoint = () => {
    if (!ingestHandler) throw new Error("the gateway service is not created yet");
    return ingestHandler;
  };

  const ingestRoute: ApiRouteSchema = {
    name: "ingest",
    path: "/ingest",
    bodyParsers: false,
    mappingPolicy: "restrict",
    logging: false,
    ...(ingest.rateLimitPerSecond > 0
      ? {
          rateLimit: {
            window: 1000,
            limit: ingest.rateLimitPerSecond,
            headers: true,
            // X-Forwarded-For is whatever the client wrote, unless a proxy we run sets it.
            key: (req: IncomingMessage) =>
              (ingest.trustProxy
                ? (req.headers["x-forwarded-for"] as string | undefined)?.split(",").pop()?.trim()
                : undefined) ||
              req.socket.remoteAddress ||
              "unknown",
          },
        }
      : {}),
    aliases: {
      "GET /"(_req: IncomingRequest, res: ServerResponse) {
        res.setHeader("Allow", "POST");
        sendJsonError(res, new HttpError(405, "METHOD_NOT_ALLOWED", "send messages with POST /ingest"));
      },
      // Only URLs other than exactly "/ingest" (a trailing slash, a query string) come this way:
      // the gateway's HTTP server hands POST /ingest to the same endpoint before this router.
      "POST /"(req: IncomingRequest, res: ServerResponse) {
        return endpoint().handle(req, res, { ctx: req.$ctx });
      },
    },
    onError(
      this: { broker: Context["broker"] },
      _req: IncomingRequest,
      res: ServerResponse,
      err: GatewayError,
    ) {
      ingestError(this.broker, res, err);
    },
  };

  const healthRoute: ApiRouteSchema = {
    name: "health",
    path: "/",
    bodyParsers: false,
    mappingPolicy: "restrict",
    logging: false,
    aliases: {
      // The dashboard's chart library, from the installed package: no CDN (machines may be offline), no copy step.
      "GET vendor/lightweight-charts.mjs"(_req: IncomingRequest, res: ServerResponse) {
        const file = "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.mjs";
        fs.readFile(path.join(projectRoot(), file), (err, js) => {
          if (err) {
            sendJsonError(res, new HttpError(404, "NOT_FOUND", `${file} is missing: run npm ci`));
            return;
          }
          res.writeHead(200, {
            "Content-Type": "text/javascript; charset=utf-8",
            "Content-Length": js.length,
            "Cache-Control": "public, max-age=3600",
          });
          res.end(js);
        });
      },
      "GET healthz"(this: { broker: Context["broker"] }, _req: IncomingRequest, res: ServerResponse) {
        sendJson(res, 200, {
          status: "ok",
          nodeID: this.broker.nodeID,
          uptimeSeconds: Math.round(process.uptime()),
        });
      },
      async "GET readyz"(this: { broker: Context["broker"] }, _req: IncomingRequest, res: ServerResponse) {
        const checks = await resources.check(config.services);
        const ingestReachable = this.broker.registry
          .getServiceList({ onlyAvailable: true, skipInternal: true })
          .some(s => s.name === "ingest");
        checks.ingest = ingestReachable ? "ok" : "no node runs the ingest service";
        const ready = isReady(checks);
        sendJson(res, ready ? 200 : 503, {
          status: ready ? "ready" : "not ready",
          nodeID: this.broker.nodeID,
          checks,
        });
      },
    },
    onError(_req: IncomingRequest, res: ServerResponse, err: GatewayError) {
      sendJsonError(res, err);
    },
  };

  let directory: ActorDirectory | null = null;
  let hub: LiveHub | null = null;
  let refreshTimer: NodeJS.Timeout | null = null;
  const api = apiRoute({
    directory: () => {
      if (!directory) throw new HttpError(503, "NOT_READY", "the gateway is starting");
      return directory;
    },
    respond: sendJson,
    fail: (res, err) => sendJsonError(res, err as GatewayError),
  });

  return {
    name: "gateway",
    mixins: [ApiGateway, resourcesMixin(resources)],
    settings: {
      port: config.port,
      ip: config.host,
      log4XXResponses: false,
      logRequest: null,
      logResponse: null,
      routes: [ingestRoute, healthRoute, api],
      assets: { folder: path.join(projectRoot(), "public"), options: { index: "index.html" } },
      onError(_req: IncomingRequest, res: ServerResponse, err: GatewayError) {
        sendJsonError(res, err);
      },
    },
    methods: {
      /**
       * moleculer-web logs every 5xx with its stack before answering. A retryable 503 is a
       * dependency that is away (Postgres for the API's reads, a service still starting), which
       * the service waiting for it logs once per outage: each request's answer is not logged again.
       */
      errorHandler(this: Service, req: IncomingRequest, res: ServerResponse, err: GatewayError) {
        const web = this as Service & {
          sendError(req: IncomingRequest, res: ServerResponse, err: Error): void;
        };
        if (err?.code === 503 && ((err as { retryable?: boolean }).retryable || err.data?.retryable)) {
          web.sendError(req, res, err);
          return;
        }
        (ApiGateway.methods as { errorHandler: typeof web.sendError }).errorHandler.call(this, req, res, err);
      },
    },
    events: {
      "actors.assignment"(ctx: Context<AssignmentEvent>) {
        directory?.learn(ctx.params);
      },
      "stock.analysed"(ctx: Context<AnalysedEvent>) {
        hub?.publishTicks(ctx.params.ticks);
      },
      "notifier.signal"(ctx: Context<SignalNotification>) {
        hub?.publishSignal(ctx.params);
      },
      "$node.disconnected"(ctx: Context<{ node: { id: string } }>) {
        directory?.forget(ctx.params.node.id);
      },
    },
    /**
     * moleculer-web serves every request through its own `api.rest` action, and the ingest route
     * then calls `ingest.push`: two Moleculer calls, with their contexts, middlewares and metrics
     * timers, per request. `POST /ingest`, the hot path, goes straight to the same endpoint
     * instead (its rate limiter included); every other request, and other spellings of that URL,
     * go to moleculer-web's router as before.
     */
    created(this: Service) {
      const broker = this.broker;
      const web = this as Service & {
        server: Server;
        routes: {
          name?: string;
          rateLimit?: RouteRateLimit;
          middlewares: unknown[];
          cors: unknown;
          onBeforeCall?: unknown;
          onAfterCall?: unknown;
          authentication?: unknown;
          authorization?: unknown;
        }[];
      };
      const ingestEndpointOf = ingestEndpoint({
        broker,
        ingest,
        ackTimeoutMs: config.kafka.ackTimeoutMs,
        respond: sendJson,
        fail: (res, err) => sendJsonError(res, err as GatewayError),
        rateLimited: (res, err) => ingestError(broker, res, err as GatewayError),
      });
      ingestHandler = ingestEndpointOf;
      const route = web.routes.find(r => r.name === "ingest");
      // The direct path does what this route does today (its rate limiter); should the route ever
      // get middlewares, CORS or hooks, every request goes through moleculer-web again.
      if (
        !route ||
        route.middlewares.length > 0 ||
        route.cors ||
        route.onBeforeCall ||
        route.onAfterCall ||
        route.authentication ||
        route.authorization
      ) {
        return;
      }
      const rateLimit = route.rateLimit;
      const server = web.server;
      const router = server.listeners("request") as ((req: IncomingMessage, res: ServerResponse) => void)[];
      server.removeAllListeners("request");
      server.on("request", (req: IncomingMessage, res: ServerResponse) => {
        if (req.method === "POST" && req.url === "/ingest") {
          // `direct` answers every error itself; this is a last resort, as moleculer-web's own handler.
          ingestEndpointOf.direct(req, res, rateLimit).catch((err: GatewayError) => sendJsonError(res, err));
          return;
        }
        for (const listener of router) listener.call(server, req, res);
      });
    },
    async started(this: Service) {
      const broker = this.broker;
      const server = (this as Service & { server: Server }).server;
      registerMetrics(broker);
      directory = new ActorDirectory(broker);
      const dir = directory;
      hub = new LiveHub(server, count => broker.metrics.set(METRIC.websocketClients, count));
      // Events keep the map current; a periodic ask repairs anything missed (a node that started
      // before this gateway, a lost event).
      // A failed ask is logged when it starts failing and when it works again, not every 10 s.
      let refreshFailing = false;
      const refresh = () =>
        dir.refresh().then(
          () => {
            if (refreshFailing) this.logger.info("actor directory: asking the actors nodes works again");
            refreshFailing = false;
          },
          (err: Error) => {
            if (!refreshFailing)
              this.logger.warn(
                `actor directory: asking the actors nodes failed, routing may be stale: ${err.message}`,
              );
            refreshFailing = true;
          },
        );
      await refresh();
      refreshTimer = setInterval(() => void refresh(), 10000);
      refreshTimer.unref();
    },
    async stopped() {
      if (refreshTimer) clearInterval(refreshTimer);
      await hub?.close();
      hub = null;
      directory = null;
    },
  };
}
