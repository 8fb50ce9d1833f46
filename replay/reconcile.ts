import { fetchTickCount, sleep } from "./api";
import type { Context } from "./deliver";
import type { ReplayJob, ReplayOptions } from "./run";
import { recordResolved } from "./state";

/**
 * A previous run left a request in doubt. If the app's tick count was known before the replay
 * (the baseline), it tells: baseline + accepted means the rows never arrived, plus the request's
 * rows means they did. Either answer settles it; anything else (another feed of the symbol, the
 * app still catching up past the timeout) leaves only resending them, under the request's own key.
 * Returns the end of the rows to send again as one request, null when the app has them.
 */
export async function reconcile(job: ReplayJob, o: ReplayOptions, ctx: Context): Promise<number | null> {
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
