import type { Context, Service, ServiceSchema } from "moleculer";
import type { Signal } from "../domain/symbol-actor";
import type { ServiceDeps, SignalNotification, SignalsEvent } from "./contracts";

export function describeSignal(s: Signal): string {
  const zone = s.side === "buy" ? "oversold" : "overbought";
  return `${s.side.toUpperCase()} ${s.symbol} at ${s.price.toFixed(2)}: RSI ${s.rsi.toFixed(1)} entered the ${zone} zone (tick ${s.seq}, ${new Date(s.timestamp * 1000).toISOString()})`;
}

/** Webhook deliveries waiting; past this, the oldest are dropped (and counted) rather than growing memory. */
const MAX_PENDING_WEBHOOKS = 1000;

/**
 * Turns signal events into notifications: a log line, a push to every gateway's WebSocket
 * clients, and an optional webhook. `stock.signals` is emitted (balanced), so each signal is
 * notified by exactly one notifier node however many run.
 */
export default function createNotifierService(deps: Pick<ServiceDeps, "config">): ServiceSchema {
  const { config } = deps;
  const queue: SignalNotification[] = [];
  let sending = false;
  let dropped = 0;

  async function deliver(logger: Service["logger"]): Promise<void> {
    if (sending || !config.notifierWebhookUrl) return;
    sending = true;
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0, 100);
        try {
          const res = await fetch(config.notifierWebhookUrl, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ notifications: batch }),
            signal: AbortSignal.timeout(5000),
          });
          if (!res.ok)
            logger.warn(`webhook answered ${res.status}; ${batch.length} notification(s) not delivered`);
        } catch (err) {
          logger.warn(
            `webhook failed: ${(err as Error).message}; ${batch.length} notification(s) not delivered`,
          );
        }
      }
    } finally {
      sending = false;
    }
  }

  return {
    name: "notifier",
    events: {
      "stock.signals": {
        handler(this: Service, ctx: Context<SignalsEvent>) {
          for (const signal of ctx.params.signals) {
            const notification = { signal, message: describeSignal(signal) };
            this.logger.info(notification.message);
            void this.broker.broadcast("notifier.signal", notification satisfies SignalNotification);
            if (config.notifierWebhookUrl) {
              queue.push(notification);
              if (queue.length > MAX_PENDING_WEBHOOKS) {
                queue.shift();
                dropped += 1;
                if (dropped % 100 === 1)
                  this.logger.warn(`webhook is behind: ${dropped} notification(s) dropped so far`);
              }
            }
          }
          void deliver(this.logger);
        },
      },
    },
  };
}
