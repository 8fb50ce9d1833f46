import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { TICKER_PATTERN } from "../domain/messages";
import { DAILY_TIME_UTC } from "./csv";
import { DEFAULT_MAX_GAP_SECONDS, parseSpeed, type Pacing } from "./pacing";
import { DEFAULT_STATE_DIR } from "./state";

export const DEFAULT_BASE_URL = "http://localhost:5000";
export const DEFAULT_BATCH = 1000;
export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRIES = 8;
export const DEFAULT_REPORT_TIMEOUT_S = 120;
export const SAMPLE_SYMBOL = "SPX";
const SAMPLE_FILE = path.join("samples", "sp500-2000.csv");

export const HELP = `Usage: npm run replay -- FILE.csv [FILE.csv ...] [options]
       npm run replay -- --sample [options]

Replays daily price bars (Yahoo Finance or Stooq CSV: Date,Open,High,Low,Close[,Adj Close][,Volume])
through POST /ingest as price ticks, in date order, then prints each symbol's report: ticks, signals,
dates, price range, and the RSI 30/70 rule's return against buy-and-hold (GET /api/report/:symbol).
Each row is sent at ${DAILY_TIME_UTC} UTC of its date (after the New York close all year).

Options:
  --symbol SYM       the ticker to send the rows as (default: the file name, AAPL.csv -> AAPL);
                     with one file only
  --sample           replay the bundled sample, samples/sp500-2000.csv (S&P 500, 2000-2020), as
                     ${SAMPLE_SYMBOL} (or --symbol)
  --speed F          pace the rows at F times real time between their dates (60x, 86400x = one day
                     of data per second); no single wait is longer than --max-gap
  --max-gap S        longest wait between two rows at --speed, in seconds (default ${DEFAULT_MAX_GAP_SECONDS})
  --rate N           N rows per second per file
                     (neither --speed nor --rate: as fast as the gateway acknowledges)
  --batch N          most rows per request (default ${DEFAULT_BATCH}); a symbol's next request waits for
                     the previous one's answer, so its rows stay in order
  --concurrency N    most requests in flight over all files, one per symbol (default ${DEFAULT_CONCURRENCY})
  --adjusted         send Adj Close as the close, with open, high and low scaled alike
  --url BASE         the gateway (default ${DEFAULT_BASE_URL}; a URL ending in /ingest works too)
  --token T          send Authorization: Bearer T (when the gateway sets INGEST_TOKEN)
  --timeout MS       a request with no answer after MS ms has failed (default ${DEFAULT_TIMEOUT_MS})
  --retries N        retries of a request after a 5xx, 429 or network failure before the replay
                     stops, resumable (default ${DEFAULT_RETRIES}; waits 0.5 s doubling up to 10 s)
  --state-dir DIR    where the resume state is kept (default ${DEFAULT_STATE_DIR})
  --restart          ignore the saved state: start from what the app holds of the file
  --no-report        do not wait for the analysis or print the report
  --report-timeout S how long to wait for the app to analyse every tick (default ${DEFAULT_REPORT_TIMEOUT_S})
  -h, --help         show this text

Ctrl-C stops after the request in flight and saves the state; run the same command again to go on
from the first row not acknowledged. Ctrl-C twice abandons the request in flight; the next run asks
the app whether its rows arrived before sending them again. Before sending, the replay asks the app
what it holds of each symbol: rows the state says were sent but the app does not hold (another app,
or its data removed) are sent again. Every request carries an Idempotency-Key made of the file and
its rows, so rows sent again to the same app are applied once.
Exit status: 0 every row accepted; 1 rows unreadable or rejected, a failure, an incomplete report,
or nothing sent to an app that could not be asked; 2 bad options or files; 130 interrupted.
`;

export interface ReplayFileSpec {
  /** As given on the command line (or the sample's path). */
  file: string;
  symbol: string;
}

export interface ReplayCliOptions {
  files: ReplayFileSpec[];
  pacing: Pacing;
  batch: number;
  concurrency: number;
  adjusted: boolean;
  baseUrl: string;
  token: string | undefined;
  timeoutMs: number;
  retries: number;
  stateDir: string;
  restart: boolean;
  report: boolean;
  reportTimeoutMs: number;
}

export type ParsedReplayCommand = { help: true } | { help: false; options: ReplayCliOptions };

/** Bad command-line input: printed with a pointer to --help, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

function positive(flag: string, text: string | undefined, integer: boolean, fallback: number): number {
  if (text === undefined) return fallback;
  const pattern = integer ? /^\d+$/ : /^(?:\d+(?:\.\d+)?|\.\d+)$/;
  const value = Number(text);
  if (!pattern.test(text.trim()) || !Number.isFinite(value) || value <= 0) {
    throw new UsageError(
      `--${flag} must be a ${integer ? "whole number" : "number"} greater than 0, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** AAPL.csv -> AAPL, brk.b.csv -> BRK.B: the file name without its extension, upper case. */
export function symbolFromFileName(file: string): string {
  const base = path.basename(file);
  const dot = base.lastIndexOf(".");
  return (dot > 0 ? base.slice(0, dot) : base).toUpperCase();
}

export function isTicker(symbol: string): boolean {
  return TICKER_PATTERN.test(symbol);
}

/** `http://host:5000`, also from `http://host:5000/ingest` (the generator's --url). */
export function normaliseBaseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(
      `--url must be an http(s) URL like ${DEFAULT_BASE_URL}, got ${JSON.stringify(text)}`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--url must use http or https, got ${JSON.stringify(text)}`);
  }
  url.pathname = url.pathname.replace(/\/+$/, "").replace(/\/ingest$/, "");
  url.search = "";
  url.hash = "";
  return url.href.replace(/\/$/, "");
}

/** The bundled sample, found from the source tree (tsx) or from dist/. */
export function samplePath(): string {
  for (const root of [path.resolve(__dirname, ".."), path.resolve(__dirname, "../..")]) {
    const candidate = path.join(root, SAMPLE_FILE);
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new UsageError(`the sample ${SAMPLE_FILE} is missing from this checkout`);
}

const REPLAY_OPTIONS = {
  symbol: { type: "string" },
  sample: { type: "boolean", default: false },
  speed: { type: "string" },
  "max-gap": { type: "string" },
  rate: { type: "string" },
  batch: { type: "string" },
  concurrency: { type: "string" },
  adjusted: { type: "boolean", default: false },
  url: { type: "string" },
  token: { type: "string" },
  timeout: { type: "string" },
  retries: { type: "string" },
  "state-dir": { type: "string" },
  restart: { type: "boolean", default: false },
  "no-report": { type: "boolean", default: false },
  "report-timeout": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function readArgs(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], strict: true, allowPositionals: true, options: REPLAY_OPTIONS });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

type ReplayArgs = ReturnType<typeof readArgs>["values"];

export function parseReplayArgs(argv: readonly string[]): ParsedReplayCommand {
  const { values, positionals } = readArgs(argv);
  if (values.help) return { help: true };
  const files = filesToReplay(values, positionals);
  const pacing = pacingOf(values);
  return {
    help: false,
    options: {
      files,
      pacing,
      batch: positive("batch", values.batch, true, DEFAULT_BATCH),
      concurrency: positive("concurrency", values.concurrency, true, DEFAULT_CONCURRENCY),
      adjusted: values.adjusted,
      baseUrl: normaliseBaseUrl(values.url ?? DEFAULT_BASE_URL),
      token: values.token,
      timeoutMs: positive("timeout", values.timeout, false, DEFAULT_TIMEOUT_MS),
      retries: values.retries === "0" ? 0 : positive("retries", values.retries, true, DEFAULT_RETRIES),
      stateDir: values["state-dir"] ?? DEFAULT_STATE_DIR,
      restart: values.restart,
      report: !values["no-report"],
      reportTimeoutMs:
        positive("report-timeout", values["report-timeout"], false, DEFAULT_REPORT_TIMEOUT_S) * 1000,
    },
  };
}

/** The files named (and the sample), each with the ticker it is replayed as: one file per symbol. */
function filesToReplay(values: ReplayArgs, positionals: readonly string[]): ReplayFileSpec[] {
  if (positionals.length === 0 && !values.sample) {
    throw new UsageError("name a CSV file to replay, or --sample for the bundled S&P 500 sample");
  }
  if (values.symbol !== undefined && positionals.length + (values.sample ? 1 : 0) !== 1) {
    throw new UsageError(
      "--symbol names the ticker of a single file; with several files each is named after its file",
    );
  }
  if (values.symbol !== undefined && !isTicker(values.symbol)) {
    throw new UsageError(
      `--symbol must be an upper-case ticker like AAPL, BRK.B or BF-B, got ${JSON.stringify(values.symbol)}`,
    );
  }
  const files: ReplayFileSpec[] = positionals.map(file => {
    const symbol = values.symbol ?? symbolFromFileName(file);
    if (!isTicker(symbol)) {
      throw new UsageError(
        `cannot take a ticker from the file name ${JSON.stringify(path.basename(file))} ` +
          `(got ${JSON.stringify(symbol)}); name it with --symbol, like --symbol AAPL`,
      );
    }
    return { file, symbol };
  });
  if (values.sample) files.push({ file: samplePath(), symbol: values.symbol ?? SAMPLE_SYMBOL });
  const seen = new Map<string, string>();
  for (const f of files) {
    const other = seen.get(f.symbol);
    if (other !== undefined) {
      throw new UsageError(
        `${other} and ${f.file} would both be replayed as ${f.symbol}; one file per symbol`,
      );
    }
    seen.set(f.symbol, f.file);
  }
  return files;
}

/** --speed (with --max-gap) or --rate, or as fast as the gateway takes them. */
function pacingOf(values: ReplayArgs): Pacing {
  if (values.speed !== undefined && values.rate !== undefined) {
    throw new UsageError("--speed and --rate are two ways to pace the replay; choose one");
  }
  if (values["max-gap"] !== undefined && values.speed === undefined) {
    throw new UsageError("--max-gap applies to --speed only");
  }
  if (values.speed !== undefined) {
    const factor = parseSpeed(values.speed);
    if (factor === null) {
      throw new UsageError(
        `--speed must be a factor like 60x or 86400x, got ${JSON.stringify(values.speed)}`,
      );
    }
    return {
      kind: "speed",
      factor,
      maxGapSeconds: positive("max-gap", values["max-gap"], false, DEFAULT_MAX_GAP_SECONDS),
    };
  }
  if (values.rate !== undefined)
    return { kind: "rate", rowsPerSecond: positive("rate", values.rate, false, 1) };
  return { kind: "max" };
}
