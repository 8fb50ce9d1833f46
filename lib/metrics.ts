import type { ServiceBroker } from "moleculer";

/**
 * The system's own Prometheus metrics, beside Moleculer's built-in ones. Names use dots here;
 * the Prometheus reporter turns them into underscores (stock_ingest_accepted_total, ...).
 */
export const METRIC = {
  ingestAccepted: "stock.ingest.accepted.total",
  ingestRejected: "stock.ingest.rejected.total",
  produceLatency: "stock.kafka.produce.latency.seconds",
  produceBatchSize: "stock.kafka.produce.batch.records",
  applyLatency: "stock.actor.apply.latency.seconds",
  persistLatency: "stock.batch.persist.latency.seconds",
  snapshotLatency: "stock.snapshot.latency.seconds",
  consumerLag: "stock.consumer.lag",
  activeActors: "stock.actors.active",
  ownedPartitions: "stock.partitions.owned",
  partitionStalled: "stock.partition.stalled",
  actorRestores: "stock.actor.restores.total",
  duplicatesSkipped: "stock.duplicates.skipped.total",
  snapshotCacheUp: "stock.snapshot.cache.up",
  signals: "stock.signals.total",
  ticksProcessed: "stock.ticks.processed.total",
  rebalances: "stock.rebalances.total",
  deadLetters: "stock.dead.letters.total",
  notificationsDelivered: "stock.notifications.delivered.total",
  notificationsFailed: "stock.notifications.failed.total",
  notificationsRetrying: "stock.notifications.retrying",
  notificationsDead: "stock.notifications.dead.total",
  notificationsOldestSeconds: "stock.notifications.oldest.undelivered.seconds",
  websocketClients: "stock.websocket.clients",
} as const;

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Definition = {
  name: string;
  type: "counter" | "gauge" | "histogram";
  description: string;
  labelNames?: string[];
  buckets?: number[];
  unit?: string;
};

const DEFINITIONS: Definition[] = [
  {
    name: METRIC.ingestAccepted,
    type: "counter",
    description: "Messages acknowledged by the log",
    labelNames: ["type"],
  },
  {
    name: METRIC.ingestRejected,
    type: "counter",
    description: "Ingest requests refused, by reason",
    labelNames: ["reason"],
  },
  {
    name: METRIC.produceLatency,
    type: "histogram",
    description: "Produce call latency until acks=all",
    buckets: LATENCY_BUCKETS,
    unit: "seconds",
  },
  {
    name: METRIC.produceBatchSize,
    type: "histogram",
    description: "Records per produce call",
    buckets: [1, 10, 100, 1000, 5000, 20000],
  },
  {
    name: METRIC.applyLatency,
    type: "histogram",
    description: "Actor apply time per batch",
    buckets: LATENCY_BUCKETS,
    unit: "seconds",
  },
  {
    name: METRIC.persistLatency,
    type: "histogram",
    description: "Postgres transaction time per batch",
    buckets: LATENCY_BUCKETS,
    unit: "seconds",
  },
  {
    name: METRIC.snapshotLatency,
    type: "histogram",
    description: "Snapshot cache (Redis) write time per batch",
    buckets: LATENCY_BUCKETS,
    unit: "seconds",
  },
  {
    name: METRIC.consumerLag,
    type: "gauge",
    description: "Messages not yet processed, per partition",
    labelNames: ["partition"],
  },
  { name: METRIC.activeActors, type: "gauge", description: "Symbol actors in memory on this node" },
  { name: METRIC.ownedPartitions, type: "gauge", description: "Partitions this node owns" },
  {
    name: METRIC.partitionStalled,
    type: "gauge",
    description: "1 while the partition's loop waits for a dependency (reason: postgres or kafka)",
    labelNames: ["partition", "reason"],
  },
  {
    name: METRIC.actorRestores,
    type: "counter",
    description:
      "Actors brought into memory, by source (cache, postgres, new) and reason (hit; missing, stale, unreadable, unavailable; none)",
    labelNames: ["source", "reason"],
  },
  {
    name: METRIC.duplicatesSkipped,
    type: "counter",
    description:
      "Messages the actors skipped as repeats of a client request already applied (same Idempotency-Key)",
  },
  {
    name: METRIC.snapshotCacheUp,
    type: "gauge",
    description: "1 while the snapshot cache (Redis) answers, 0 while the actors go on without it",
  },
  { name: METRIC.signals, type: "counter", description: "Buy/sell signals emitted", labelNames: ["side"] },
  { name: METRIC.ticksProcessed, type: "counter", description: "Price ticks applied by actors" },
  { name: METRIC.rebalances, type: "counter", description: "Partition assignments received" },
  { name: METRIC.deadLetters, type: "counter", description: "Messages sent to the dead-letter table" },
  {
    name: METRIC.notificationsDelivered,
    type: "counter",
    description: "Signals delivered to a webhook subscriber (answered 2xx)",
    labelNames: ["subscriber"],
  },
  {
    name: METRIC.notificationsFailed,
    type: "counter",
    description: "Webhook delivery attempts that failed (an error answer, a timeout, no connection)",
    labelNames: ["subscriber"],
  },
  {
    name: METRIC.notificationsRetrying,
    type: "gauge",
    description: "1 while a subscriber's next signal waits for a retry",
    labelNames: ["subscriber"],
  },
  {
    name: METRIC.notificationsDead,
    type: "counter",
    description: "Webhook deliveries that ran out of retries (kept as dead letters)",
    labelNames: ["subscriber"],
  },
  {
    name: METRIC.notificationsOldestSeconds,
    type: "gauge",
    description: "Age of the oldest stored signal a subscriber has not received yet (0: none waits)",
    labelNames: ["subscriber"],
  },
  { name: METRIC.websocketClients, type: "gauge", description: "Connected WebSocket clients" },
];

/** Registers every custom metric once per broker (a second call is a no-op). */
export function registerMetrics(broker: ServiceBroker): void {
  if (!broker.isMetricsEnabled()) return;
  for (const d of DEFINITIONS) {
    if (!broker.metrics.getMetric(d.name)) broker.metrics.register({ ...d, quantiles: false } as never);
  }
}

/**
 * Counter increments made once per request on a hot path, added up in plain numbers and handed to
 * Moleculer's registry at most `flushMs` later: the registry hashes the labels and updates the
 * counter's rate on every increment, several µs each, which per request is worth not paying.
 * /metrics shows the counts at most `flushMs` late (Prometheus scrapes every 15 s).
 */
export class CounterBatch {
  private readonly pending = new Map<
    string,
    { name: string; labels: Record<string, unknown>; value: number }
  >();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly broker: ServiceBroker,
    private readonly flushMs = 1000,
  ) {}

  /** `key` names the (name, labels) pair: the caller's constant, so nothing is hashed per call. */
  add(key: string, name: string, labels: Record<string, unknown>, value = 1): void {
    const entry = this.pending.get(key);
    if (entry) entry.value += value;
    else this.pending.set(key, { name, labels, value });
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Hands every count to the registry now (also on a stop). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const entry of this.pending.values()) {
      if (entry.value === 0) continue;
      this.broker.metrics.increment(entry.name, entry.labels, entry.value);
      entry.value = 0;
    }
  }
}
