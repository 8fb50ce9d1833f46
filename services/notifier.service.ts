import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type { Signal } from "../domain/symbol-actor";
import { METRIC, registerMetrics } from "../lib/metrics";
import { Outage, untilAvailable, WaitAborted } from "../lib/waiting";
import { SignalNotifier } from "../runtime/notify/signal-notifier";
import type { ServiceDeps, SignalNotification, SignalsEvent } from "./contracts";

export function describeSignal(
  s: Pick<Signal, "side" | "symbol" | "price" | "rsi" | "seq" | "timestamp">,
): string {
  const zone = s.side === "buy" ? "oversold" : "overbought";
  return `${s.side.toUpperCase()} ${s.symbol} at ${s.price.toFixed(2)}: RSI ${s.rsi.toFixed(1)} entered the ${zone} zone (tick ${s.seq}, ${new Date(s.timestamp * 1000).toISOString()})`;
}

const SUBSCRIBER_PARAM = { subscriber: { type: "string", min: 1, max: 63 } };

/**
 * Tells people about signals: a log line and a `notifier.signal` broadcast for every gateway's
 * WebSocket clients as soon as the actors announce them (`stock.signals`, emitted: one notifier
 * node each), and webhook deliveries from the record (runtime/notify/): every stored signal to
 * every configured subscriber at least once, signed per Standard Webhooks, retried with backoff.
 * The event only wakes the deliveries up; they read the signals from Postgres, so a notifier that
 * was down, a webhook outage or a lost event loses nothing.
 */
export default function createNotifierService(deps: ServiceDeps): ServiceSchema {
  const { config, resources } = deps;
  const state: {
    notifier: SignalNotifier | null;
    abort: AbortController | null;
    startup: Promise<void> | null;
  } = {
    notifier: null,
    abort: null,
    startup: null,
  };
  const requireNotifier = () => {
    if (!state.notifier)
      throw new Errors.MoleculerRetryableError(
        "webhook deliveries are not running: none configured, or starting",
        503,
        "NOT_READY",
      );
    return state.notifier;
  };

  async function startDeliveries(service: Service, signal: AbortSignal): Promise<void> {
    const { subscribers, secret, retryMs, timeoutMs } = config.notifier;
    if (subscribers.length === 0 || !secret) return;
    const sql = await untilAvailable("migrate the database (Postgres)", () => resources.sql(), {
      outage: new Outage("notifier", service.logger, { failing: "waiting", recovered: "resumed" }),
      signal,
      maxBackoffMs: config.actors.retryMaxBackoffMs,
    });
    const metrics = service.broker.metrics;
    const notifier = new SignalNotifier({
      db: sql,
      subscribers,
      secret,
      owner: service.broker.nodeID,
      retryMs,
      timeoutMs,
      logger: service.logger,
      describe: describeSignal,
      observer: {
        delivered: (subscriber, n) => metrics.increment(METRIC.notificationsDelivered, { subscriber }, n),
        failed: subscriber => metrics.increment(METRIC.notificationsFailed, { subscriber }),
        retrying: (subscriber, retrying) =>
          metrics.set(METRIC.notificationsRetrying, retrying ? 1 : 0, { subscriber }),
        dead: subscriber => metrics.increment(METRIC.notificationsDead, { subscriber }),
        backlog: (subscriber, seconds) =>
          metrics.set(METRIC.notificationsOldestSeconds, seconds, { subscriber }),
      },
    });
    await notifier.start();
    state.notifier = notifier;
    service.logger.info(`webhook deliveries to ${subscribers.map(s => s.name).join(", ")} from the record`);
  }

  return {
    name: "notifier",

    actions: {
      /** Per subscriber: its cursor, lag, last error and next attempt (`GET /api/notifications`). */
      status: {
        async handler() {
          return { subscribers: state.notifier ? await state.notifier.overview() : [] };
        },
      },
      /** Sends a subscriber's dead letters again (REPL `redeliver <subscriber>`). */
      redeliver: {
        params: SUBSCRIBER_PARAM,
        handler(ctx: Context<{ subscriber: string }>) {
          return requireNotifier().redeliver(ctx.params.subscriber);
        },
      },
      /** Lets a subscriber disabled by a 410 receive again (REPL `enable-subscriber <subscriber>`). */
      enable: {
        params: SUBSCRIBER_PARAM,
        async handler(ctx: Context<{ subscriber: string }>) {
          const enabled = await requireNotifier().enable(ctx.params.subscriber);
          if (!enabled)
            throw new Errors.MoleculerClientError(
              `no subscriber named ${ctx.params.subscriber}`,
              404,
              "UNKNOWN_SUBSCRIBER",
            );
          state.notifier?.wake();
          return { subscriber: ctx.params.subscriber, enabled };
        },
      },
    },

    events: {
      "stock.signals": {
        handler(this: Service, ctx: Context<SignalsEvent>) {
          for (const signal of ctx.params.signals) {
            const notification = { signal, message: describeSignal(signal) };
            this.logger.info(notification.message);
            void this.broker.broadcast("notifier.signal", notification satisfies SignalNotification);
          }
          state.notifier?.wake();
        },
      },
    },

    started(this: Service) {
      registerMetrics(this.broker);
      const abort = new AbortController();
      state.abort = abort;
      state.startup = startDeliveries(this, abort.signal).catch((err: Error) => {
        if (err instanceof WaitAborted || abort.signal.aborted) return;
        this.broker.fatal(`the notifier cannot start: ${err.message}`, err, true);
      });
    },

    async stopped() {
      state.abort?.abort();
      await state.startup;
      await state.notifier?.stop();
      state.notifier = null;
    },
  };
}
