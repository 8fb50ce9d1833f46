import { HttpClient, type HttpOutcome } from "../lib/http-client";
import {
  COURSE_SYMBOLS,
  createMessageSource,
  PRICE_MODELS,
  type GeneratedMessage,
  type MessageSource,
  type PriceModel,
  type Stream,
} from "./models";
import { createRandom, type Random, type Seed } from "./random";

/**
 * The generator's core, shared by the CLI (bin/generator.ts) and anything that feeds the system
 * in-process, such as a demo feed: `runGenerator({ url, model: "walk", rate: 20, quiet: true, signal })`.
 */

export const DEFAULT_URL = "http://localhost:5000/ingest";
export const DEFAULT_CONCURRENCY = 32;
export const DEFAULT_TIMEOUT_MS = 10_000;
/** setTimeout fires at once for longer delays (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface GeneratorOptions {
  /** Where to POST; default http://localhost:5000/ingest as in the course. */
  url?: string;
  /** Default: the course's AAPL, GOOGL, AMZN, MSFT, TSLA. */
  symbols?: readonly string[];
  /** Default `iid`, the course's price model. */
  model?: PriceModel;
  /** Same seed, same message content (timestamps aside). Default: a fresh random seed. */
  seed?: Seed;
  /**
   * Total messages per second over both streams, on a fixed schedule with up to `concurrency`
   * requests in flight. Unset: the course's pacing, each stream posting and then sleeping uniform(1, 5) s.
   */
  rate?: number;
  /** Requests in flight at most when `rate` is set. Default 32. */
  concurrency?: number;
  /** Stop after this many messages. */
  count?: number;
  /** Stop after this many seconds. */
  durationSeconds?: number;
  /** Post JSON arrays of this many messages. Unset: one object per request, as the course does. */
  batch?: number;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** Log nothing (the summary is returned either way). */
  quiet?: boolean;
  /** A request with no answer after this long counts as a `timeout` failure. Default 10 s. */
  timeoutMs?: number;
  /** Aborting it stops the run: no new requests, the ones in flight are awaited, the summary is returned. */
  signal?: AbortSignal;
  /** Where progress lines go. Default console.log. */
  log?: (line: string) => void;
  /** The clock for message timestamps, in epoch seconds. */
  now?: () => number;
  /** How often a paced run logs its progress. Default 5 s. */
  progressIntervalMs?: number;
}

export type StopReason = "count" | "duration" | "signal";

export interface Summary {
  /** Messages in all requests sent. */
  messages: number;
  /** Messages in requests answered 200. */
  delivered: number;
  requests: number;
  /** Requests answered exactly 200, the only status the course counts as delivered. */
  ok: number;
  failed: number;
  /** Failed requests by kind: `HTTP 500`, `ECONNREFUSED`, `timeout`, ... */
  failures: Record<string, number>;
  durationSeconds: number;
  /** Delivered messages per second of the whole run. */
  messagesPerSecond: number;
  stoppedBy: StopReason;
}

export interface RunningGenerator {
  /** Ends the run as an aborted signal would; `done` then resolves with the summary. */
  stop(): void;
  done: Promise<Summary>;
}

interface ResolvedOptions {
  url: string;
  symbols: readonly string[];
  model: PriceModel;
  seed: Seed;
  rate: number | undefined;
  concurrency: number;
  count: number;
  durationSeconds: number | undefined;
  batch: number | undefined;
  token: string | undefined;
  timeoutMs: number;
  log: ((line: string) => void) | undefined;
  now: (() => number) | undefined;
  progressIntervalMs: number;
}

function requirePositive(name: string, value: number | undefined, integer: boolean): void {
  if (value === undefined) return;
  const ok = integer ? Number.isSafeInteger(value) && value >= 1 : Number.isFinite(value) && value > 0;
  if (!ok)
    throw new RangeError(`${name} must be a positive ${integer ? "whole number" : "number"}, got ${value}`);
}

function resolveOptions(options: GeneratorOptions): ResolvedOptions {
  const url = options.url ?? DEFAULT_URL;
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new RangeError(`url must be an absolute http(s) URL, got ${JSON.stringify(url)}`);
  }
  if (protocol !== "http:" && protocol !== "https:")
    throw new RangeError(`url must use http or https, got ${url}`);
  const model = options.model ?? "iid";
  if (!PRICE_MODELS.includes(model)) throw new RangeError(`model must be one of ${PRICE_MODELS.join(", ")}`);
  requirePositive("rate", options.rate, false);
  requirePositive("concurrency", options.concurrency, true);
  requirePositive("batch", options.batch, true);
  requirePositive("duration", options.durationSeconds, false);
  if (options.durationSeconds !== undefined && options.durationSeconds * 1000 > MAX_TIMER_MS) {
    throw new RangeError("duration must be at most 24 days; leave it unset to run until stopped");
  }
  requirePositive("timeout", options.timeoutMs, false);
  requirePositive("progress interval", options.progressIntervalMs, false);
  if (options.count !== undefined && !(Number.isSafeInteger(options.count) && options.count >= 0)) {
    throw new RangeError(`count must be a whole number >= 0, got ${options.count}`);
  }
  return {
    url,
    symbols: options.symbols ?? COURSE_SYMBOLS,
    model,
    seed: options.seed ?? `${Date.now()}:${Math.random()}`,
    rate: options.rate,
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    count: options.count ?? Infinity,
    durationSeconds: options.durationSeconds,
    batch: options.batch,
    token: options.token,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    log: options.quiet ? undefined : (options.log ?? (line => console.log(line))),
    now: options.now,
    progressIntervalMs: options.progressIntervalMs ?? 5000,
  };
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Failure bodies are kept for the log; a gateway's validation report fits well inside this. */
const FAILURE_BODY_CHARS = 2000;

const excerpt = (text: string, max = 300) => (text.length > max ? `${text.slice(0, max)}...` : text);
const answer = (outcome: HttpOutcome) =>
  "body" in outcome && outcome.body !== "" ? `: ${excerpt(outcome.body)}` : "";

class Tally {
  messages = 0;
  delivered = 0;
  requests = 0;
  ok = 0;
  failed = 0;
  readonly failures: Record<string, number> = {};

  /** Returns the failure kind, or undefined for a 200. */
  record(outcome: HttpOutcome, messages: number): string | undefined {
    this.requests++;
    this.messages += messages;
    if ("status" in outcome && outcome.status === 200) {
      this.ok++;
      this.delivered += messages;
      return undefined;
    }
    this.failed++;
    const kind = "status" in outcome ? `HTTP ${outcome.status}` : outcome.code;
    this.failures[kind] = (this.failures[kind] ?? 0) + 1;
    return kind;
  }
}

/** Runs until `count`, `durationSeconds` or `signal` ends it, whichever comes first. */
export async function runGenerator(options: GeneratorOptions = {}): Promise<Summary> {
  const o = resolveOptions(options);
  const source = createMessageSource({ symbols: o.symbols, model: o.model, seed: o.seed, now: o.now });
  const url = new URL(o.url);
  const client = new HttpClient({
    token: o.token,
    // The course client has no timeout, but a load run must end even if the gateway stops answering.
    timeoutMs: o.timeoutMs,
    maxSockets: o.rate === undefined ? 2 : o.concurrency,
    maxBodyChars: FAILURE_BODY_CHARS,
    skipOkBodies: true,
  });
  const tally = new Tally();
  const halt = new AbortController();
  let stoppedBy: StopReason = "signal";
  const stop = (reason: StopReason) => {
    if (halt.signal.aborted) return;
    stoppedBy = reason;
    halt.abort();
  };
  const onSignal = () => stop("signal");
  options.signal?.addEventListener("abort", onSignal, { once: true });
  if (options.signal?.aborted) stop("signal");
  const deadline =
    o.durationSeconds === undefined
      ? undefined
      : setTimeout(() => stop("duration"), o.durationSeconds * 1000);

  let remaining = o.count;
  if (remaining === 0) stop("count");
  /** Claims up to `n` messages of the budget; 0 once `count` is used up or the run is stopping. */
  const claim = (n: number): number => {
    if (halt.signal.aborted) return 0;
    const granted = Math.min(n, remaining);
    remaining -= granted;
    if (remaining === 0) stop("count");
    return granted;
  };

  const send = sender(o, client, url, tally);
  const started = performance.now();
  try {
    if (o.rate === undefined) {
      await coursePacing(o, source, claim, send, halt.signal);
    } else {
      await pacedSchedule(o, o.rate, source, claim, send, halt.signal, tally);
    }
  } finally {
    if (deadline !== undefined) clearTimeout(deadline);
    options.signal?.removeEventListener("abort", onSignal);
    client.close();
  }
  const durationSeconds = (performance.now() - started) / 1000;
  return {
    messages: tally.messages,
    delivered: tally.delivered,
    requests: tally.requests,
    ok: tally.ok,
    failed: tally.failed,
    failures: { ...tally.failures },
    durationSeconds,
    messagesPerSecond: durationSeconds > 0 ? tally.delivered / durationSeconds : 0,
    stoppedBy,
  };
}

type Claim = (n: number) => number;
type Send = (messages: GeneratedMessage[], describe: () => string) => Promise<void>;

/** Posts one request (one message, or a batch with `--batch`), tallies its answer and logs it. */
function sender(o: ResolvedOptions, client: HttpClient, url: URL, tally: Tally): Send {
  const reported = new Set<string>();
  return async (messages, describe) => {
    const json = JSON.stringify(o.batch === undefined ? messages[0] : messages);
    const outcome = await client.post(url, { json });
    const failure = tally.record(outcome, messages.length);
    if (o.log === undefined) return;
    if (failure === undefined) {
      if (o.rate === undefined) o.log(`200 ${describe()}`);
    } else if (o.rate === undefined) {
      o.log(`Failed to send data (${failure}${answer(outcome)}): ${describe()}`);
    } else if (!reported.has(failure)) {
      // Only the first failure of each kind: at thousands per second one line each would bury the rest.
      reported.add(failure);
      o.log(
        `Failed to send data (${failure}${answer(outcome)}); further ${failure} failures are only counted`,
      );
    }
  };
}

/** The course script: two independent loops, each posting and then sleeping uniform(1, 5) s. */
async function coursePacing(
  o: ResolvedOptions,
  source: MessageSource,
  claim: Claim,
  send: Send,
  halt: AbortSignal,
): Promise<void> {
  const loop = async (stream: Stream, timing: Random) => {
    for (;;) {
      const n = claim(o.batch ?? 1);
      if (n === 0) return;
      const messages = Array.from({ length: n }, () => source.next(stream));
      await send(messages, () =>
        excerpt(JSON.stringify(o.batch === undefined ? messages[0] : messages), 200),
      );
      await sleep(timing.uniform(1000, 5000), halt);
    }
  };
  await Promise.all([
    loop("price", createRandom(`${o.seed}:timing:price`)),
    loop("additional", createRandom(`${o.seed}:timing:additional`)),
  ]);
}

/**
 * Open-loop pacing: request j is due at start + j * batch / rate, whatever the answers take, with at
 * most `concurrency` in flight. Messages are built by this one loop, in order, so a seed replays the
 * same content; the streams alternate message by message, matching the course's one-to-one mix.
 */
async function pacedSchedule(
  o: ResolvedOptions,
  rate: number,
  source: MessageSource,
  claim: Claim,
  send: Send,
  halt: AbortSignal,
  tally: Tally,
): Promise<void> {
  const perRequest = o.batch ?? 1;
  const intervalMs = (perRequest / rate) * 1000;
  const inFlight = new Set<Promise<void>>();
  let slotFreed: (() => void) | undefined;
  const runStart = performance.now();
  let origin = runStart;
  let messageIndex = 0;

  const progress =
    o.log === undefined
      ? undefined
      : setInterval(() => {
          const seconds = (performance.now() - runStart) / 1000;
          o.log?.(
            `${tally.messages} messages in ${tally.requests} requests, ${tally.ok} OK, ${tally.failed} failed, ` +
              `${(tally.delivered / Math.max(seconds, 1e-9)).toFixed(0)} delivered/s`,
          );
        }, o.progressIntervalMs);

  try {
    for (let j = 0; !halt.aborted; j++) {
      let wait = origin + j * intervalMs - performance.now();
      if (wait < -1000) {
        // More than a second behind (a stalled gateway): drop the backlog rather than burst to catch up.
        origin = performance.now() - j * intervalMs;
      }
      // Below a millisecond timers cannot help; everything due by now goes out in one burst instead.
      while (wait >= 1 && !halt.aborted) {
        await sleep(Math.min(wait, MAX_TIMER_MS), halt);
        wait = origin + j * intervalMs - performance.now();
      }
      if (halt.aborted) break;
      while (inFlight.size >= o.concurrency) {
        await new Promise<void>(resolve => (slotFreed = resolve));
      }
      const n = claim(perRequest);
      if (n === 0) break;
      const messages: GeneratedMessage[] = [];
      for (let i = 0; i < n; i++, messageIndex++)
        messages.push(source.next(messageIndex % 2 === 0 ? "price" : "additional"));
      const request = send(messages, () => "").finally(() => {
        inFlight.delete(request);
        slotFreed?.();
        slotFreed = undefined;
      });
      inFlight.add(request);
    }
    await Promise.all(inFlight);
  } finally {
    if (progress !== undefined) clearInterval(progress);
  }
}

/** Starts a run that can be stopped later, for callers that hold it open (an embedded demo feed). */
export function startGenerator(options: Omit<GeneratorOptions, "signal"> = {}): RunningGenerator {
  const controller = new AbortController();
  const done = runGenerator({ ...options, signal: controller.signal });
  return { stop: () => controller.abort(), done };
}

/** The CLI's exit status: 1 if any request was not answered 200, as the course would have printed a failure. */
export function exitCodeFor(summary: Summary): 0 | 1 {
  return summary.failed > 0 ? 1 : 0;
}

export function formatSummary(summary: Summary): string {
  const failures = Object.entries(summary.failures)
    .sort(([, a], [, b]) => b - a)
    .map(([kind, n]) => `${kind}: ${n}`)
    .join(", ");
  return [
    `stopped by:  ${summary.stoppedBy}`,
    `messages:    ${summary.messages} sent, ${summary.delivered} delivered`,
    `requests:    ${summary.requests}, ${summary.ok} answered 200, ${summary.failed} failed`,
    `failures:    ${failures === "" ? "none" : failures}`,
    `duration:    ${summary.durationSeconds.toFixed(3)} s`,
    `throughput:  ${summary.messagesPerSecond.toFixed(1)} delivered msgs/s`,
  ].join("\n");
}
