import { parseMessage } from "../domain/messages";
import { fetchHoldings, sleep, type Holdings } from "./api";
import type { GatewayClient } from "./client";
import { formatCount } from "./progress";
import type { ReplayJob } from "./run";
import { recordResolved, type RejectedRow } from "./state";

/**
 * The saved state says what a replay sent, per file; the target (the app at --url) says what it
 * holds. The two part when the state was made against another app, or the app lost its data (a
 * fresh DATA_DIR, a new database): trusted blindly, such a state sends nothing and then waits for
 * ticks that never come. So before sending, the replay asks the app (`GET /api/aggregates/:symbol`),
 * and the app decides.
 */

/** What asking the app found. */
export type TargetCheck =
  /** The app holds at least what the state says it was sent, or nothing was sent to it yet. */
  | { kind: "agrees" }
  /** The app held less: the state now starts where the app's rows of this file end, or at the start. */
  | { kind: "rewound" }
  /** The app could not be asked. */
  | { kind: "unknown"; reason: string };

export interface TargetOptions {
  client: GatewayClient;
  log: (line: string) => void;
  /** How long a count must stay put to be final: acknowledged ticks can still be on their way to the actor. */
  settleMs?: number;
  /** The longest wait for that. */
  timeoutMs?: number;
  intervalMs?: number;
  now?: () => number;
}

type Reading = { holdings: Holdings; settled: boolean } | { error: string };

/** Reads the app's holdings until `enough` says so or the count stays put for `settleMs`. */
async function settledHoldings(
  symbol: string,
  enough: (h: Holdings) => boolean,
  o: TargetOptions,
): Promise<Reading> {
  const now = o.now ?? (() => performance.now());
  const settleMs = o.settleMs ?? 2000;
  const deadline = now() + (o.timeoutMs ?? 15_000);
  let last: Holdings | null = null;
  let steadySince = now();
  for (;;) {
    let held: Holdings;
    try {
      held = await fetchHoldings(o.client, symbol);
    } catch (err) {
      return { error: (err as Error).message };
    }
    if (enough(held)) return { holdings: held, settled: true };
    if (last === null || held.ticks !== last.ticks) steadySince = now();
    last = held;
    if (now() - steadySince >= settleMs) return { holdings: held, settled: true };
    if (now() >= deadline) return { holdings: held, settled: false };
    await sleep(o.intervalMs ?? 250);
  }
}

/** Why the gateway would refuse each row (the same schema it validates with), null for a row it takes. */
export function localRejections(job: ReplayJob): (string | null)[] {
  return job.ticks.map(tick => {
    const parsed = parseMessage(tick);
    return parsed.ok ? null : parsed.issues.map(i => `${i.path}: ${i.message}`).join("; ");
  });
}

const sameTime = (a: number, b: number) => Math.abs(a - b) < 0.0005;
const samePrice = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

/**
 * How many leading rows of the file the app holds, when its ticks of the symbol are exactly those:
 * its first tick is the first row the gateway takes, its last one a row of the file, its count the
 * rows taken up to there, and its lowest and highest price theirs (so another series of the same
 * dates, such as --adjusted, does not pass). Null when they do not line up.
 */
export function heldPrefix(
  held: Holdings,
  job: ReplayJob,
  rejections: readonly (string | null)[],
): number | null {
  if (held.ticks === 0) return 0;
  const { firstTimestamp, lastTimestamp } = held;
  if (firstTimestamp === null || lastTimestamp === null) return null;
  const first = rejections.indexOf(null);
  if (first < 0 || !sameTime(job.ticks[first].timestamp, firstTimestamp)) return null;
  const last = job.ticks.findIndex(t => sameTime(t.timestamp, lastTimestamp));
  if (last < 0 || rejections[last] !== null) return null;
  const taken = job.ticks.slice(0, last + 1).filter((_, i) => rejections[i] === null);
  if (taken.length !== held.ticks) return null;
  if (held.lowestPrice !== null && !samePrice(Math.min(...taken.map(t => t.low)), held.lowestPrice))
    return null;
  if (held.highestPrice !== null && !samePrice(Math.max(...taken.map(t => t.high)), held.highestPrice)) {
    return null;
  }
  return last + 1;
}

/** The state as if this app had been sent exactly the first `to` rows, holding `baselineTicks` of its own. */
export function rewind(
  job: ReplayJob,
  to: number,
  baselineTicks: number,
  rejections: readonly (string | null)[],
): void {
  Object.assign(job.state, {
    position: 0,
    accepted: 0,
    rejectedCount: 0,
    rejected: [],
    lastLine: null,
    inDoubt: null,
    uncertainRetries: [],
    completed: job.state.rows === 0,
    baselineTicks,
  });
  if (to === 0) return;
  const rejected: RejectedRow[] = [];
  rejections.slice(0, to).forEach((reason, i) => {
    if (reason !== null) rejected.push({ line: job.bars[i].line, reason });
  });
  rejected.sort((a, b) => a.line - b.line);
  recordResolved(job.state, { count: to, rejected, lastLine: job.bars[to - 1].line });
}

const linesFrom = (job: ReplayJob, from: number, to = job.bars.length) =>
  to - from === 1 ? `line ${job.bars[from].line}` : `lines ${job.bars[from].line}-${job.bars[to - 1].line}`;

/**
 * A new state (the first run, or --restart): the app's ticks of the symbol are its baseline,
 * unless they are this file's first rows (an earlier replay whose state is gone): then the replay
 * goes on after them instead of sending them again.
 */
export async function startFromTarget(job: ReplayJob, o: TargetOptions): Promise<TargetCheck> {
  const { symbol, state } = job;
  const rejections = localRejections(job);
  const first = rejections.indexOf(null);
  // Only ticks that start where the file starts can be its rows; those must stop moving first.
  const startsLikeFile = (h: Holdings) =>
    first >= 0 && h.firstTimestamp !== null && sameTime(h.firstTimestamp, job.ticks[first].timestamp);
  const read = await settledHoldings(symbol, h => h.ticks === 0 || !startsLikeFile(h), o);
  if ("error" in read) {
    o.log(`${symbol}: cannot read the app's tick count before the replay (${read.error})`);
    state.baselineTicks = null;
    return { kind: "unknown", reason: read.error };
  }
  const held = read.holdings;
  const prefix = held.ticks === 0 ? null : heldPrefix(held, job, rejections);
  if (prefix === null) {
    state.baselineTicks = held.ticks;
    if (held.ticks > 0) {
      o.log(
        `${symbol}: the app already has ${formatCount(held.ticks)} ticks of ${symbol}; ` +
          `the replay adds to them (the indicators continue from them)`,
      );
    }
    return { kind: "agrees" };
  }
  rewind(job, prefix, 0, rejections);
  o.log(
    `${symbol}: the app already holds ${linesFrom(job, 0, prefix)} of this file (${formatCount(held.ticks)} ticks, ` +
      `from an earlier replay): ${prefix === job.bars.length ? "nothing to send" : `sending ${linesFrom(job, prefix)}`}`,
  );
  return { kind: "agrees" };
}

/**
 * A saved state: the app must hold at least its baseline plus the rows the state says it accepted.
 * When it holds fewer (and the count stays put), the state goes back to where the app's rows of
 * this file end, or to the start of the symbol when its ticks do not line up with the file.
 */
export async function checkTarget(job: ReplayJob, statePath: string, o: TargetOptions): Promise<TargetCheck> {
  const { symbol, state } = job;
  if (state.accepted === 0) return { kind: "agrees" };
  const claimed = (state.baselineTicks ?? 0) + state.accepted;
  const read = await settledHoldings(symbol, h => h.ticks >= claimed, o);
  if ("error" in read) {
    o.log(
      `${symbol}: cannot ask the app what it holds of ${symbol} (${read.error}); going by the saved state`,
    );
    return { kind: "unknown", reason: read.error };
  }
  const held = read.holdings;
  if (held.ticks >= claimed) return { kind: "agrees" };
  if (!read.settled) {
    o.log(
      `${symbol}: the app is still analysing ${symbol} (${formatCount(held.ticks)} of ${formatCount(claimed)} ticks); going by the saved state`,
    );
    return { kind: "agrees" };
  }
  const rejections = localRejections(job);
  const prefix = heldPrefix(held, job, rejections);
  rewind(job, prefix ?? 0, prefix === null ? held.ticks : 0, rejections);
  o.log(
    `${symbol}: the app holds ${describeHeld(job, held, prefix)}, fewer than the ${formatCount(claimed)} ` +
      `the state ${statePath} says it was sent (another app, or its data was removed): ${describeResend(job, held, prefix)}`,
  );
  return { kind: "rewound" };
}

function describeHeld(job: ReplayJob, held: Holdings, prefix: number | null): string {
  const ticks = `${formatCount(held.ticks)} ticks of ${job.symbol}`;
  if (prefix === null) return `${ticks} that do not line up with this file`;
  return prefix === 0 ? `no tick of ${job.symbol}` : `${ticks} (${linesFrom(job, 0, prefix)} of this file)`;
}

function describeResend(job: ReplayJob, held: Holdings, prefix: number | null): string {
  const from = prefix ?? 0;
  if (from === job.bars.length) return "it has every row of this file, nothing to send";
  const after = prefix === null && held.ticks > 0 ? `, after its ${formatCount(held.ticks)}` : "";
  return `sending ${linesFrom(job, from)} again${after}`;
}
