import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { ServiceBroker } from "moleculer";

/** What a node running the actors serves on METRICS_PORT, beside the reporter's /metrics. */
export const ACTORS_HEALTH_PATHS = { liveness: "/healthz", readiness: "/readyz" } as const;

export type MetricsPortHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(payload),
    "Cache-Control": "no-store",
  });
  res.end(payload);
}

/**
 * Serves `routes` (path → handler, GET and HEAD) on the HTTP server of Moleculer's Prometheus
 * reporter, the one listening on METRICS_PORT, in front of the reporter's own handler: /metrics
 * and every other path still go to the reporter, so the metrics output is exactly its own.
 * The reporter's server exists from the broker's creation on. Returns a function that removes
 * the routes again; null when the node has no Prometheus reporter (METRICS_PORT=0).
 */
export function routeOnMetricsPort(
  broker: ServiceBroker,
  routes: Record<string, MetricsPortHandler>,
): (() => void) | null {
  const reporters = (broker.metrics as unknown as { reporter?: { server?: unknown }[] }).reporter ?? [];
  const server = reporters.map(r => r.server).find((s): s is http.Server => s instanceof http.Server);
  if (!server) return null;
  const reporter = server.listeners("request") as MetricsPortHandler[];
  const listener: MetricsPortHandler = (req, res) => {
    const route = routes[(req.url ?? "/").split("?")[0]];
    if (!route) {
      for (const l of reporter) l.call(server, req, res);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      sendJson(res, 405, { error: `use GET ${req.url}`, type: "METHOD_NOT_ALLOWED" });
      return;
    }
    route(req, res);
  };
  server.removeAllListeners("request");
  server.on("request", listener);
  return () => {
    server.removeListener("request", listener);
    for (const l of reporter) server.on("request", l);
  };
}
