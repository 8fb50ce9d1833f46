import { createHash } from "node:crypto";
import type { PriceTick } from "../domain/messages";
import { fetchTickCount, sleep } from "./api";
import { describeOutcome, type GatewayClient, type HttpOutcome } from "./client";
import type { DailyBar } from "./csv";
import { Pacer, scheduleOffsets, type Pacing } from "./pacing";
import { recordResolved, saveState, type RejectedRow, type ReplayState } from "./state";

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

/** What to do with one answer of `POST /ingest` for a request of `length` rows. */
export type Verdict =
  | { kind: "accepted" }
  /** 400: nothing was produced; `rows` maps request indexes to the reasons the gateway gave. */
  | { kind: "invalid"; rows: Map<number, string>; message: string }
  /** 413: nothing was produced; the request must be smaller. */
  | { kind: "too-large"; message: string }
  /** `uncertain`: the gateway may have taken the request even so (a timeout, a 5xx after validation). */
  | { kind: "retry"; uncertain: boolean; afterMs: number | null; message: string }
  | { kind: "fatal"; message: string }
  | { kind: "abandoned" };

/**
 * The Idempotency-Key of a request: the file's content (its SHA-256, as in the state's name), the
 * setting that shapes the ticks, the symbol and the rows sent. The same rows of the same file always
 * go under the same key and the same bytes, so sending them again to the same app (a retry, a
 * resume, a rerun) is applied once; a request of other rows has another key. Under 120 characters
 * for a file of fewer than a billion rows, all visible ASCII (a ticker is at most 24 letters, digits,
 * `.` and `-`): within the 1 to 255 the gateway allows.
 */
export function idempotencyKey(job: ReplayJob, rows: readonly number[]): string {
  if (rows.length === 0) throw new RangeError("a request of no rows has no key");
  const { state, symbol } = job;
  const first = rows[0];
  const last = rows[rows.length - 1];
  // Rows dropped after a 400 leave gaps: the set itself, hashed, tells the request from the full range.
  const gaps =
    last - first + 1 === rows.length
      ? ""
      : `-${rows.length}-of-${createHash("sha256").update(rows.join(",")).digest("hex").slice(0, 12)}`;
  const settings = state.settings.adjusted ? "-adjusted" : "";
  return `replay-${symbol}-${state.fileHash.slice(0, 16)}${settings}-rows-${first}-${last}${gaps}`;
}

/** Network errors raised before a single byte reached the gateway: retrying them cannot double anything. */
const NOT_SENT_ERRORS = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);
/** 503 types the gateway answers without producing anything. */
const NOT_PRODUCED_503 = new Set(["NOT_READY"]);

export function classifyIngestAnswer(outcome: HttpOutcome, length: number, url: string): Verdict {
  if ("error" in outcome) {
    if (outcome.aborted) return { kind: "abandoned" };
    return {
      kind: "retry",
      uncertain: !NOT_SENT_ERRORS.has(outcome.error),
      afterMs: null,
      message: outcome.error,
    };
  }
  const { status } = outcome;
  if (status === 200) return { kind: "accepted" };
  const message = describeOutcome(outcome);
  if (status === 400) return { kind: "invalid", rows: rejectedRows(outcome.body, length), message };
  if (status === 413) return { kind: "too-large", message };
  if (status === 429) {
    const afterMs = outcome.retryAfterSeconds === null ? null : outcome.retryAfterSeconds * 1000;
    return { kind: "retry", uncertain: false, afterMs, message };
  }
  if (status >= 500) {
    const uncertain = !(status === 503 && NOT_PRODUCED_503.has(bodyType(outcome.body) ?? ""));
    return { kind: "retry", uncertain, afterMs: null, message };
  }
  if (status === 401) {
    return {
      kind: "fatal",
      message: `${message}: the gateway wants a bearer token (INGEST_TOKEN is set); pass the right one with --token`,
    };
  }
  if (status === 404 || status === 405) {
    return {
      kind: "fatal",
      message: `${message} from POST ${url}: is --url the gateway's base URL (like http://localhost:5000)?`,
    };
  }
  return { kind: "fatal", message };
}

function bodyType(body: string): string | undefined {
  try {
    const type = (JSON.parse(body) as { type?: unknown }).type;
    return typeof type === "string" ? type : undefined;
  } catch {
    return undefined;
  }
}

/** The gateway's `issues: [{index, path, message}]`, grouped by index: `high: must not be below ...`. */
export function rejectedRows(body: string, length: number): Map<number, string> {
  const rows = new Map<number, string>();
  let issues: unknown;
  try {
    issues = (JSON.parse(body) as { issues?: unknown }).issues;
  } catch {
    return rows;
  }
  if (!Array.isArray(issues)) return rows;
  for (const issue of issues as { index?: unknown; path?: unknown; message?: unknown }[]) {
    const index = issue?.index;
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= length) continue;
    const text = `${typeof issue.path === "string" ? `${issue.path}: ` : ""}${String(issue.message ?? "invalid")}`;
    const before = rows.get(index);
    rows.set(index, before === undefined ? text : `${before}; ${text}`);
  }
  return rows;
}

class ReplayFailure extends Error {
  override readonly name = "ReplayFailure";
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

interface Context {
  halt: AbortSignal;
  fail(message: string): void;
  slots: Slots;
  save(job: ReplayJob): void;
  progress(): void;
  now(): number;
  backoffMs(attempt: number): number;
}

type Delivery =
  | { kind: "resolved" }
  | { kind: "shrink"; size: number; tooLarge: boolean }
  | { kind: "stopped" }
  | { kind: "abandoned" };

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

/**
 * Sends rows [start, end) until each is accepted or rejected. A 400 names the bad rows (nothing was
 * produced): they are recorded and the others sent again at once, in order, until the gateway takes
 * the rest. The state moves only once the whole range is resolved.
 */
async function deliver(
  job: ReplayJob,
  start: number,
  end: number,
  o: ReplayOptions,
  ctx: Context,
): Promise<Delivery> {
  const { state, symbol } = job;
  let pending: number[] = [];
  for (let i = start; i < end; i++) pending.push(i);
  const rejected: RejectedRow[] = [];
  let attempt = 0;
  /** The last failure left it open whether the gateway took `pending`. */
  let uncertain = false;
  let resentAfterUncertain = false;
  const lines = (rows: readonly number[]) =>
    rows.length === 1
      ? `line ${job.bars[rows[0]].line}`
      : `lines ${job.bars[rows[0]].line}-${job.bars[rows[rows.length - 1]].line}`;

  const resolve = (): Delivery => {
    rejected.sort((a, b) => a.line - b.line);
    if (resentAfterUncertain && pending.length > 0) {
      state.uncertainRetries.push({
        firstLine: job.bars[pending[0]].line,
        lastLine: job.bars[pending[pending.length - 1]].line,
      });
    }
    recordResolved(state, { count: end - start, rejected, lastLine: job.bars[end - 1].line });
    state.inDoubt = null;
    ctx.save(job);
    ctx.progress();
    return { kind: "resolved" };
  };
  const markInDoubt = (reason: string) => {
    state.inDoubt = {
      start,
      end,
      rows: pending.length,
      rejected: [...rejected].sort((a, b) => a.line - b.line),
      firstLine: job.bars[start].line,
      lastLine: job.bars[end - 1].line,
      reason,
    };
    ctx.save(job);
  };

  for (;;) {
    if (uncertain) resentAfterUncertain = true;
    const body = JSON.stringify(pending.map(i => job.ticks[i]));
    const outcome = await o.client.postJson("ingest", body, o.abandon, {
      "Idempotency-Key": idempotencyKey(job, pending),
    });
    const verdict = classifyIngestAnswer(outcome, pending.length, o.client.url("ingest").href);
    switch (verdict.kind) {
      case "accepted":
        return resolve();

      case "invalid": {
        // Validation comes before produce, so earlier tries of this same set, answered or not, produced nothing.
        uncertain = false;
        resentAfterUncertain = false;
        if (verdict.rows.size === 0) {
          // A 400 that names no row: find the culprit by halving, down to a request of one row.
          if (pending.length > 1)
            return { kind: "shrink", size: Math.ceil(pending.length / 2), tooLarge: false };
          verdict.rows.set(0, verdict.message);
        }
        for (const [index, reason] of verdict.rows)
          rejected.push({ line: job.bars[pending[index]].line, reason });
        pending = pending.filter((_, index) => !verdict.rows.has(index));
        if (pending.length === 0) return resolve();
        continue;
      }

      case "too-large":
        if (pending.length > 1) {
          o.log(`${symbol}: ${verdict.message}; sending ${Math.ceil(pending.length / 2)} rows per request`);
          return { kind: "shrink", size: Math.ceil(pending.length / 2), tooLarge: true };
        }
        throw new ReplayFailure(`${symbol} ${lines(pending)}: ${verdict.message}, even for a single row`);

      case "fatal":
        if (uncertain) markInDoubt(verdict.message);
        throw new ReplayFailure(`${symbol} ${lines(pending)}: ${verdict.message}`);

      case "abandoned":
        markInDoubt("the request was abandoned (Ctrl-C twice) before the gateway answered");
        return { kind: "abandoned" };

      case "retry": {
        uncertain = uncertain || verdict.uncertain;
        attempt++;
        if (attempt > o.retries) {
          if (uncertain) markInDoubt(verdict.message);
          throw new ReplayFailure(
            `${symbol} ${lines(pending)}: gave up after ${attempt} attempts; the last answer: ${verdict.message}`,
          );
        }
        const waitMs = verdict.afterMs ?? ctx.backoffMs(attempt);
        o.log(
          `${symbol} ${lines(pending)}: ${verdict.message}; retry ${attempt} of ${o.retries} in ${(waitMs / 1000).toFixed(1)} s` +
            (verdict.uncertain
              ? " (the gateway may have taken them: they go again under the same Idempotency-Key, applied once)"
              : ""),
        );
        await sleep(waitMs, ctx.halt);
        if (ctx.halt.aborted) {
          if (uncertain) markInDoubt(verdict.message);
          return o.abandon.aborted ? { kind: "abandoned" } : { kind: "stopped" };
        }
        continue;
      }
    }
  }
}

/**
 * A previous run left a request in doubt. If the app's tick count was known before the replay
 * (the baseline), it tells: baseline + accepted means the rows never arrived, plus the request's
 * rows means they did. Either answer settles it; anything else (another feed of the symbol, the
 * app still catching up past the timeout) leaves only resending them, under the request's own key.
 * Returns the end of the rows to send again as one request, null when the app has them.
 */
async function reconcile(job: ReplayJob, o: ReplayOptions, ctx: Context): Promise<number | null> {
  const { state, symbol } = job;
  const doubt = state.inDoubt;
  if (doubt === null) return null;
  const lines = `lines ${doubt.firstLine}-${doubt.lastLine}`;
  const resend = (why: string) => {
    o.log(
      `${symbol} ${lines}: ${why}; sending them again under the same Idempotency-Key (applied once if they did arrive)`,
    );
    state.uncertainRetries.push({ firstLine: doubt.firstLine, lastLine: doubt.lastLine });
    state.inDoubt = null;
    ctx.save(job);
    return doubt.end;
  };
  if (state.baselineTicks === null) {
    return resend(
      "a previous run could not tell whether the gateway took them, and the app's count before the replay is unknown",
    );
  }
  const without = state.baselineTicks + state.accepted;
  const withThem = without + doubt.rows;
  const timeoutMs = o.reconcileTimeoutMs ?? 15_000;
  const deadline = ctx.now() + timeoutMs;
  let steadySince: number | null = null;
  let count: number | null = null;
  o.log(
    `${symbol} ${lines}: a previous run left them in doubt (${doubt.reason}); asking the app whether they arrived`,
  );
  while (!ctx.halt.aborted) {
    try {
      count = await fetchTickCount(o.client, symbol, o.abandon);
    } catch {
      count = null;
    }
    if (count === withThem) {
      recordResolved(state, {
        count: doubt.end - doubt.start,
        rejected: doubt.rejected,
        lastLine: doubt.lastLine,
      });
      state.inDoubt = null;
      ctx.save(job);
      ctx.progress();
      o.log(`${symbol} ${lines}: the app has them (${count} ticks); not sending them again`);
      return null;
    }
    // Accepted rows can still be on their way to the actor: only a count that stays put means "never arrived".
    if (count === without) {
      steadySince ??= ctx.now();
      if (ctx.now() - steadySince >= 2000) {
        state.inDoubt = null;
        ctx.save(job);
        o.log(`${symbol} ${lines}: the app does not have them (${count} ticks); sending them again`);
        return doubt.end;
      }
    } else {
      steadySince = null;
    }
    if (ctx.now() > deadline) {
      return resend(
        count === null
          ? `cannot read the app's tick count of ${symbol}`
          : `the app has ${count} ticks of ${symbol}, expected ${without} (without them) or ${withThem} (with them)`,
      );
    }
    await sleep(250, ctx.halt);
  }
  return null;
}
