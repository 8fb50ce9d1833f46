import { ServiceBroker } from "moleculer";
import { loadConfig, type Config } from "../../../lib/config";
import { registerMetrics } from "../../../lib/metrics";
import { brokerOptions } from "../../../moleculer.config";

/**
 * The series a node's /metrics can hold, taken from a broker built exactly as bin/start.ts builds
 * one (moleculer.config.ts, with NATS so the transporter metrics exist too) plus the project's
 * own metrics (lib/metrics.ts), and named the way Moleculer's Prometheus reporter names them:
 * dots and dashes become underscores; a histogram exports _bucket series only when it has
 * buckets, and the quantile series (name, _sum, _count, _min, ...) only when it has quantiles;
 * a metric with `rate` also exports _rate. The broker is never started: nothing listens.
 */

export interface ExportedSeries {
  /** Label names of the series (the metric's own, the reporter's default ones, le/quantile). */
  labels: Set<string>;
  /** The registry name it comes from, such as "stock.consumer.lag". */
  metric: string;
}

/** The reporter's default labels (moleculer.config.ts) and what every Prometheus scrape adds. */
export const TARGET_LABELS = ["namespace", "nodeID", "job", "instance"];

interface RegisteredMetric {
  name: string;
  type: string;
  labelNames: string[];
  buckets?: number[];
  quantiles?: number[];
  rate?: boolean;
}

export function exportedSeries(): Map<string, ExportedSeries> {
  const config = loadConfig({ METRICS_PORT: "0", NATS_URL: "nats://127.0.0.1:4222", LOG_LEVEL: "fatal" });
  const options = brokerOptions(config);
  // Moleculer skips the process and OS metrics when NODE_ENV is "test" (as under jest); a
  // production node collects them.
  const metrics = { ...(options.metrics as object), collectProcessMetrics: true };
  const broker = new ServiceBroker({ ...options, metrics, logger: false });
  registerMetrics(broker);
  const series = new Map<string, ExportedSeries>();
  for (const { name } of broker.metrics.list()) {
    // The reporter leaves these out (one label value per second).
    if (name.startsWith("os.datetime")) continue;
    const metric = broker.metrics.getMetric(name) as unknown as RegisteredMetric;
    const base = name.replace(/[.-]/g, "_");
    const labels = [...metric.labelNames, ...TARGET_LABELS];
    const add = (suffix: string, extra: string[] = []) =>
      series.set(base + suffix, { labels: new Set([...labels, ...extra]), metric: name });
    if (metric.type === "histogram") {
      if (metric.buckets?.length) add("_bucket", ["le"]);
      if (metric.quantiles?.length) {
        add("", ["quantile"]);
        for (const s of ["_sum", "_count", "_min", "_mean", "_variance", "_stddev", "_max"]) add(s);
      }
    } else {
      add("");
    }
    if (metric.rate) add("_rate");
  }
  void broker.metrics.stop();
  return series;
}

/** Port and path of the Prometheus reporter a node with `config` runs (moleculer.config.ts). */
export function metricsEndpoint(config: Config): { port: number; path: string } {
  const metrics = brokerOptions(config).metrics as {
    reporter: { type: string; options: { port: number; path: string } }[];
  };
  const prometheus = metrics.reporter.find(r => r.type === "Prometheus");
  if (!prometheus) throw new Error("moleculer.config.ts configures no Prometheus reporter");
  return prometheus.options;
}
