import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type { LogConsumer, MessageLog } from "../adapters/log/types";
import { METRIC, registerMetrics } from "../lib/metrics";
import { describeOutage, Outage, untilAvailable, WaitAborted } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import { ActorHost } from "../runtime/host/actor-host";
import { ResultsStore } from "../runtime/store/results-store";
import { ACTORS_HEALTH_PATHS, routeOnMetricsPort, sendJson } from "./actors/metrics-port";
import { GroupReadiness } from "./actors/readiness";
import type { AnalysedEvent, AssignmentEvent, PartitionsReply, ServiceDeps, SignalsEvent } from "./contracts";

const SYMBOL_PARAM = { symbol: { type: "string", min: 1, max: 40 } };

/** A stalled partition as a readiness check: `partition.<n>` and what it waits for. */
function stallChecks(host: ActorHost | null): Record<string, string> {
  return Object.fromEntries(
    (host?.stalledPartitions() ?? []).map(s => [
      `partition.${s.partition}`,
      `stalled since ${s.since} on ${s.dependency} (${s.attempts} failed attempt(s)): ${s.step} failed: ${s.error}`,
    ]),
  );
}

/**
 * The symbol actors: a consumer group member on the `stock` topic that hosts one actor per
 * symbol of the partitions Kafka assigned to this node (see runtime/host/actor-host.ts for the
 * ordering and effectively-once rules).
 *
 * Its readiness is served over HTTP on METRICS_PORT (actors-only nodes run no gateway):
 * `GET /readyz` answers 200 while the node is a member of the consumer group holding its current
 * assignment (possibly empty) and Kafka answers it, else 503 with the reason (not joined yet,
 * rebalancing, out of the group, Kafka unreachable); `GET /healthz` answers 200 while the
 * process does. /metrics stays the Prometheus reporter's own.
 */
export default function createActorsService(deps: ServiceDeps): ServiceSchema {
  const { config, resources } = deps;
  let host: ActorHost | null = null;
  let consumer: LogConsumer | null = null;
  let log: MessageLog | null = null;
  let generation = 0;
  let partitionCount = 0;
  let sweepTimer: NodeJS.Timeout | null = null;
  let recordTimer: NodeJS.Timeout | null = null;
  /** What the start-up waits for, for NOT_READY answers and readiness. */
  let startState = "starting";
  let startAbort: AbortController | null = null;
  let startup: Promise<void> | null = null;
  const group = new GroupReadiness({
    contactWindowMs: config.kafka.sessionTimeoutMs,
    embedded: !config.kafka.brokers,
    groupId: config.kafka.groupId,
  });

  const notReady = () =>
    new Errors.MoleculerRetryableError(`actors are not running yet: ${startState}`, 503, "NOT_READY");
  const notOwner = (nodeID: string, symbol: string) =>
    new Errors.MoleculerClientError(
      `node ${nodeID} owns no partition of symbol ${symbol} yet: ${startState}`,
      409,
      "NOT_OWNER",
    );
  const requireHost = () => {
    if (!host) throw notReady();
    return host;
  };

  return {
    name: "actors",
    mixins: [resourcesMixin(resources)],

    actions: {
      /** Live state of one symbol, from the node that owns its partition. */
      state: {
        params: SYMBOL_PARAM,
        async handler(this: Service, ctx: Context<{ symbol: string }>) {
          const { symbol } = ctx.params;
          // A node still starting owns nothing: "not mine" lets the gateway ask the next node.
          if (!host) throw notOwner(this.broker.nodeID, symbol);
          const h = host;
          if (!h.isOwned(symbol)) {
            throw new Errors.MoleculerClientError(
              `symbol ${symbol} is in partition ${h.partitionOf(symbol)}, which node ${this.broker.nodeID} does not own`,
              409,
              "NOT_OWNER",
              { partition: h.partitionOf(symbol) },
            );
          }
          const view = await h.view(symbol);
          if (!view)
            throw new Errors.MoleculerClientError(`no data for symbol ${symbol} yet`, 404, "UNKNOWN_SYMBOL");
          return { nodeID: this.broker.nodeID, partition: h.partitionOf(symbol), state: view };
        },
      },
      /** Which partitions this node owns, and how many actors it holds. */
      partitions: {
        handler(this: Service): PartitionsReply {
          const h = requireHost();
          return {
            nodeID: this.broker.nodeID,
            generation,
            partitionCount,
            partitions: h.ownedPartitions(),
            actors: h.actorCount(),
            stalled: h.stalledPartitions(),
          };
        },
      },
      /** The live actors of this node, per partition. */
      list: {
        handler(this: Service) {
          return { nodeID: this.broker.nodeID, partitions: requireHost().activeSymbols() };
        },
      },
      /** Forces a snapshot of a live actor on this node. */
      snapshot: {
        params: SYMBOL_PARAM,
        async handler(this: Service, ctx: Context<{ symbol: string }>) {
          if (!host) throw notOwner(this.broker.nodeID, ctx.params.symbol);
          const written = await host.snapshotNow(ctx.params.symbol);
          if (!written) {
            throw new Errors.MoleculerClientError(
              `no live actor for ${ctx.params.symbol} on ${this.broker.nodeID}`,
              404,
              "NO_LIVE_ACTOR",
            );
          }
          return { nodeID: this.broker.nodeID, symbol: ctx.params.symbol, ...written };
        },
      },
      /** Consumer lag per partition for the whole group. */
      lag: {
        async handler() {
          if (!log) throw notReady();
          return log.lag(config.kafka.groupId);
        },
      },
    },

    /** Serves /readyz and /healthz on METRICS_PORT from the broker's creation on. */
    created(this: Service) {
      const broker = this.broker;
      const routed = routeOnMetricsPort(broker, {
        [ACTORS_HEALTH_PATHS.liveness]: (_req, res) =>
          sendJson(res, 200, {
            status: "ok",
            nodeID: broker.nodeID,
            uptimeSeconds: Math.round(process.uptime()),
          }),
        [ACTORS_HEALTH_PATHS.readiness]: (_req, res) => {
          group
            .evaluate({
              nodeID: broker.nodeID,
              startState,
              stalls: stallChecks(host),
              probeLog: async () => (await resources.log()).partitionCount(),
            })
            .then(
              ({ ready, body }) => sendJson(res, ready ? 200 : 503, body),
              (err: Error) => sendJson(res, 500, { error: err.message, type: "INTERNAL_ERROR" }),
            );
        },
      });
      if (!routed && config.metricsPort > 0)
        this.logger.warn(
          `no metrics server on port ${config.metricsPort}: /readyz and /healthz are not served`,
        );
    },

    /**
     * Returns at once: joining the group needs Kafka and Postgres, and either of them may be
     * away for a while. The start-up waits for each in the background (one line when it starts
     * waiting, one when it resumes), so the other services of the process (the gateway of an
     * all-in-one node) come up meanwhile, `/readyz` and the metrics say the node is not ready,
     * and SIGTERM ends the wait. Only a failure no restart can fix (a changed migration, a
     * refused login) stops the process.
     */
    started(this: Service) {
      registerMetrics(this.broker);
      const abort = new AbortController();
      startAbort = abort;
      startState = "starting";
      group.starting();
      resources.reportStartup("actors", startState);
      startup = startConsuming(this, abort.signal).then(
        () => resources.reportStartup("actors", null),
        (err: Error) => {
          if (err instanceof WaitAborted || abort.signal.aborted) return;
          this.broker.fatal(`the actors cannot start: ${err.message}`, err, true);
        },
      );
    },

    async stopped(this: Service) {
      group.stopping();
      startAbort?.abort();
      await startup;
      if (sweepTimer) clearInterval(sweepTimer);
      // Batches in flight finish (persist, snapshot, commit); then the member leaves the group,
      // so the partitions move at once instead of after a session timeout.
      if (recordTimer) clearInterval(recordTimer);
      host?.beginStop();
      // Unrecorded changes are recorded and their offsets committed before the group is left.
      await host?.flushDue(true);
      await consumer?.stop();
      this.logger.info("actors stopped: offsets committed, group left");
      resources.reportStalls(null);
      host = null;
      consumer = null;
      log = null;
    },
  };

  /** Waits for Kafka and Postgres in turn, then joins the consumer group. */
  async function startConsuming(service: Service, signal: AbortSignal): Promise<void> {
    const broker = service.broker;
    const logger = service.logger;
    const metrics = broker.metrics;
    const outage = new Outage("actors", logger, { failing: "waiting", recovered: "resumed" });
    const wait = <T>(what: string, fn: () => Promise<T>) =>
      untilAvailable(what, fn, {
        outage,
        signal,
        maxBackoffMs: config.actors.retryMaxBackoffMs,
        onChange: state => {
          startState = describeOutage(state);
          resources.reportStartup("actors", startState);
        },
      });

    const kafkaLog = await wait("reach the log (Kafka)", async () => {
      const l = await resources.log();
      partitionCount = await l.ensureTopic();
      return l;
    });
    log = kafkaLog;
    const sql = await wait("migrate the database (Postgres)", () => resources.sql());
    // The snapshot cache is not waited for: while Redis is away the actors restore from Postgres.
    const snapshots = resources.snapshots();
    metrics.set(METRIC.snapshotCacheUp, 1);

    const activeConsumer = kafkaLog.createConsumer({ groupId: config.kafka.groupId });
    consumer = activeConsumer;
    const activeHost = new ActorHost({
      settings: config.indicators,
      results: new ResultsStore(sql),
      snapshots,
      partitionCount,
      commit: (p, next) => activeConsumer.commit(p, next),
      idleMs: config.actors.idleMs,
      recordIntervalMs: config.actors.recordIntervalMs,
      idempotencyTtlMs: config.ingest.idempotencyTtlMs,
      retryMaxBackoffMs: config.actors.retryMaxBackoffMs,
      logger,
      owner: broker.nodeID,
      observer: {
        applied: (ticks, seconds) => {
          metrics.observe(METRIC.applyLatency, seconds);
          if (ticks > 0) metrics.increment(METRIC.ticksProcessed, undefined, ticks);
        },
        persisted: seconds => metrics.observe(METRIC.persistLatency, seconds),
        snapshotted: seconds => metrics.observe(METRIC.snapshotLatency, seconds),
        committed: (partition, next, highWatermark) =>
          metrics.set(METRIC.consumerLag, Math.max(0, highWatermark - next), { partition }),
        deadLetters: count => metrics.increment(METRIC.deadLetters, undefined, count),
        published: (partition, ticks, signals) => {
          metrics.set(METRIC.activeActors, host?.actorCount() ?? 0);
          for (const s of signals) metrics.increment(METRIC.signals, { side: s.side });
          void broker.broadcast("stock.analysed", {
            nodeID: broker.nodeID,
            partition,
            ticks,
            signals,
          } satisfies AnalysedEvent);
          if (signals.length > 0) void broker.emit("stock.signals", { signals } satisfies SignalsEvent);
        },
        stall: (partition, dependency, stalled) =>
          metrics.set(METRIC.partitionStalled, stalled ? 1 : 0, { partition, reason: dependency }),
        restored: (_partition, source, reason, count) =>
          metrics.increment(METRIC.actorRestores, { source, reason }, count),
        cache: up => metrics.set(METRIC.snapshotCacheUp, up ? 1 : 0),
        duplicates: (_partition, count) => metrics.increment(METRIC.duplicatesSkipped, undefined, count),
      },
    });
    host = activeHost;
    resources.reportStalls(() => stallChecks(activeHost));

    const announce = (partitions: number[], gen: number) =>
      void broker.broadcast("actors.assignment", {
        nodeID: broker.nodeID,
        partitions,
        generation: gen,
        partitionCount,
      } satisfies AssignmentEvent);
    // Out of the group (the Kafka client crashed, e.g. the broker went away) until it rejoins:
    // one line when it drops out, one when it is back.
    const membership = new Outage("actors", logger, {
      failing: "out of the consumer group",
      recovered: "back in the consumer group",
    });
    group.joining();
    await wait("join the consumer group (Kafka)", () =>
      activeConsumer.run({
        onAssignment: (partitions, gen) => {
          generation = gen;
          group.assigned(partitions, gen);
          membership.succeeded();
          // Lag of partitions this node no longer owns would otherwise be reported forever.
          metrics.getMetric(METRIC.consumerLag)?.clear();
          activeHost.onAssignment(partitions, gen);
          metrics.increment(METRIC.rebalances);
          metrics.set(METRIC.ownedPartitions, partitions.length);
          metrics.set(METRIC.activeActors, activeHost.actorCount());
          logger.info(`assigned partitions [${partitions.join(", ")}] (generation ${gen})`);
          announce(partitions, gen);
        },
        onLeft: (err, gen) => {
          generation = gen;
          group.left(err, gen);
          membership.failed("the Kafka consumer", err, "; it rejoins by itself");
          activeHost.onAssignment([], gen);
          // No sample at all, not 0: the gauge means "holds an assignment" (readiness is GET /readyz).
          metrics.getMetric(METRIC.ownedPartitions)?.clear();
          metrics.getMetric(METRIC.consumerLag)?.clear();
          metrics.set(METRIC.activeActors, 0);
          announce([], gen);
        },
        onRebalancing: gen => {
          group.rebalancing(gen);
          logger.info(
            `consumer group rebalancing: the assignment of generation ${gen} is revoked; not ready until the next one`,
          );
        },
        onContact: () => group.contact(),
        onBatch: (batch, gen) => activeHost.handleBatch(batch, gen),
        onError: (err, fatal) => {
          if (fatal) {
            // No restart fixes this (authorization, invalid settings): exit so it shows, rather
            // than a process that looks alive and consumes nothing.
            broker.fatal("the Kafka consumer stopped for good", err as Error, true);
          } else {
            logger.error(`a batch failed and will be retried: ${(err as Error).message}`);
          }
        },
      }),
    );
    const sweepEvery = Math.min(30000, Math.max(1000, Math.floor(config.actors.idleMs / 2)));
    sweepTimer = setInterval(() => {
      activeHost.passivateIdle().then(
        n => {
          if (n > 0) logger.debug(`passivated ${n} idle actor(s)`);
          metrics.set(METRIC.activeActors, activeHost.actorCount());
        },
        (err: Error) => logger.warn(`passivating idle actors failed, will try again: ${err.message}`),
      );
    }, sweepEvery);
    sweepTimer.unref();
    if (config.actors.recordIntervalMs > 0) {
      // A partition whose messages stopped records its last changes (and commits) on this timer.
      recordTimer = setInterval(
        () => void activeHost.flushDue(),
        Math.max(50, Math.floor(config.actors.recordIntervalMs / 2)),
      );
      recordTimer.unref();
    }
    logger.info(
      `actors consuming ${kafkaLog.kind} topic "${kafkaLog.topic}" as group "${config.kafka.groupId}" (${partitionCount} partitions)`,
    );
  }
}
