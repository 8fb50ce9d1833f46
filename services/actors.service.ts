import type { ServerResponse } from "node:http";
import { Errors, type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import type { ConsumerHooks, LogConsumer, MessageLog } from "../adapters/log/types";
import type { SnapshotStore } from "../adapters/snapshots/types";
import type { SqlClient } from "../adapters/sql/types";
import type { Signal, TickResult } from "../domain/symbol-actor";
import type { Config } from "../lib/config";
import { METRIC, registerMetrics } from "../lib/metrics";
import { describeOutage, Outage, untilAvailable, WaitAborted } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import { ActorHost, type HostObserver } from "../runtime/host/actor-host";
import { ResultsStore } from "../runtime/store/results-store";
import { ACTORS_HEALTH_PATHS, routeOnMetricsPort, sendJson } from "./actors/metrics-port";
import { GroupReadiness } from "./actors/readiness";
import type { AnalysedEvent, AssignmentEvent, PartitionsReply, ServiceDeps, SignalsEvent } from "./contracts";
import { serviceSchema } from "./service-schema";

const SYMBOL_PARAM = { symbol: { type: "string", min: 1, max: 40 } };

/** What the actors service holds between its lifecycle steps. */
interface ActorsState {
  /** What the start-up waits for, for NOT_READY answers and readiness. */
  startState: string;
  startAbort: AbortController | null;
  startup: Promise<void> | null;
  /** Set once the start-up reached Kafka (the topic exists, its partition count is known). */
  log: MessageLog | null;
  partitionCount: number;
  consumer: LogConsumer | null;
  /** Set once Postgres is migrated: from then on the node hosts actors. */
  host: ActorHost | null;
  /** The consumer group generation of the last assignment (or of the one that ended). */
  generation: number;
  sweepTimer: NodeJS.Timeout | null;
  recordTimer: NodeJS.Timeout | null;
  readonly group: GroupReadiness;
}

/** Runs `fn` until it succeeds, waiting while a dependency is away (lib/waiting.ts). */
type StartupWait = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

type ActorsMethods = {
  notReady(): Error;
  notOwner(symbol: string): Error;
  requireHost(): ActorHost;
  serveHealth(): void;
  answerReadiness(res: ServerResponse): void;
  startConsuming(signal: AbortSignal): Promise<void>;
  startupWait(signal: AbortSignal): StartupWait;
  reachLog(): Promise<MessageLog>;
  createHost(sql: SqlClient, snapshots: SnapshotStore, consumer: LogConsumer): ActorHost;
  hostObserver(): HostObserver;
  publish(partition: number, ticks: TickResult[], signals: Signal[]): void;
  consumerHooks(host: ActorHost): ConsumerHooks;
  assigned(host: ActorHost, membership: Outage, partitions: number[], generation: number): void;
  leftGroup(host: ActorHost, membership: Outage, err: unknown, generation: number): void;
  consumerFailed(err: unknown, fatal: boolean): void;
  announce(partitions: number[], generation: number): void;
  startTimers(host: ActorHost): void;
};

function initialState(config: Config): ActorsState {
  return {
    startState: "starting",
    startAbort: null,
    startup: null,
    log: null,
    partitionCount: 0,
    consumer: null,
    host: null,
    generation: 0,
    sweepTimer: null,
    recordTimer: null,
    group: new GroupReadiness({
      contactWindowMs: config.kafka.sessionTimeoutMs,
      embedded: !config.kafka.brokers,
      groupId: config.kafka.groupId,
    }),
  };
}

type ActorsFields = { deps: ServiceDeps; state: ActorsState };
type ActorsService = Service & ActorsMethods & ActorsFields;

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
  return serviceSchema<ServiceSettingSchema, ActorsMethods, ActorsFields>({
    name: "actors",
    mixins: [resourcesMixin(deps.resources)],
    actions,
    methods,
    /** Serves /readyz and /healthz on METRICS_PORT from the broker's creation on. */
    created() {
      this.deps = deps;
      this.state = initialState(deps.config);
      this.serveHealth();
    },
    started,
    stopped,
  });
}

const actions = {
  /** Live state of one symbol, from the node that owns its partition. */
  state: {
    params: SYMBOL_PARAM,
    async handler(this: ActorsService, ctx: Context<{ symbol: string }>) {
      const { symbol } = ctx.params;
      // A node still starting owns nothing: "not mine" lets the gateway ask the next node.
      const h = this.state.host;
      if (!h) throw this.notOwner(symbol);
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
    handler(this: ActorsService): PartitionsReply {
      const h = this.requireHost();
      return {
        nodeID: this.broker.nodeID,
        generation: this.state.generation,
        partitionCount: this.state.partitionCount,
        partitions: h.ownedPartitions(),
        actors: h.actorCount(),
        stalled: h.stalledPartitions(),
      };
    },
  },
  /** The live actors of this node, per partition. */
  list: {
    handler(this: ActorsService) {
      return { nodeID: this.broker.nodeID, partitions: this.requireHost().activeSymbols() };
    },
  },
  /** Forces a snapshot of a live actor on this node. */
  snapshot: {
    params: SYMBOL_PARAM,
    async handler(this: ActorsService, ctx: Context<{ symbol: string }>) {
      const host = this.state.host;
      if (!host) throw this.notOwner(ctx.params.symbol);
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
    async handler(this: ActorsService) {
      const log = this.state.log;
      if (!log) throw this.notReady();
      return log.lag(this.deps.config.kafka.groupId);
    },
  },
};

/**
 * Returns at once: joining the group needs Kafka and Postgres, and either of them may be
 * away for a while. The start-up waits for each in the background (one line when it starts
 * waiting, one when it resumes), so the other services of the process (the gateway of an
 * all-in-one node) come up meanwhile, `/readyz` and the metrics say the node is not ready,
 * and SIGTERM ends the wait. Only a failure no restart can fix (a changed migration, a
 * refused login) stops the process.
 */
function started(this: ActorsService): void {
  registerMetrics(this.broker);
  const { state } = this;
  const { resources } = this.deps;
  const abort = new AbortController();
  state.startAbort = abort;
  state.startState = "starting";
  state.group.starting();
  resources.reportStartup("actors", state.startState);
  state.startup = this.startConsuming(abort.signal).then(
    () => resources.reportStartup("actors", null),
    (err: Error) => {
      if (err instanceof WaitAborted || abort.signal.aborted) return;
      this.broker.fatal(`the actors cannot start: ${err.message}`, err, true);
    },
  );
}

async function stopped(this: ActorsService): Promise<void> {
  const { state } = this;
  state.group.stopping();
  state.startAbort?.abort();
  await state.startup;
  if (state.sweepTimer) clearInterval(state.sweepTimer);
  // Batches in flight finish (persist, snapshot, commit); then the member leaves the group,
  // so the partitions move at once instead of after a session timeout.
  if (state.recordTimer) clearInterval(state.recordTimer);
  state.host?.beginStop();
  // Unrecorded changes are recorded and their offsets committed before the group is left.
  await state.host?.flushDue(true);
  await state.consumer?.stop();
  this.logger.info("actors stopped: offsets committed, group left");
  this.deps.resources.reportStalls(null);
  state.host = null;
  state.consumer = null;
  state.log = null;
}

const methods = {
  notReady() {
    return new Errors.MoleculerRetryableError(
      `actors are not running yet: ${this.state.startState}`,
      503,
      "NOT_READY",
    );
  },

  notOwner(symbol) {
    return new Errors.MoleculerClientError(
      `node ${this.broker.nodeID} owns no partition of symbol ${symbol} yet: ${this.state.startState}`,
      409,
      "NOT_OWNER",
    );
  },

  requireHost() {
    if (!this.state.host) throw this.notReady();
    return this.state.host;
  },

  serveHealth() {
    const broker = this.broker;
    const routed = routeOnMetricsPort(broker, {
      [ACTORS_HEALTH_PATHS.liveness]: (_req, res) =>
        sendJson(res, 200, {
          status: "ok",
          nodeID: broker.nodeID,
          uptimeSeconds: Math.round(process.uptime()),
        }),
      [ACTORS_HEALTH_PATHS.readiness]: (_req, res) => this.answerReadiness(res),
    });
    const { metricsPort } = this.deps.config;
    if (!routed && metricsPort > 0)
      this.logger.warn(`no metrics server on port ${metricsPort}: /readyz and /healthz are not served`);
  },

  answerReadiness(res) {
    const { state } = this;
    const { resources } = this.deps;
    state.group
      .evaluate({
        nodeID: this.broker.nodeID,
        startState: state.startState,
        stalls: stallChecks(state.host),
        probeLog: async () => (await resources.log()).partitionCount(),
      })
      .then(
        ({ ready, body }) => sendJson(res, ready ? 200 : 503, body),
        (err: Error) => sendJson(res, 500, { error: err.message, type: "INTERNAL_ERROR" }),
      );
  },

  /** Waits for Kafka and Postgres in turn, then joins the consumer group. */
  async startConsuming(signal) {
    const { state } = this;
    const { config, resources } = this.deps;
    const wait = this.startupWait(signal);
    const log = await wait("reach the log (Kafka)", () => this.reachLog());
    state.log = log;
    const sql = await wait("migrate the database (Postgres)", () => resources.sql());
    // The snapshot cache is not waited for: while Redis is away the actors restore from Postgres.
    const snapshots = resources.snapshots();
    this.broker.metrics.set(METRIC.snapshotCacheUp, 1);

    const consumer = log.createConsumer({ groupId: config.kafka.groupId });
    state.consumer = consumer;
    const host = this.createHost(sql, snapshots, consumer);
    state.host = host;
    resources.reportStalls(() => stallChecks(host));

    const hooks = this.consumerHooks(host);
    state.group.joining();
    await wait("join the consumer group (Kafka)", () => consumer.run(hooks));
    this.startTimers(host);
    this.logger.info(
      `actors consuming ${log.kind} topic "${log.topic}" as group "${config.kafka.groupId}" (${state.partitionCount} partitions)`,
    );
  },

  /** One outage for the whole start-up: one line when it starts waiting, one when it resumes. */
  startupWait(signal) {
    const outage = new Outage("actors", this.logger, { failing: "waiting", recovered: "resumed" });
    return (what, fn) =>
      untilAvailable(what, fn, {
        outage,
        signal,
        maxBackoffMs: this.deps.config.actors.retryMaxBackoffMs,
        onChange: outageState => {
          this.state.startState = describeOutage(outageState);
          this.deps.resources.reportStartup("actors", this.state.startState);
        },
      });
  },

  async reachLog() {
    const log = await this.deps.resources.log();
    this.state.partitionCount = await log.ensureTopic();
    return log;
  },

  createHost(sql, snapshots, consumer) {
    const { config } = this.deps;
    return new ActorHost({
      settings: config.indicators,
      results: new ResultsStore(sql),
      snapshots,
      partitionCount: this.state.partitionCount,
      commit: (p, next) => consumer.commit(p, next),
      idleMs: config.actors.idleMs,
      recordIntervalMs: config.actors.recordIntervalMs,
      idempotencyTtlMs: config.ingest.idempotencyTtlMs,
      retryMaxBackoffMs: config.actors.retryMaxBackoffMs,
      logger: this.logger,
      owner: this.broker.nodeID,
      observer: this.hostObserver(),
    });
  },

  /** The host's reports as metrics, and each durable batch as events. */
  hostObserver() {
    const metrics = this.broker.metrics;
    return {
      applied: (ticks, seconds) => {
        metrics.observe(METRIC.applyLatency, seconds);
        if (ticks > 0) metrics.increment(METRIC.ticksProcessed, undefined, ticks);
      },
      persisted: seconds => metrics.observe(METRIC.persistLatency, seconds),
      snapshotted: seconds => metrics.observe(METRIC.snapshotLatency, seconds),
      committed: (partition, next, highWatermark) =>
        metrics.set(METRIC.consumerLag, Math.max(0, highWatermark - next), { partition }),
      deadLetters: count => metrics.increment(METRIC.deadLetters, undefined, count),
      published: (partition, ticks, signals) => this.publish(partition, ticks, signals),
      stall: (partition, dependency, stalled) =>
        metrics.set(METRIC.partitionStalled, stalled ? 1 : 0, { partition, reason: dependency }),
      restored: (_partition, source, reason, count) =>
        metrics.increment(METRIC.actorRestores, { source, reason }, count),
      cache: up => metrics.set(METRIC.snapshotCacheUp, up ? 1 : 0),
      duplicates: (_partition, count) => metrics.increment(METRIC.duplicatesSkipped, undefined, count),
    };
  },

  publish(partition, ticks, signals) {
    const { broker } = this;
    broker.metrics.set(METRIC.activeActors, this.state.host?.actorCount() ?? 0);
    for (const s of signals) broker.metrics.increment(METRIC.signals, { side: s.side });
    void broker.broadcast("stock.analysed", {
      nodeID: broker.nodeID,
      partition,
      ticks,
      signals,
    } satisfies AnalysedEvent);
    if (signals.length > 0) void broker.emit("stock.signals", { signals } satisfies SignalsEvent);
  },

  consumerHooks(host) {
    const { group } = this.state;
    // Out of the group (the Kafka client crashed, e.g. the broker went away) until it rejoins:
    // one line when it drops out, one when it is back.
    const membership = new Outage("actors", this.logger, {
      failing: "out of the consumer group",
      recovered: "back in the consumer group",
    });
    return {
      onAssignment: (partitions, gen) => this.assigned(host, membership, partitions, gen),
      onLeft: (err, gen) => this.leftGroup(host, membership, err, gen),
      onRebalancing: gen => {
        group.rebalancing(gen);
        this.logger.info(
          `consumer group rebalancing: the assignment of generation ${gen} is revoked; not ready until the next one`,
        );
      },
      onContact: () => group.contact(),
      onBatch: (batch, gen) => host.handleBatch(batch, gen),
      onError: (err, fatal) => this.consumerFailed(err, fatal),
    };
  },

  assigned(host, membership, partitions, gen) {
    const metrics = this.broker.metrics;
    this.state.generation = gen;
    this.state.group.assigned(partitions, gen);
    membership.succeeded();
    // Lag of partitions this node no longer owns would otherwise be reported forever.
    metrics.getMetric(METRIC.consumerLag)?.clear();
    host.onAssignment(partitions, gen);
    metrics.increment(METRIC.rebalances);
    metrics.set(METRIC.ownedPartitions, partitions.length);
    metrics.set(METRIC.activeActors, host.actorCount());
    this.logger.info(`assigned partitions [${partitions.join(", ")}] (generation ${gen})`);
    this.announce(partitions, gen);
  },

  leftGroup(host, membership, err, gen) {
    const metrics = this.broker.metrics;
    this.state.generation = gen;
    this.state.group.left(err, gen);
    membership.failed("the Kafka consumer", err, "; it rejoins by itself");
    host.onAssignment([], gen);
    // No sample at all, not 0: the gauge means "holds an assignment" (readiness is GET /readyz).
    metrics.getMetric(METRIC.ownedPartitions)?.clear();
    metrics.getMetric(METRIC.consumerLag)?.clear();
    metrics.set(METRIC.activeActors, 0);
    this.announce([], gen);
  },

  consumerFailed(err, fatal) {
    if (fatal) {
      // No restart fixes this (authorization, invalid settings): exit so it shows, rather
      // than a process that looks alive and consumes nothing.
      this.broker.fatal("the Kafka consumer stopped for good", err as Error, true);
    } else {
      this.logger.error(`a batch failed and will be retried: ${(err as Error).message}`);
    }
  },

  announce(partitions, gen) {
    void this.broker.broadcast("actors.assignment", {
      nodeID: this.broker.nodeID,
      partitions,
      generation: gen,
      partitionCount: this.state.partitionCount,
    } satisfies AssignmentEvent);
  },

  startTimers(host) {
    const { state, logger } = this;
    const { actors } = this.deps.config;
    const metrics = this.broker.metrics;
    const sweepEvery = Math.min(30000, Math.max(1000, Math.floor(actors.idleMs / 2)));
    state.sweepTimer = setInterval(() => {
      host.passivateIdle().then(
        n => {
          if (n > 0) logger.debug(`passivated ${n} idle actor(s)`);
          metrics.set(METRIC.activeActors, host.actorCount());
        },
        (err: Error) => logger.warn(`passivating idle actors failed, will try again: ${err.message}`),
      );
    }, sweepEvery);
    state.sweepTimer.unref();
    if (actors.recordIntervalMs > 0) {
      // A partition whose messages stopped records its last changes (and commits) on this timer.
      state.recordTimer = setInterval(
        () => void host.flushDue(),
        Math.max(50, Math.floor(actors.recordIntervalMs / 2)),
      );
      state.recordTimer.unref();
    }
  },
} satisfies ActorsMethods & ThisType<ActorsService>;
