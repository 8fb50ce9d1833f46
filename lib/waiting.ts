import { setTimeout as sleep } from "node:timers/promises";
import { isRetriable } from "../domain/errors";
import type { Logger } from "./logger";

/** Capped exponential backoff: the wait after `current`, doubled, at most `max`. */
export function nextBackoff(current: number, max: number): number {
  return Math.max(1, Math.min(current * 2, max));
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function reasonOf(err: unknown): string {
  return (err as Error)?.message || String(err);
}

/**
 * For client libraries that log every failed reconnection (kafkajs, ioredis): returns true when a
 * line should be passed on, i.e. the same line was not passed on within `intervalMs`.
 */
export function repeatFilter(intervalMs: number, now: () => number = Date.now): (line: string) => boolean {
  const last = new Map<string, number>();
  return line => {
    const t = now();
    const previous = last.get(line);
    if (previous !== undefined && t - previous < intervalMs) return false;
    if (last.size > 1000) last.clear();
    last.set(line, t);
    return true;
  };
}

/** How a readiness check of an optional dependency (the snapshot cache) starts when it fails. */
export const DEGRADED = "degraded: ";

/** Whether readiness checks let the node take traffic: every one "ok" or degraded. */
export function isReady(checks: Record<string, string>): boolean {
  return Object.values(checks).every(v => v === "ok" || v.startsWith(DEGRADED));
}

/** What a start-up that has not failed yet reports: it is not waiting for anything known. */
export const STARTING = "starting";

/** Describes an outage for readiness and NOT_READY answers. */
export function describeOutage(s: OutageState | null): string {
  return s
    ? `waiting since ${new Date(s.since).toISOString()} (${s.attempts} failed attempt(s)): ${s.what} failed: ${s.error}`
    : STARTING;
}

/** What an outage looks like while it lasts: shown by `actors.partitions` and readiness. */
export interface OutageState {
  /** The step that keeps failing, e.g. "persist partition 3" or "connect to Kafka". */
  what: string;
  /** The last failure's message. */
  error: string;
  /** When the first failure of this outage happened (ms since the epoch). */
  since: number;
  /** Failed attempts so far. */
  attempts: number;
}

export interface OutageWords {
  /** Logged when the first attempt fails, e.g. "stalled" or "waiting". */
  failing: string;
  /** Logged on the first success after failures, e.g. "recovered". */
  recovered: string;
}

/**
 * One thing that may be failing for a while (a partition's step, a service's start-up), logging
 * only its changes of state: one line when it starts failing (what, why), one when it works again
 * (after how long, how many attempts), and none per retry, however long the outage lasts.
 */
export class Outage {
  private current: OutageState | null = null;

  constructor(
    private readonly subject: string,
    private readonly logger: Logger,
    private readonly words: OutageWords = { failing: "stalled", recovered: "recovered" },
    private readonly now: () => number = Date.now,
  ) {}

  get state(): OutageState | null {
    return this.current && { ...this.current };
  }

  /** A failed attempt. Returns true when it starts an outage (the one time it logs). */
  failed(what: string, err: unknown, retryNote = ""): boolean {
    const error = reasonOf(err);
    if (this.current) {
      this.current.attempts += 1;
      this.current.error = error;
      this.current.what = what;
      return false;
    }
    this.current = { what, error, since: this.now(), attempts: 1 };
    this.logger.warn(`${this.subject} ${this.words.failing}: ${what} failed: ${error}${retryNote}`);
    return true;
  }

  /** A successful attempt. Returns the outage it ends (and logs it), or null when there was none. */
  succeeded(): OutageState | null {
    const ended = this.current;
    if (!ended) return null;
    this.current = null;
    this.logger.info(
      `${this.subject} ${this.words.recovered} after ${seconds(this.now() - ended.since)} and ${ended.attempts} failed attempt(s) (${ended.what})`,
    );
    return ended;
  }

  /** The outage ends without a success (the node stops, the partition moved): one line, if there was one. */
  abandoned(why: string): OutageState | null {
    const ended = this.current;
    if (!ended) return null;
    this.current = null;
    this.logger.info(
      `${this.subject} stopped waiting after ${seconds(this.now() - ended.since)} and ${ended.attempts} failed attempt(s) (${why}): ${ended.what}`,
    );
    return ended;
  }
}

/** Raised by `untilAvailable` when its signal aborts the wait. */
export class WaitAborted extends Error {
  constructor(what: string) {
    super(`${what}: stopped while waiting`);
    this.name = "WaitAborted";
  }
}

export interface UntilAvailableOptions {
  outage: Outage;
  /** Ends the wait (SIGTERM, the service stops): the promise rejects with `WaitAborted`. */
  signal: AbortSignal;
  maxBackoffMs: number;
  initialBackoffMs?: number;
  /** Whether a failure is a dependency being away (wait) or something no retry can fix (rethrow). */
  retriable?: (err: unknown) => boolean;
  /** Called after every change of state, with the outage or null once `fn` succeeded. */
  onChange?: (state: OutageState | null) => void;
}

/**
 * Runs `fn` until it succeeds, waiting between failed attempts with capped exponential backoff.
 * Logs once when the wait starts and once when it ends (through `outage`). An attempt still
 * running when the signal aborts is left to settle on its own; the caller's clean-up closes
 * what it was opening.
 */
export async function untilAvailable<T>(
  what: string,
  fn: () => Promise<T>,
  options: UntilAvailableOptions,
): Promise<T> {
  const { outage, signal, maxBackoffMs } = options;
  const retriable = options.retriable ?? isRetriable;
  let delay = Math.min(options.initialBackoffMs ?? 200, maxBackoffMs);
  const aborted = new Promise<never>((_, reject) => {
    const abort = () => reject(new WaitAborted(what));
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
  });
  aborted.catch(() => undefined);
  for (;;) {
    if (signal.aborted) {
      outage.abandoned("stopping");
      throw new WaitAborted(what);
    }
    const attempt = fn();
    attempt.catch(() => undefined);
    try {
      const value = await Promise.race([attempt, aborted]);
      if (outage.succeeded()) options.onChange?.(null);
      return value;
    } catch (err) {
      if (err instanceof WaitAborted) {
        outage.abandoned("stopping");
        throw err;
      }
      if (!retriable(err)) throw err;
      outage.failed(what, err, `; retrying with backoff up to ${seconds(maxBackoffMs)}`);
      options.onChange?.(outage.state);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        // Aborted during the pause: the loop's check above ends the wait.
      }
      delay = nextBackoff(delay, maxBackoffMs);
    }
  }
}
