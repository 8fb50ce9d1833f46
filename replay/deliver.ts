import { sleep } from "./api";
import { classifyIngestAnswer, idempotencyKey, type Verdict } from "./ingest-protocol";
import type { ReplayJob, ReplayOptions } from "./run";
import { recordResolved, type RejectedRow } from "./state";

/** A failure that ends the whole replay: every job stops. */
export class ReplayFailure extends Error {
  override readonly name = "ReplayFailure";
}

/** What every job of one replay shares. */
export interface Context {
  halt: AbortSignal;
  fail(message: string): void;
  slots: { acquire(signal: AbortSignal): Promise<boolean>; release(): void };
  save(job: ReplayJob): void;
  progress(): void;
  now(): number;
  backoffMs(attempt: number): number;
}

export type Delivery =
  | { kind: "resolved" }
  | { kind: "shrink"; size: number; tooLarge: boolean }
  | { kind: "stopped" }
  | { kind: "abandoned" };

/**
 * Sends rows [start, end) until each is accepted or rejected. A 400 names the bad rows (nothing was
 * produced): they are recorded and the others sent again at once, in order, until the gateway takes
 * the rest. The state moves only once the whole range is resolved.
 */
export function deliver(
  job: ReplayJob,
  start: number,
  end: number,
  o: ReplayOptions,
  ctx: Context,
): Promise<Delivery> {
  return new RangeDelivery(job, start, end, o, ctx).run();
}

/** One range of rows on its way: what is still to send, what was rejected, how sure we are. */
class RangeDelivery {
  private pending: number[] = [];
  private readonly rejected: RejectedRow[] = [];
  private attempt = 0;
  /** The last failure left it open whether the gateway took `pending`. */
  private uncertain = false;
  private resentAfterUncertain = false;

  constructor(
    private readonly job: ReplayJob,
    private readonly start: number,
    private readonly end: number,
    private readonly o: ReplayOptions,
    private readonly ctx: Context,
  ) {
    for (let i = start; i < end; i++) this.pending.push(i);
  }

  async run(): Promise<Delivery> {
    for (;;) {
      if (this.uncertain) this.resentAfterUncertain = true;
      const verdict = await this.send();
      const delivery = await this.settle(verdict);
      if (delivery !== null) return delivery;
    }
  }

  private async send(): Promise<Verdict> {
    const { job, o, pending } = this;
    const body = JSON.stringify(pending.map(i => job.ticks[i]));
    const outcome = await o.client.postJson("ingest", body, o.abandon, {
      "Idempotency-Key": idempotencyKey(job, pending),
    });
    return classifyIngestAnswer(outcome, pending.length, o.client.url("ingest").href);
  }

  /** What the answer settles: the delivery's end, or null to send `pending` again. */
  private async settle(verdict: Verdict): Promise<Delivery | null> {
    const { symbol } = this.job;
    switch (verdict.kind) {
      case "accepted":
        return this.resolve();

      case "invalid":
        return this.dropInvalid(verdict);

      case "too-large":
        if (this.pending.length > 1) {
          const size = Math.ceil(this.pending.length / 2);
          this.o.log(`${symbol}: ${verdict.message}; sending ${size} rows per request`);
          return { kind: "shrink", size, tooLarge: true };
        }
        throw new ReplayFailure(`${symbol} ${this.lines()}: ${verdict.message}, even for a single row`);

      case "fatal":
        if (this.uncertain) this.markInDoubt(verdict.message);
        throw new ReplayFailure(`${symbol} ${this.lines()}: ${verdict.message}`);

      case "abandoned":
        this.markInDoubt("the request was abandoned (Ctrl-C twice) before the gateway answered");
        return { kind: "abandoned" };

      case "retry":
        return this.retryLater(verdict);
    }
  }

  private dropInvalid(verdict: Extract<Verdict, { kind: "invalid" }>): Delivery | null {
    // Validation comes before produce, so earlier tries of this same set, answered or not, produced nothing.
    this.uncertain = false;
    this.resentAfterUncertain = false;
    if (verdict.rows.size === 0) {
      // A 400 that names no row: find the culprit by halving, down to a request of one row.
      if (this.pending.length > 1)
        return { kind: "shrink", size: Math.ceil(this.pending.length / 2), tooLarge: false };
      verdict.rows.set(0, verdict.message);
    }
    for (const [index, reason] of verdict.rows)
      this.rejected.push({ line: this.job.bars[this.pending[index]].line, reason });
    this.pending = this.pending.filter((_, index) => !verdict.rows.has(index));
    if (this.pending.length === 0) return this.resolve();
    return null;
  }

  private async retryLater(verdict: Extract<Verdict, { kind: "retry" }>): Promise<Delivery | null> {
    const { o, ctx } = this;
    const { symbol } = this.job;
    this.uncertain = this.uncertain || verdict.uncertain;
    const attempt = ++this.attempt;
    if (attempt > o.retries) {
      if (this.uncertain) this.markInDoubt(verdict.message);
      throw new ReplayFailure(
        `${symbol} ${this.lines()}: gave up after ${attempt} attempts; the last answer: ${verdict.message}`,
      );
    }
    const waitMs = verdict.afterMs ?? ctx.backoffMs(attempt);
    o.log(
      `${symbol} ${this.lines()}: ${verdict.message}; retry ${attempt} of ${o.retries} in ${(waitMs / 1000).toFixed(1)} s` +
        (verdict.uncertain
          ? " (the gateway may have taken them: they go again under the same Idempotency-Key, applied once)"
          : ""),
    );
    await sleep(waitMs, ctx.halt);
    if (ctx.halt.aborted) {
      if (this.uncertain) this.markInDoubt(verdict.message);
      return o.abandon.aborted ? { kind: "abandoned" } : { kind: "stopped" };
    }
    return null;
  }

  private lines(): string {
    const { bars } = this.job;
    const rows = this.pending;
    return rows.length === 1
      ? `line ${bars[rows[0]].line}`
      : `lines ${bars[rows[0]].line}-${bars[rows[rows.length - 1]].line}`;
  }

  private resolve(): Delivery {
    const { job, pending, rejected, start, end, ctx } = this;
    const { state } = job;
    rejected.sort((a, b) => a.line - b.line);
    if (this.resentAfterUncertain && pending.length > 0) {
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
  }

  private markInDoubt(reason: string): void {
    const { job, start, end } = this;
    job.state.inDoubt = {
      start,
      end,
      rows: this.pending.length,
      rejected: [...this.rejected].sort((a, b) => a.line - b.line),
      firstLine: job.bars[start].line,
      lastLine: job.bars[end - 1].line,
      reason,
    };
    this.ctx.save(job);
  }
}
