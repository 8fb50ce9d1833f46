import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";

/**
 * What a replay has done, saved after every acknowledged request so that an interrupted run (Ctrl-C,
 * a gateway that stayed down, a crash) resumes at the first row not yet resolved. One file per
 * symbol and file content: `<dir>/<SYMBOL>-<first 16 hex digits of the file's SHA-256>.json`, so an
 * edited file starts over instead of resuming at a line that now holds something else.
 */

export const DEFAULT_STATE_DIR = ".replay";
/** Rejected rows kept in the state beyond which only the count grows (the summary shows the first ones). */
export const MAX_STORED_REJECTIONS = 1000;

const lineReason = z.object({ line: z.number().int(), reason: z.string() });
const lineRange = z.object({ firstLine: z.number().int(), lastLine: z.number().int() });

const stateSchema = z.object({
  version: z.literal(1),
  symbol: z.string(),
  file: z.string(),
  fileHash: z.string(),
  /** Whatever shapes the ticks sent: a resume under other settings would mix two series. */
  settings: z.object({ adjusted: z.boolean() }),
  url: z.string(),
  /** Bars the file holds (rows that could be read). */
  rows: z.number().int().nonnegative(),
  /** Rows resolved, in send order: accepted by the gateway or rejected by it. */
  position: z.number().int().nonnegative(),
  accepted: z.number().int().nonnegative(),
  rejectedCount: z.number().int().nonnegative(),
  rejected: z.array(lineReason),
  /** File line of the last resolved row. */
  lastLine: z.number().int().nullable(),
  /** The symbol's tick count in the app before the first row was sent; null if it could not be read. */
  baselineTicks: z.number().int().nonnegative().nullable(),
  /**
   * A request abandoned (second Ctrl-C) or given up on after a failure that does not say whether
   * the gateway took it (a timeout, a 5xx): rows [start, end) minus the ones rejected in it.
   */
  inDoubt: z
    .object({
      start: z.number().int().nonnegative(),
      end: z.number().int().nonnegative(),
      rows: z.number().int().nonnegative(),
      rejected: z.array(lineReason),
      firstLine: z.number().int(),
      lastLine: z.number().int(),
      reason: z.string(),
    })
    .nullable(),
  /** Requests resent after such a failure, under the same Idempotency-Key (the gateway applies them once). */
  uncertainRetries: z.array(lineRange),
  completed: z.boolean(),
  startedAt: z.string(),
  updatedAt: z.string(),
});

export type ReplayState = z.infer<typeof stateSchema>;
export type InDoubt = NonNullable<ReplayState["inDoubt"]>;
export type RejectedRow = z.infer<typeof lineReason>;

export class StateError extends Error {
  override readonly name = "StateError";
}

/** SHA-256 of the file's bytes, hex. */
export function contentHash(content: string | Buffer): string {
  return createHash("sha256").update(content).digest("hex");
}

export function statePath(dir: string, symbol: string, hash: string): string {
  return path.join(dir, `${symbol}-${hash.slice(0, 16)}.json`);
}

export function newState(init: {
  symbol: string;
  file: string;
  fileHash: string;
  settings: ReplayState["settings"];
  url: string;
  rows: number;
  baselineTicks: number | null;
  now?: Date;
}): ReplayState {
  const at = (init.now ?? new Date()).toISOString();
  return {
    version: 1,
    symbol: init.symbol,
    file: init.file,
    fileHash: init.fileHash,
    settings: init.settings,
    url: init.url,
    rows: init.rows,
    position: 0,
    accepted: 0,
    rejectedCount: 0,
    rejected: [],
    lastLine: null,
    baselineTicks: init.baselineTicks,
    inDoubt: null,
    uncertainRetries: [],
    completed: false,
    startedAt: at,
    updatedAt: at,
  };
}

/** Null when there is no state file; StateError when there is one that cannot be used. */
export function loadState(file: string): ReplayState | null {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new StateError(`cannot read the replay state ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StateError(`the replay state ${file} is not JSON (${(err as Error).message}); use --restart`);
  }
  const parsed = stateSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new StateError(
      `the replay state ${file} is not one this version writes (${first.path.join(".") || "(root)"}: ${first.message}); use --restart`,
    );
  }
  const s = parsed.data;
  if (s.position > s.rows || s.accepted + s.rejectedCount !== s.position) {
    throw new StateError(
      `the replay state ${file} does not add up (position ${s.position}, accepted ${s.accepted}, rejected ${s.rejectedCount}, rows ${s.rows}); use --restart`,
    );
  }
  return s;
}

/** Written to a temporary file and renamed over the old one, so a crash leaves the old state or the new one. */
export function saveState(file: string, state: ReplayState, now = new Date()): void {
  state.updatedAt = now.toISOString();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  fs.renameSync(tmp, file);
}

/** Moves the state past `count` rows of which the ones in `rejected` were refused. */
export function recordResolved(
  state: ReplayState,
  resolved: { count: number; rejected: readonly RejectedRow[]; lastLine: number },
): void {
  if (state.position + resolved.count > state.rows) {
    throw new RangeError(`cannot resolve ${resolved.count} rows at ${state.position} of ${state.rows}`);
  }
  state.position += resolved.count;
  state.accepted += resolved.count - resolved.rejected.length;
  state.rejectedCount += resolved.rejected.length;
  for (const r of resolved.rejected) {
    if (state.rejected.length < MAX_STORED_REJECTIONS) state.rejected.push(r);
  }
  state.lastLine = resolved.lastLine;
  if (state.position === state.rows) state.completed = true;
}
