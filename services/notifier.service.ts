import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Signal } from "../domain/symbol-actor";
import type { ServiceDeps, SignalNotification, SignalsEvent } from "./contracts";
import { serviceSchema } from "./service-schema";

export function describeSignal(s: Signal): string {
  const zone = s.side === "buy" ? "oversold" : "overbought";
  return `${s.side.toUpperCase()} ${s.symbol} at ${s.price.toFixed(2)}: RSI ${s.rsi.toFixed(1)} entered the ${zone} zone (tick ${s.seq}, ${new Date(s.timestamp * 1000).toISOString()})`;
}

/** Webhook deliveries waiting; past this, the oldest are dropped (and counted) rather than growing memory. */
const MAX_PENDING_WEBHOOKS = 1000;

/** What the notifier holds between signal events: the webhook's queue. */
interface NotifierState {
  queue: SignalNotification[];
  /** Whether a delivery loop is under way (one at a time, in order). */
  sending: boolean;
  /** Notifications dropped from a full queue, in all. */
  dropped: number;
}

type NotifierMethods = {
  notify(signal: Signal): void;
  enqueue(notification: SignalNotification): void;
  deliver(): Promise<void>;
  post(url: string, batch: SignalNotification[]): Promise<void>;
};

type NotifierFields = { deps: Pick<ServiceDeps, "config">; state: NotifierState };
type NotifierService = Service & NotifierMethods & NotifierFields;

/**
 * Turns signal events into notifications: a log line, a push to every gateway's WebSocket
 * clients, and an optional webhook. `stock.signals` is emitted (balanced), so each signal is
 * notified by exactly one notifier node however many run.
 */
export default function createNotifierService(deps: Pick<ServiceDeps, "config">): ServiceSchema {
  return serviceSchema<ServiceSettingSchema, NotifierMethods, NotifierFields>({
    name: "notifier",
    events: {
      "stock.signals": {
        handler(ctx: Context<SignalsEvent>) {
          for (const signal of ctx.params.signals) this.notify(signal);
          void this.deliver();
        },
      },
    },
    methods,
    created() {
      this.deps = deps;
      this.state = { queue: [], sending: false, dropped: 0 };
    },
  });
}

const methods = {
  notify(signal) {
    const notification = { signal, message: describeSignal(signal) };
    this.logger.info(notification.message);
    void this.broker.broadcast("notifier.signal", notification satisfies SignalNotification);
    if (this.deps.config.notifierWebhookUrl) this.enqueue(notification);
  },

  enqueue(notification) {
    const { state } = this;
    state.queue.push(notification);
    if (state.queue.length > MAX_PENDING_WEBHOOKS) {
      state.queue.shift();
      state.dropped += 1;
      if (state.dropped % 100 === 1)
        this.logger.warn(`webhook is behind: ${state.dropped} notification(s) dropped so far`);
    }
  },

  /** Sends the queue to the webhook, 100 at a time, until it is empty. */
  async deliver() {
    const { state } = this;
    const url = this.deps.config.notifierWebhookUrl;
    if (state.sending || !url) return;
    state.sending = true;
    try {
      while (state.queue.length > 0) await this.post(url, state.queue.splice(0, 100));
    } finally {
      state.sending = false;
    }
  },

  /** One webhook call; a failure is logged and the batch is not retried. */
  async post(url, batch) {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ notifications: batch }),
        signal: AbortSignal.timeout(5000),
      });
      if (!res.ok)
        this.logger.warn(`webhook answered ${res.status}; ${batch.length} notification(s) not delivered`);
    } catch (err) {
      this.logger.warn(
        `webhook failed: ${(err as Error).message}; ${batch.length} notification(s) not delivered`,
      );
    }
  },
} satisfies NotifierMethods & ThisType<NotifierService>;
