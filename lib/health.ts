import type { Logger } from "./logger";
import { Outage, type OutageState } from "./waiting";

export interface DependencyHealthOptions {
  /** Names the dependency in the log lines and in `down.what`, e.g. "reach Postgres". */
  what: string;
  /** Subject of the log lines, e.g. "query": "query degraded: reach Postgres failed: ...". */
  subject: string;
  logger: Logger;
  /** A cheap request that succeeds while the dependency answers (SELECT 1). */
  probe: () => Promise<unknown>;
  /** Between probes while it answers (default 5 s). */
  upIntervalMs?: number;
  /** Between probes while it does not (default 1 s): how soon it is seen back. */
  downIntervalMs?: number;
  /** A probe that takes longer failed (default 2 s: a silently dead path never answers). */
  timeoutMs?: number;
  /** Appended to the line logged when the outage starts, e.g. "; the REST API answers 503 meanwhile". */
  note?: string;
  now?: () => number;
}

/**
 * The last known state of one dependency, kept current in the background, so that callers can ask
 * it on every request for free instead of probing: a probe every `upIntervalMs` while the
 * dependency answers, every `downIntervalMs` while it does not, and a caller whose own request
 * failed with an outage marks it down at once (`failed`). One line is logged when it goes down and
 * one when it is back (through `Outage`), none per probe.
 */
export class DependencyHealth {
  private readonly outage: Outage;
  private timer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;
  private running = false;
  private readonly upIntervalMs: number;
  private readonly downIntervalMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly options: DependencyHealthOptions) {
    this.outage = new Outage(
      options.subject,
      options.logger,
      { failing: "degraded", recovered: "recovered" },
      options.now,
    );
    this.upIntervalMs = options.upIntervalMs ?? 5000;
    this.downIntervalMs = options.downIntervalMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  /** The outage while the dependency is known to be away; null while it answers. */
  get down(): OutageState | null {
    return this.outage.state;
  }

  /** Starts the background probes (the first one at once). */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.check();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A caller's request failed because the dependency is away: down now, probed again soon. */
  failed(err: unknown): void {
    this.outage.failed(this.options.what, err, this.options.note ?? "");
    this.schedule();
  }

  /** A caller's request succeeded: the dependency answers. */
  succeeded(): void {
    this.outage.succeeded();
  }

  /** Probes now (one probe at a time); resolves once the state reflects the answer. */
  check(): Promise<void> {
    if (!this.probing) {
      this.probing = this.probeOnce().finally(() => {
        this.probing = null;
        this.schedule();
      });
    }
    return this.probing;
  }

  private async probeOnce(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.options.probe(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.timeoutMs} ms`)),
            this.timeoutMs,
          );
        }),
      ]);
      this.outage.succeeded();
    } catch (err) {
      this.outage.failed(this.options.what, err, this.options.note ?? "");
    } finally {
      clearTimeout(timer);
    }
  }

  private schedule(): void {
    if (!this.running || this.probing) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.timer = null;
        void this.check();
      },
      this.down ? this.downIntervalMs : this.upIntervalMs,
    );
    this.timer.unref();
  }
}
