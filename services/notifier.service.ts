import { Errors, type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import type { Signal } from "../domain/symbol-actor";
import { METRIC, registerMetrics } from "../lib/metrics";
import { Outage, untilAvailable, WaitAborted } from "../lib/waiting";
import { SignalNotifier, type NotifierObserver } from "../runtime/notify/signal-notifier";
import type { ServiceDeps, SignalNotification, SignalsEvent } from "./contracts";
import { serviceSchema } from "./service-schema";

export function describeSignal(
  s: Pick<Signal, "side" | "symbol" | "price" | "rsi" | "seq" | "timestamp">,
): string {
  const zone = s.side === "buy" ? "oversold" : "overbought";
  return `${s.side.toUpperCase()} ${s.symbol} at ${s.price.toFixed(2)}: RSI ${s.rsi.toFixed(1)} entered the ${zone} zone (tick ${s.seq}, ${new Date(s.timestamp * 1000).toISOString()})`;
}

const SUBSCRIBER_PARAM = { subscriber: { type: "string", min: 1, max: 63 } };

/** What the notifier holds between its lifecycle steps. */
interface NotifierState {
  /** The webhook deliveries, once Postgres answered; null with no subscriber configured. */
  deliveries: SignalNotifier | null;
  startAbort: AbortController | null;
  startup: Promise<void> | null;
}

type NotifierMethods = {
  notify(signal: Signal): void;
  startDeliveries(signal: AbortSignal): Promise<void>;
  deliveryMetrics(): NotifierObserver;
  requireDeliveries(): SignalNotifier;
};

type NotifierFields = { deps: ServiceDeps; state: NotifierState };
type NotifierService = Service & NotifierMethods & NotifierFields;

/**
 * Tells people about signals: a log line and a `notifier.signal` broadcast for every gateway's
 * WebSocket clients as soon as the actors announce them (`stock.signals`, emitted: one notifier
 * node each), and webhook deliveries from the record (runtime/notify/): every stored signal to
 * every configured subscriber at least once, signed per Standard Webhooks, retried with backoff.
 * The event only wakes the deliveries up; they read the signals from Postgres, so a notifier that
 * was down, a webhook outage or a lost event loses nothing.
 */
export default function createNotifierService(deps: ServiceDeps): ServiceSchema {
  return serviceSchema<ServiceSettingSchema, NotifierMethods, NotifierFields>({
    name: "notifier",
    actions,
    events: {
      "stock.signals": {
        handler(ctx: Context<SignalsEvent>) {
          for (const signal of ctx.params.signals) this.notify(signal);
          this.state.deliveries?.wake();
        },
      },
    },
    methods,
    created() {
      this.deps = deps;
      this.state = { deliveries: null, startAbort: null, startup: null };
    },
    started() {
      registerMetrics(this.broker);
      const abort = new AbortController();
      this.state.startAbort = abort;
      this.state.startup = this.startDeliveries(abort.signal).catch((err: Error) => {
        if (err instanceof WaitAborted || abort.signal.aborted) return;
        this.broker.fatal(`the notifier cannot start: ${err.message}`, err, true);
      });
    },
    async stopped() {
      this.state.startAbort?.abort();
      await this.state.startup;
      await this.state.deliveries?.stop();
      this.state.deliveries = null;
    },
  });
}

const actions = {
  /** Per subscriber: its cursor, lag, last error and next attempt (`GET /api/notifications`). */
  status: {
    async handler(this: NotifierService) {
      return { subscribers: this.state.deliveries ? await this.state.deliveries.overview() : [] };
    },
  },
  /** Sends a subscriber's dead letters again (the REPL's `redeliver <subscriber>`). */
  redeliver: {
    params: SUBSCRIBER_PARAM,
    handler(this: NotifierService, ctx: Context<{ subscriber: string }>) {
      return this.requireDeliveries().redeliver(ctx.params.subscriber);
    },
  },
  /** Lets a subscriber disabled by a 410 receive again (the REPL's `enable-subscriber <subscriber>`). */
  enable: {
    params: SUBSCRIBER_PARAM,
    async handler(this: NotifierService, ctx: Context<{ subscriber: string }>) {
      const deliveries = this.requireDeliveries();
      if (!(await deliveries.enable(ctx.params.subscriber)))
        throw new Errors.MoleculerClientError(
          `no subscriber named ${ctx.params.subscriber}`,
          404,
          "UNKNOWN_SUBSCRIBER",
        );
      deliveries.wake();
      return { subscriber: ctx.params.subscriber, enabled: true };
    },
  },
};

const methods = {
  notify(signal) {
    const notification = { signal, message: describeSignal(signal) };
    this.logger.info(notification.message);
    void this.broker.broadcast("notifier.signal", notification satisfies SignalNotification);
  },

  /** With subscribers configured: waits for Postgres (in the background), then delivers. */
  async startDeliveries(signal) {
    const { config, resources } = this.deps;
    const { subscribers, secret, retryMs, timeoutMs } = config.notifier;
    if (subscribers.length === 0 || !secret) return;
    const sql = await untilAvailable("migrate the database (Postgres)", () => resources.sql(), {
      outage: new Outage("notifier", this.logger, { failing: "waiting", recovered: "resumed" }),
      signal,
      maxBackoffMs: config.actors.retryMaxBackoffMs,
    });
    const deliveries = new SignalNotifier({
      db: sql,
      subscribers,
      secret,
      owner: this.broker.nodeID,
      retryMs,
      timeoutMs,
      logger: this.logger,
      describe: describeSignal,
      observer: this.deliveryMetrics(),
    });
    await deliveries.start();
    this.state.deliveries = deliveries;
    this.logger.info(`webhook deliveries to ${subscribers.map(s => s.name).join(", ")}, from the record`);
  },

  deliveryMetrics() {
    const metrics = this.broker.metrics;
    return {
      delivered: (subscriber, n) => metrics.increment(METRIC.notificationsDelivered, { subscriber }, n),
      failed: subscriber => metrics.increment(METRIC.notificationsFailed, { subscriber }),
      retrying: (subscriber, on) => metrics.set(METRIC.notificationsRetrying, on ? 1 : 0, { subscriber }),
      dead: subscriber => metrics.increment(METRIC.notificationsDead, { subscriber }),
      backlog: (subscriber, seconds) =>
        metrics.set(METRIC.notificationsOldestSeconds, seconds, { subscriber }),
    };
  },

  requireDeliveries() {
    if (!this.state.deliveries)
      throw new Errors.MoleculerRetryableError(
        "webhook deliveries are not running here: no subscriber configured, or still starting",
        503,
        "NOT_READY",
      );
    return this.state.deliveries;
  },
} satisfies NotifierMethods & ThisType<NotifierService>;
