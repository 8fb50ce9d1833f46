import type { BrokerOptions } from "moleculer";
import type { Config } from "./lib/config";

/**
 * Broker options from the validated configuration. NATS_URL picks the transporter; without it
 * the node is a single process (embedded mode, or a one-node production setup).
 */
export function brokerOptions(config: Config): BrokerOptions {
  return {
    namespace: config.namespace,
    nodeID: config.nodeID,
    transporter: config.natsUrl ? { type: "NATS", options: { url: config.natsUrl } } : null,
    serializer: "JSON",
    logger: {
      type: "Console",
      options: {
        level: config.logLevel,
        formatter: "short",
        colors: Boolean(process.stdout.isTTY),
        moduleColors: false,
      },
    },
    logLevel: config.logLevel,
    requestTimeout: 15000,
    retryPolicy: { enabled: false },
    registry: { strategy: "RoundRobin", preferLocal: true },
    heartbeatInterval: 2,
    heartbeatTimeout: 6,
    // Signals are handled by bin/start.ts, which gives the actors their shutdown grace.
    skipProcessEventRegistration: true,
    tracking: { enabled: true, shutdownTimeout: config.actors.shutdownGraceMs },
    metrics: {
      enabled: true,
      // Built-in request timers keep every sample of the quantile window; a short window keeps
      // that memory (and the sort at scrape time) small at tens of thousands of requests/s.
      defaultMaxAgeSeconds: 15,
      defaultAgeBuckets: 3,
      reporter:
        config.metricsPort > 0
          ? [
              {
                type: "Prometheus",
                options: {
                  port: config.metricsPort,
                  path: "/metrics",
                  defaultLabels: () => ({ namespace: config.namespace || "default", nodeID: config.nodeID }),
                },
              },
            ]
          : [],
    },
  };
}
