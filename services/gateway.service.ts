import fs from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import path from "node:path";
import type { Context, Service, ServiceSchema } from "moleculer";
import ApiGateway, { type ApiRouteSchema, type ApiSettingsSchema, type IncomingRequest } from "moleculer-web";
import type { Config } from "../lib/config";
import { METRIC, registerMetrics } from "../lib/metrics";
import { projectRoot } from "../lib/paths";
import { isReady } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import type { AnalysedEvent, AssignmentEvent, ServiceDeps, SignalNotification } from "./contracts";
import { ActorDirectory } from "./gateway/actor-directory";
import { apiRoute } from "./gateway/api-route";
import { HttpError } from "./gateway/http-body";
import { IngestEndpoint, type RouteRateLimit } from "./gateway/ingest-endpoint";
import { LiveHub } from "./gateway/live-hub";
import { serviceSchema } from "./service-schema";

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

/** What the gateway holds between its lifecycle steps. */
interface GatewayState {
  /** `POST /ingest`, built in `created` (it needs the broker). */
  ingest: IngestEndpoint | null;
  /** Who owns which partition; from `started` until `stopped` (the API answers 503 meanwhile). */
  directory: ActorDirectory | null;
  hub: LiveHub | null;
  refreshTimer: NodeJS.Timeout | null;
  /** Whether the last ask of the actors nodes failed: logged when that changes, not every 10 s. */
  refreshFailing: boolean;
}

/** moleculer-web's route, once built (`this.routes`), as far as the direct ingest path looks at it. */
interface WebRoute {
  name?: string;
  rateLimit?: RouteRateLimit;
  middlewares: unknown[];
  cors: unknown;
  onBeforeCall?: unknown;
  onAfterCall?: unknown;
  authentication?: unknown;
  authorization?: unknown;
}

/** What the ApiGateway mixin (moleculer-web) adds to the service, as far as this one uses it. */
interface WebGateway {
  server: Server;
  routes: WebRoute[];
  sendError(req: IncomingRequest, res: ServerResponse, err: Error): void;
}

type GatewayMethods = {
  errorHandler(req: IncomingRequest, res: ServerResponse, err: GatewayError): void;
  ingestFailed(res: ServerResponse, err: GatewayError): void;
  createIngestEndpoint(): IngestEndpoint;
  ingestEndpoint(): IngestEndpoint;
  actorDirectory(): ActorDirectory;
  answerReadiness(res: ServerResponse): Promise<void>;
  serveIngestDirectly(endpoint: IngestEndpoint): void;
  refreshDirectory(directory: ActorDirectory): Promise<void>;
};

type GatewayFields = WebGateway & { deps: ServiceDeps; state: GatewayState };
type GatewayService = Service<ApiSettingsSchema> & GatewayMethods & GatewayFields;

/**
 * The HTTP edge (moleculer-web): `POST /ingest` for generators and feeds, health endpoints,
 * the REST API and the static dashboard. Ingest work goes to this node's `ingest` service as a
 * plain function call when the node runs it (Moleculer's balancer prefers the local service
 * anyway), else to the `ingest.push` action, balanced over every node that runs it.
 */
export default function createGatewayService(deps: ServiceDeps): ServiceSchema<ApiSettingsSchema> {
  return serviceSchema<ApiSettingsSchema, GatewayMethods, GatewayFields>({
    name: "gateway",
    mixins: [ApiGateway, resourcesMixin(deps.resources)],
    settings: gatewaySettings(deps.config),
    methods,
    events,
    /** Runs after moleculer-web's own `created` (a mixin's comes first): `this.server` and `this.routes` exist. */
    created() {
      this.deps = deps;
      this.state = { ingest: null, directory: null, hub: null, refreshTimer: null, refreshFailing: false };
      this.state.ingest = this.createIngestEndpoint();
      this.serveIngestDirectly(this.state.ingest);
    },
    started,
    stopped,
  });
}

/** moleculer-web's settings: the port, the routes, the dashboard's files, and JSON for every error. */
function gatewaySettings(config: Config): ApiSettingsSchema {
  return {
    port: config.port,
    ip: config.host,
    log4XXResponses: false,
    logRequest: null,
    logResponse: null,
    routes: [
      ingestRoute(config.ingest),
      healthRoute(),
      apiRoute<GatewayService>({
        directory: gateway => gateway.actorDirectory(),
        respond: sendJson,
        fail: (res, err) => sendJsonError(res, err as GatewayError),
      }),
    ],
    assets: { folder: path.join(projectRoot(), "public"), options: { index: "index.html" } },
    onError(_req: IncomingRequest, res: ServerResponse, err: GatewayError) {
      sendJsonError(res, err);
    },
  };
}

/** `POST /ingest`, with the route's rate limiter; other spellings of the URL come this way too. */
function ingestRoute(ingest: Config["ingest"]): ApiRouteSchema {
  return {
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
      "POST /"(this: GatewayService, req: IncomingRequest, res: ServerResponse) {
        return this.ingestEndpoint().handle(req, res, { ctx: req.$ctx });
      },
    },
    onError(this: GatewayService, _req: IncomingRequest, res: ServerResponse, err: GatewayError) {
      this.ingestFailed(res, err);
    },
  };
}

/** The dashboard's chart library, `/healthz` and `/readyz`. */
function healthRoute(): ApiRouteSchema {
  return {
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
      "GET healthz"(this: GatewayService, _req: IncomingRequest, res: ServerResponse) {
        sendJson(res, 200, {
          status: "ok",
          nodeID: this.broker.nodeID,
          uptimeSeconds: Math.round(process.uptime()),
        });
      },
      "GET readyz"(this: GatewayService, _req: IncomingRequest, res: ServerResponse) {
        return this.answerReadiness(res);
      },
    },
    onError(_req: IncomingRequest, res: ServerResponse, err: GatewayError) {
      sendJsonError(res, err);
    },
  };
}

const events = {
  "actors.assignment"(this: GatewayService, ctx: Context<AssignmentEvent>) {
    this.state.directory?.learn(ctx.params);
  },
  "stock.analysed"(this: GatewayService, ctx: Context<AnalysedEvent>) {
    this.state.hub?.publishTicks(ctx.params.ticks);
  },
  "notifier.signal"(this: GatewayService, ctx: Context<SignalNotification>) {
    this.state.hub?.publishSignal(ctx.params);
  },
  "$node.disconnected"(this: GatewayService, ctx: Context<{ node: { id: string } }>) {
    this.state.directory?.forget(ctx.params.node.id);
  },
};

async function started(this: GatewayService): Promise<void> {
  const { broker, state } = this;
  registerMetrics(broker);
  const directory = new ActorDirectory(broker);
  state.directory = directory;
  state.hub = new LiveHub(this.server, count => broker.metrics.set(METRIC.websocketClients, count));
  // Events keep the map current; a periodic ask repairs anything missed (a node that started
  // before this gateway, a lost event).
  state.refreshFailing = false;
  await this.refreshDirectory(directory);
  state.refreshTimer = setInterval(() => void this.refreshDirectory(directory), 10000);
  state.refreshTimer.unref();
}

async function stopped(this: GatewayService): Promise<void> {
  const { state } = this;
  if (state.refreshTimer) clearInterval(state.refreshTimer);
  await state.hub?.close();
  state.hub = null;
  state.directory = null;
}

const methods = {
  /**
   * moleculer-web logs every 5xx with its stack before answering. A retryable 503 is a
   * dependency that is away (Postgres for the API's reads, a service still starting), which
   * the service waiting for it logs once per outage: each request's answer is not logged again.
   */
  errorHandler(req, res, err) {
    if (err?.code === 503 && ((err as { retryable?: boolean }).retryable || err.data?.retryable)) {
      this.sendError(req, res, err);
      return;
    }
    (ApiGateway.methods as { errorHandler: WebGateway["sendError"] }).errorHandler.call(this, req, res, err);
  },

  /** The ingest route's errors: moleculer-web's 429 gets its metric and a message that names the limit. */
  ingestFailed(res, err) {
    if (err.code === 429) {
      this.broker.metrics.increment(METRIC.ingestRejected, { reason: "rate_limited" });
      err.message = `more than ${this.deps.config.ingest.rateLimitPerSecond} requests in one second from this client (INGEST_RATE_LIMIT); retry in a second`;
    }
    sendJsonError(res, err);
  },

  createIngestEndpoint() {
    const { config } = this.deps;
    return new IngestEndpoint({
      broker: this.broker,
      ingest: config.ingest,
      ackTimeoutMs: config.kafka.ackTimeoutMs,
      respond: sendJson,
      fail: (res, err) => sendJsonError(res, err as GatewayError),
      rateLimited: (res, err) => this.ingestFailed(res, err as GatewayError),
    });
  },

  ingestEndpoint() {
    if (!this.state.ingest) throw new Error("the gateway service is not created yet");
    return this.state.ingest;
  },

  actorDirectory() {
    if (!this.state.directory) throw new HttpError(503, "NOT_READY", "the gateway is starting");
    return this.state.directory;
  },

  async answerReadiness(res) {
    const { config, resources } = this.deps;
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

  /**
   * moleculer-web serves every request through its own `api.rest` action, and the ingest route
   * then calls `ingest.push`: two Moleculer calls, with their contexts, middlewares and metrics
   * timers, per request. `POST /ingest`, the hot path, goes straight to the same endpoint
   * instead (its rate limiter included); every other request, and other spellings of that URL,
   * go to moleculer-web's router as before.
   */
  serveIngestDirectly(endpoint) {
    const route = this.routes.find(r => r.name === "ingest");
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
    const server = this.server;
    const router = server.listeners("request") as ((req: IncomingMessage, res: ServerResponse) => void)[];
    server.removeAllListeners("request");
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === "POST" && req.url === "/ingest") {
        // `direct` answers every error itself; this is a last resort, as moleculer-web's own handler.
        endpoint.direct(req, res, rateLimit).catch((err: GatewayError) => sendJsonError(res, err));
        return;
      }
      for (const listener of router) listener.call(server, req, res);
    });
  },

  /** Asks every actors node what it owns; a failure is logged when it starts and when it ends. */
  async refreshDirectory(directory) {
    try {
      await directory.refresh();
    } catch (err) {
      if (!this.state.refreshFailing)
        this.logger.warn(
          `actor directory: asking the actors nodes failed, routing may be stale: ${(err as Error).message}`,
        );
      this.state.refreshFailing = true;
      return;
    }
    if (this.state.refreshFailing) this.logger.info("actor directory: asking the actors nodes works again");
    this.state.refreshFailing = false;
  },
} satisfies GatewayMethods & ThisType<GatewayService>;
