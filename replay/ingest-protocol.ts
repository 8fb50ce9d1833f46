import { createHash } from "node:crypto";
import { describeOutcome, type HttpOutcome } from "./client";
import type { ReplayJob } from "./run";

/**
 * The replay's side of the `POST /ingest` contract: the Idempotency-Key a request carries, and
 * what each answer means for the rows it carried.
 */

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
