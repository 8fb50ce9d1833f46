import type { PriceTick } from "../domain/messages";
import { sleep } from "./api";
import type { GatewayClient } from "./client";
import type { DailyBar } from "./csv";
import { type Context, deliver, type Delivery, ReplayFailure } from "./deliver";
import { Pacer, scheduleOffsets, type Pacing } from "./pacing";
import { reconcile } from "./reconcile";
import { saveState, type ReplayState } from "./state";

/**
 * The replay engine: sends each file's rows to `POST /ingest` in order, as JSON arrays.
 *
 * Order per symbol is the point of the exercise (RSI depends on it), and the gateway promises it
 * only within one request: two requests in flight for one symbol may reach Kafka in either order.
 * So a symbol has at most one request in flight, and the next batch of that symbol leaves only
 * once the previous one was acknowledged. Several files (several symbols) do overlap, up to
 * `concurrency` requests.
 *
 * Every row ends up accepted (200) or rejected (a 400 naming it), and both are recorded with the
 * row's line in the state file before the symbol's next request leaves, so a resume neither skips
 * nor repeats a row. A request whose fate is unknown (no answer, a 5xx) is sent again under the
 * same Idempotency-Key (built from the file and the rows, see `idempotencyKey`), which the gateway
 * applies once; such resends are still listed, and a resume after an abandoned request first asks
 * the app whether its rows arrived.
 */

export interface ReplayJob {
  symbol: string;
  /** The file as the user named it, for messages. */
  file: string;
  /** Rows that could be read, oldest first; `ticks[i]` is `bars[i]` as sent. */
  bars: readonly DailyBar[];
  ticks: readonly PriceTick[];
  state: ReplayState;
  statePath: string;
}

export interface ReplayOptions {
  client: GatewayClient;
  pacing: Pacing;
  /** Most rows in one request. */
  batchSize: number;
  /** Most requests in flight over all symbols (one per symbol at most). */
  concurrency: number;
  /** Further attempts after a retryable failure before the replay stops. */
  retries: number;
  /** Aborted: no new request; the ones in flight are finished, then each job stops. */
  stop: AbortSignal;
  /** Aborted: requests in flight are abandoned too (their rows are marked in doubt). */
  abandon: AbortSignal;
  log: (line: string) => void;
  /** Called after every change of a job's position. */
  onProgress?: () => void;
  /** Persists a job's state; default: write it to `job.statePath`. */
  save?: (job: ReplayJob) => void;
  /** Wait before retry `attempt` (1, 2, ...) when the gateway did not say (Retry-After). */
  backoffMs?: (attempt: number) => number;
  /** How long a resume waits for the app to show whether an abandoned request arrived. */
  reconcileTimeoutMs?: number;
  now?: () => number;
}

export type JobStatus = "completed" | "stopped" | "abandoned" | "failed";

export interface JobResult {
  job: ReplayJob;
  status: JobStatus;
  /** Why the job failed, or why the whole replay stopped because of it. */
  error?: string;
  /** Rows accepted by this run (not by earlier runs of the same state). */
  acceptedThisRun: number;
}

/** The first retry waits 0.5 s, then doubling, at most 10 s: 8 retries span about 40 s of outage. */
export function defaultBackoffMs(attempt: number): number {
  return Math.min(10_000, 500 * 2 ** (attempt - 1));
}

/** A counting semaphore whose waits end when `signal` aborts (acquire then returns false). */
class Slots {
  private readonly waiters: (() => void)[] = [];

  constructor(private free: number) {}

  async acquire(signal: AbortSignal): Promise<boolean> {
    while (this.free === 0) {
      if (signal.aborted) return false;
      await new Promise<void>(resolve => {
        this.waiters.push(resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
    if (signal.aborted) return false;
    this.free--;
    return true;
  }

  release(): void {
    this.free++;
    this.waiters.shift()?.();
  }
}

/** Runs every job to completion, or until stopped, abandoned or a job fails (which stops the others). */
export async function runReplay(jobs: readonly ReplayJob[], options: ReplayOptions): Promise<JobResult[]> {
  const halt = new AbortController();
  const onStop = () => halt.abort();
  options.stop.addEventListener("abort", onStop, { once: true });
  options.abandon.addEventListener("abort", onStop, { once: true });
  if (options.stop.aborted || options.abandon.aborted) halt.abort();
  const ctx: Context = {
    halt: halt.signal,
    fail: () => halt.abort(),
    slots: new Slots(Math.max(1, options.concurrency)),
    save: options.save ?? (job => saveState(job.statePath, job.state)),
    progress: () => options.onProgress?.(),
    now: options.now ?? (() => performance.now()),
    backoffMs: options.backoffMs ?? defaultBackoffMs,
  };
  try {
    return await Promise.all(jobs.map(job => runJob(job, options, ctx)));
  } finally {
    options.stop.removeEventListener("abort", onStop);
    options.abandon.removeEventListener("abort", onStop);
  }
}

async function runJob(job: ReplayJob, o: ReplayOptions, ctx: Context): Promise<JobResult> {
  const { state } = job;
  const acceptedBefore = state.accepted;
  const result = (status: JobStatus, error?: string): JobResult => ({
    job,
    status,
    error,
    acceptedThisRun: state.accepted - acceptedBefore,
  });
  const halted = (): JobResult => result(o.abandon.aborted ? "abandoned" : "stopped");
  try {
    // Rows of a request in doubt go again as that same request: same rows, same key.
    let resendEnd: number | null = null;
    if (state.inDoubt !== null) {
      resendEnd = await reconcile(job, o, ctx);
      if (state.inDoubt !== null) return halted();
    }
    const offsets = scheduleOffsets(
      job.bars.map(b => b.timestamp),
      o.pacing,
    );
    const pacer = new Pacer(offsets, Math.min(state.position, Math.max(0, offsets.length - 1)), ctx.now());
    let size = o.batchSize;
    let ceiling = o.batchSize;
    while (state.position < job.ticks.length) {
      if (ctx.halt.aborted) return halted();
      const wait = pacer.waitMs(state.position, ctx.now());
      if (wait > 0) {
        await sleep(Math.min(wait, 2 ** 31 - 1), ctx.halt);
        continue;
      }
      if (!(await ctx.slots.acquire(ctx.halt))) continue;
      let delivery: Delivery;
      try {
        const n =
          resendEnd === null ? pacer.take(state.position, ctx.now(), size) : resendEnd - state.position;
        resendEnd = null;
        delivery = await deliver(job, state.position, state.position + n, o, ctx);
      } finally {
        ctx.slots.release();
      }
      if (delivery.kind === "resolved") {
        size = Math.min(ceiling, size * 2);
      } else if (delivery.kind === "shrink") {
        size = delivery.size;
        if (delivery.tooLarge) ceiling = delivery.size;
      } else {
        return halted();
      }
    }
    if (!state.completed) {
      state.completed = true;
      ctx.save(job);
    }
    return result("completed");
  } catch (err) {
    if (!(err instanceof ReplayFailure)) throw err;
    ctx.fail(err.message);
    return result("failed", err.message);
  }
}
