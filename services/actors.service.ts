import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type { LogConsumer, MessageLog } from "../adapters/log/types";
import { METRIC, registerMetrics } from "../lib/metrics";
import { resourcesMixin } from "../mixins/resources.mixin";
import { ActorHost } from "../runtime/actor-host";
import { ResultsStore } from "../runtime/results-store";
import type { AnalysedEvent, AssignmentEvent, PartitionsReply, ServiceDeps, SignalsEvent } from "./contracts";

const SYMBOL_PARAM = { symbol: { type: "string", min: 1, max: 40 } };

/**
 * The symbol actors: a consumer group member on the `stock` topic that hosts one actor per
 * symbol of the partitions Kafka assigned to this node (see runtime/actor-host.ts for the
 * ordering and effectively-once rules).
 */
export default function createActorsService(deps: ServiceDeps): ServiceSchema {
  const { config, resources } = deps;
  let host: ActorHost | null = null;
  let consumer: LogConsumer | null = null;
  let log: MessageLog | null = null;
  let generation = 0;
  let partitionCount = 0;
  let sweepTimer: NodeJS.Timeout | null = null;

  const requireHost = () => {
    if (!host) throw new Errors.MoleculerRetryableError("actors are starting", 503, "NOT_READY");
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
          const h = requireHost();
          const { symbol } = ctx.params;
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
          const written = await requireHost().snapshotNow(ctx.params.symbol);
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
          if (!log) throw new Errors.MoleculerRetryableError("actors are starting", 503, "NOT_READY");
          return log.lag(config.kafka.groupId);
        },
      },
    },

    async started(this: Service) {
      const broker = this.broker;
      const logger = this.logger;
      registerMetrics(broker);
      const metrics = broker.metrics;
      log = await resources.log();
      const sql = await resources.sql();
      const snapshots = resources.snapshots();
      partitionCount = await log.ensureTopic();
      consumer = log.createConsumer({ groupId: config.kafka.groupId });
      const activeConsumer = consumer;
      host = new ActorHost({
        settings: config.indicators,
        results: new ResultsStore(sql),
        snapshots,
        partitionCount,
        commit: (p, next) => activeConsumer.commit(p, next),
        idleMs: config.actors.idleMs,
        retryMaxBackoffMs: config.actors.retryMaxBackoffMs,
        logger,
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
        },
      });
      const activeHost = host;
      await consumer.run({
        onAssignment: (partitions, gen) => {
          generation = gen;
          // Lag of partitions this node no longer owns would otherwise be reported forever.
          metrics.getMetric(METRIC.consumerLag)?.clear();
          activeHost.onAssignment(partitions, gen);
          metrics.increment(METRIC.rebalances);
          metrics.set(METRIC.ownedPartitions, partitions.length);
          metrics.set(METRIC.activeActors, activeHost.actorCount());
          logger.info(`assigned partitions [${partitions.join(", ")}] (generation ${gen})`);
          void broker.broadcast("actors.assignment", {
            nodeID: broker.nodeID,
            partitions,
            generation: gen,
            partitionCount,
          } satisfies AssignmentEvent);
        },
        onBatch: (batch, gen) => activeHost.handleBatch(batch, gen),
        onError: (err, fatal) => {
          if (fatal) {
            // Nothing will consume this node's partitions any more: exit, so the supervisor
            // restarts it (replay makes that safe) instead of a process that looks alive.
            broker.fatal("the Kafka consumer stopped for good", err as Error, true);
          } else {
            logger.error(`a batch failed and will be retried: ${(err as Error).message}`);
          }
        },
      });
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
      logger.info(
        `actors consuming ${log.kind} topic "${log.topic}" as group "${config.kafka.groupId}" (${partitionCount} partitions)`,
      );
    },

    async stopped(this: Service) {
      if (sweepTimer) clearInterval(sweepTimer);
      // Batches in flight finish (persist, snapshot, commit); then the member leaves the group,
      // so the partitions move at once instead of after a session timeout.
      host?.beginStop();
      await consumer?.stop();
      this.logger.info("actors stopped: offsets committed, group left");
      host = null;
      consumer = null;
    },
  };
}
