import type { SqlClient } from "../../adapters/sql/types";
import type { Logger } from "../../lib/logger";
import { DeliveryStore, type StoredSignal, type SubscriberState } from "./delivery-store";
import { SubscriberWorker, type NotifierObserver, type Subscriber } from "./subscriber-worker";
import { signalEvent, WebhookSender } from "./webhook-sender";
import { WebhookSigner } from "./webhook-signature";

export type { NotifierObserver, Subscriber } from "./subscriber-worker";

export interface SignalNotifierOptions {
  db: SqlClient;
  subscribers: Subscriber[];
  /** The Standard Webhooks secret every delivery is signed with (`whsec_...`). */
  secret: string;
  /** This node's name, the owner of the leases it takes. */
  owner: string;
  retryMs: number;
  timeoutMs: number;
  logger: Logger;
  observer?: NotifierObserver;
  describe(signal: StoredSignal): string;
}

/** A subscriber's state as `GET /api/notifications` shows it. */
export interface SubscriberOverview {
  name: string;
  url: string;
  cursor: { tx: string; id: number };
  /** Stored signals after its cursor. */
  lag: number;
  /** When the oldest of them was stored (ISO 8601); null when none waits. */
  oldestUndelivered: string | null;
  delivered: number;
  lastDelivered: string | null;
  lastError: string | null;
  /** When the signal it is retrying is tried next (ISO 8601); null when nothing is retried. */
  nextAttempt: string | null;
  attempts: number;
  disabled: { at: string; reason: string | null } | null;
  deadLetters: number;
}

/** How often the age of each subscriber's oldest undelivered signal is reported. */
const BACKLOG_EVERY_MS = 5000;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * Delivers every stored signal to every configured webhook subscriber, at least once, signed
 * per Standard Webhooks, from the record: the signals table is the outbox (docs/architecture.md,
 * "Notifications"). One worker per subscriber; `wake` is the `stock.signals` event, which only
 * says "look now": a missed wake-up costs at most a second.
 */
export class SignalNotifier {
  private readonly store: DeliveryStore;
  private readonly sender: WebhookSender;
  private readonly workers: SubscriberWorker[];
  private backlogTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: SignalNotifierOptions) {
    this.store = new DeliveryStore(options.db);
    this.sender = new WebhookSender(new WebhookSigner(options.secret), options.timeoutMs);
    this.workers = options.subscribers.map(
      s =>
        new SubscriberWorker(s, {
          store: this.store,
          sender: this.sender,
          owner: options.owner,
          retryMs: options.retryMs,
          logger: options.logger,
          observer: options.observer,
          describe: options.describe,
        }),
    );
  }

  async start(): Promise<void> {
    for (const s of this.options.subscribers) await this.store.register(s.name, s.url, s.from);
    for (const w of this.workers) w.start();
    this.backlogTimer = setInterval(() => void this.reportBacklog(), BACKLOG_EVERY_MS);
    this.backlogTimer.unref();
  }

  private async reportBacklog(): Promise<void> {
    const backlog = this.options.observer?.backlog;
    if (!backlog) return;
    const now = Date.now();
    for (const s of await this.overview().catch(() => []))
      backlog(s.name, s.oldestUndelivered ? Math.max(0, (now - Date.parse(s.oldestUndelivered)) / 1000) : 0);
  }

  wake(): void {
    for (const w of this.workers) w.wake();
  }

  async stop(): Promise<void> {
    if (this.backlogTimer) clearInterval(this.backlogTimer);
    await Promise.all(this.workers.map(w => w.stop()));
  }

  async overview(): Promise<SubscriberOverview[]> {
    const configured = new Set(this.options.subscribers.map(s => s.name));
    return (await this.store.overview()).filter(s => configured.has(s.name)).map(overviewOf);
  }

  /** Lets a subscriber disabled by a 410 receive again. */
  enable(subscriber: string): Promise<boolean> {
    return this.store.enable(subscriber);
  }

  /**
   * Sends the subscriber's dead letters again, oldest first, each once, under its own
   * `webhook-id`: those answered 2xx leave the dead letters, the others stay.
   */
  async redeliver(subscriber: string): Promise<{ redelivered: number; failed: number }> {
    const target = this.options.subscribers.find(s => s.name === subscriber);
    if (!target) throw new RangeError(`no subscriber named ${subscriber} in the configuration`);
    let redelivered = 0;
    let failed = 0;
    for (const letter of await this.store.deadLetters(subscriber, 10000)) {
      const outcome = await this.sender.send(target.url, signalEvent(letter, this.options.describe(letter)));
      if (outcome.kind !== "delivered") {
        failed += 1;
        continue;
      }
      await this.store.redelivered(subscriber, letter.id);
      redelivered += 1;
    }
    return { redelivered, failed };
  }
}

function overviewOf(
  s: SubscriberState & { lag: number; oldestUndeliveredAt: number | null; dead: number },
): SubscriberOverview {
  return {
    name: s.name,
    url: s.url,
    cursor: s.cursor,
    lag: s.lag,
    oldestUndelivered: iso(s.oldestUndeliveredAt),
    delivered: s.delivered,
    lastDelivered: iso(s.lastDeliveredAt),
    lastError: s.lastError,
    nextAttempt: iso(s.nextAttemptAt),
    attempts: s.attempts,
    disabled:
      s.disabledAt === null ? null : { at: new Date(s.disabledAt).toISOString(), reason: s.disabledReason },
    deadLetters: s.dead,
  };
}
