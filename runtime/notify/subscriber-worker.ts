import type { SignalSide } from "../../domain/signals";
import type { Logger } from "../../lib/logger";
import type { Cursor, DeliveryStore, StoredSignal } from "./delivery-store";
import { signalEvent, type WebhookSender } from "./webhook-sender";

/** One webhook subscriber of the configuration. */
export interface Subscriber {
  name: string;
  url: string;
  /** Only signals of these symbols; all when absent. */
  symbols?: string[];
  /** Only signals of these sides; both when absent. */
  sides?: SignalSide[];
  /** Where a new subscriber starts: after the signals stored when it first appears, or at the first. */
  from: "now" | "start";
}

/** What the workers report: metrics, all optional. */
export interface NotifierObserver {
  delivered?(subscriber: string, count: number): void;
  failed?(subscriber: string): void;
  retrying?(subscriber: string, retrying: boolean): void;
  dead?(subscriber: string): void;
  /** Every few seconds: how old the oldest signal the subscriber has not received is (0: none waits). */
  backlog?(subscriber: string, oldestSeconds: number): void;
}

export interface WorkerDeps {
  store: DeliveryStore;
  sender: WebhookSender;
  /** This node's name, the owner of the leases it takes. */
  owner: string;
  /** How long a failing delivery is retried before it becomes a dead letter. */
  retryMs: number;
  logger: Logger;
  observer?: NotifierObserver;
  /** A signal's line for people (the `message` of its event). */
  describe(signal: StoredSignal): string;
}

/** How long a lease lasts; the holder renews it with every pass, well within. */
export const LEASE_SECONDS = 30;
/** How often an idle worker looks for signals whose wake-up it missed. */
const POLL_MS = 1000;
/** After a wake-up, how often it looks while the signal's transaction is not yet below the horizon. */
const WOKEN_POLL_MS = 20;
const WOKEN_FOR_MS = 500;
const BATCH = 100;
const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 10 * 60 * 1000;
const FAILURE_LOG_EVERY_MS = 60000;

/** Exponential backoff with full jitter: between half and all of 0.2 s, 0.4 s, 0.8 s, ... up to 10 min (a
 * receiver that fails now and then costs little; one that is away is asked ever less often). */
export function retryDelay(attempts: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/**
 * Delivers the stored signals to one subscriber, in delivery order, at least once: the cursor
 * moves past a signal only once the receiver answered 2xx (or the filter skips it, or it ran out
 * of retries and became a dead letter). A failed delivery is retried with backoff, and nothing
 * after it is sent meanwhile, so a symbol's signals arrive in order. 410 disables the
 * subscriber. Several nodes may run a worker for the same subscriber: the lease lets one deliver.
 */
export class SubscriberWorker {
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private wokenUntil = 0;
  private retrying = false;
  private failureLoggedAt = 0;
  private failuresUnlogged = 0;

  constructor(
    readonly subscriber: Subscriber,
    private readonly deps: WorkerDeps,
  ) {}

  start(): void {
    this.schedule(0);
  }

  /** A signal was stored (the `stock.signals` event): look at once. */
  wake(): void {
    this.wokenUntil = Date.now() + WOKEN_FOR_MS;
    if (this.busy) this.again = true;
    else this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.busy;
    await this.deps.store.release(this.subscriber.name, this.deps.owner).catch(() => undefined);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.run(), ms);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    if (this.busy || this.stopped) return;
    let next = POLL_MS;
    this.busy = this.pass().then(
      ms => void (next = ms),
      (err: unknown) =>
        this.deps.logger.warn(`notifier: ${this.subscriber.name}: ${(err as Error).message}; trying again`),
    );
    await this.busy;
    this.busy = null;
    const woken = this.again;
    this.again = false;
    this.schedule(woken ? 0 : next);
  }

  /** One pass: takes the lease and delivers what is due; returns when to look again (ms). */
  private async pass(): Promise<number> {
    const { store, owner } = this.deps;
    const state = await store.lease(this.subscriber.name, owner, LEASE_SECONDS);
    if (!state) return (LEASE_SECONDS * 1000) / 2;
    if (state.disabledAt !== null) return POLL_MS * 5;
    if (state.nextAttemptAt !== null && state.waitMs > 0) return state.waitMs;
    let cursor = state.cursor;
    for (;;) {
      const batch = await store.signalsAfter(cursor, BATCH);
      if (batch.length === 0) return Date.now() < this.wokenUntil ? WOKEN_POLL_MS : POLL_MS;
      const outcome = await this.deliverBatch(batch, cursor, state.attempts);
      if (typeof outcome === "number") return outcome;
      cursor = outcome;
    }
  }

  /**
   * Delivers `batch` in order from `cursor`; returns the cursor after it, or when to look again
   * (ms) when a delivery failed, the subscriber was disabled or the lease was lost.
   */
  private async deliverBatch(
    batch: StoredSignal[],
    from: Cursor,
    attempts: number,
  ): Promise<Cursor | number> {
    const { store, owner } = this.deps;
    const name = this.subscriber.name;
    let skipped: Cursor | null = null;
    for (const signal of batch) {
      const at: Cursor = { tx: signal.tx, id: signal.id };
      if (!this.wants(signal)) {
        skipped = at;
        continue;
      }
      if (skipped && !(await store.advance(name, owner, skipped, 0))) return POLL_MS;
      skipped = null;
      const result = await this.deliverOne(signal, at, attempts);
      if (result !== null) return result;
      attempts = 0;
    }
    if (skipped && !(await store.advance(name, owner, skipped, 0))) return POLL_MS;
    const last = batch[batch.length - 1];
    return batch.length > 0 ? { tx: last.tx, id: last.id } : from;
  }

  /** One delivery; null when the cursor moved past it, else when to look again (ms). */
  private async deliverOne(signal: StoredSignal, at: Cursor, attempts: number): Promise<number | null> {
    const { store, sender, owner, logger, observer } = this.deps;
    const name = this.subscriber.name;
    const outcome = await sender.send(this.subscriber.url, signalEvent(signal, this.deps.describe(signal)));
    if (outcome.kind === "delivered") {
      if (!(await store.advance(name, owner, at, 1))) return POLL_MS;
      observer?.delivered?.(name, 1);
      this.setRetrying(false);
      return null;
    }
    if (outcome.kind === "gone") {
      const reason = `the receiver answered 410 Gone to signal ${signal.symbol} #${signal.seq}: no more deliveries until enabled again`;
      await store.disable(name, owner, reason);
      logger.warn(`notifier: ${name}: ${reason}`);
      this.setRetrying(false);
      return POLL_MS * 5;
    }
    observer?.failed?.(name);
    const delay = retryDelay(attempts + 1);
    const failure = await store.failed(name, owner, outcome.error, delay);
    if (!failure) return POLL_MS;
    if (failure.failingFor < this.deps.retryMs) {
      this.logFailure(`delivery of ${signal.symbol} #${signal.seq} failed (${outcome.error}); retrying`);
      this.setRetrying(true);
      return delay;
    }
    await store.deadLetter(name, signal, failure.attempts, outcome.error);
    observer?.dead?.(name);
    logger.error(
      `notifier: ${name}: ${signal.symbol} #${signal.seq} not delivered after ${failure.attempts} attempts (${outcome.error}); kept as a dead letter`,
    );
    this.setRetrying(false);
    return (await store.advance(name, owner, at, 0)) ? null : POLL_MS;
  }

  /** A failed attempt, logged at most once a minute (with how many failed since), so a flaky receiver does not flood the log. */
  private logFailure(what: string): void {
    this.failuresUnlogged += 1;
    const now = Date.now();
    if (now - this.failureLoggedAt < FAILURE_LOG_EVERY_MS) return;
    const more =
      this.failuresUnlogged > 1 ? ` (${this.failuresUnlogged} failed attempts since the last line)` : "";
    this.deps.logger.warn(`notifier: ${this.subscriber.name}: ${what}${more}`);
    this.failureLoggedAt = now;
    this.failuresUnlogged = 0;
  }

  private wants(signal: StoredSignal): boolean {
    const { symbols, sides } = this.subscriber;
    return (!symbols || symbols.includes(signal.symbol)) && (!sides || sides.includes(signal.side));
  }

  private setRetrying(retrying: boolean): void {
    if (retrying === this.retrying) return;
    this.retrying = retrying;
    this.deps.observer?.retrying?.(this.subscriber.name, retrying);
  }
}
