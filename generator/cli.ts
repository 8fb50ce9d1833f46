import { parseArgs } from "node:util";
import { COURSE_SYMBOLS, isValidTicker, PRICE_MODELS, syntheticSymbols, type PriceModel } from "./models";
import { DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_MS, DEFAULT_URL, type GeneratorOptions } from "./run";

export const HELP = `Usage: npm run generator -- [options]

Posts stock messages to the gateway. With no options it behaves as the course's generator:
two concurrent streams (price ticks; order book, news sentiment, market data and economic
indicators), each sleeping uniform(1, 5) s between posts, one JSON object per POST, the
symbols ${COURSE_SYMBOLS.join(", ")}, until Ctrl-C. Only HTTP 200 counts as delivered.

Options:
  --url URL          where to POST (default ${DEFAULT_URL})
  --rate N           N messages/s in total over both streams, on a fixed schedule instead
                     of the course's random sleeps
  --concurrency N    requests in flight at most with --rate (default ${DEFAULT_CONCURRENCY})
  --count N          stop after N messages
  --duration S       stop after S seconds (with --count: whichever comes first)
  --symbols LIST     comma-separated tickers (AAPL,BRK.B,...), or a number N for N synthetic
                     tickers S0001, S0002, ...
  --batch N          post JSON arrays of N messages instead of single objects
  --seed S           reproducible message content (timestamps aside)
  --model M          ${PRICE_MODELS.join(" | ")}: iid = the course's independent draws around 1000
                     (default); walk = a random walk per symbol, so RSI crosses 30/70
  --token T          send Authorization: Bearer T
  --timeout MS       count a request unanswered after MS ms as failed (default ${DEFAULT_TIMEOUT_MS})
  --quiet            print only the summary
  -h, --help         show this text

Ctrl-C or SIGTERM stops sending, waits for requests in flight and prints the summary.
Exit status: 0 if every request was answered 200, 1 if any failed, 2 on bad options.
`;

export type ParsedCommand = { help: true } | { help: false; options: GeneratorOptions };

/** Bad command-line input: the CLI prints it with a pointer to --help and exits 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

function number(flag: string, text: string | undefined, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const pattern = integer ? /^\d+$/ : /^\d+(?:\.\d+)?$/;
  const value = Number(text);
  if (!pattern.test(text.trim()) || !Number.isFinite(value)) {
    throw new UsageError(
      `--${flag} must be a ${integer ? "whole number" : "number"}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

export function parseSymbols(spec: string): string[] {
  const text = spec.trim();
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n < 1) throw new UsageError("--symbols N needs N >= 1");
    return syntheticSymbols(n);
  }
  const symbols = text
    .split(",")
    .map(s => s.trim())
    .filter(s => s !== "");
  if (symbols.length === 0) throw new UsageError("--symbols needs at least one ticker");
  const invalid = symbols.filter(s => !isValidTicker(s));
  if (invalid.length > 0) {
    throw new UsageError(
      `--symbols: not a valid ticker (upper case, like AAPL or BRK.B): ${invalid.join(", ")}`,
    );
  }
  return [...new Set(symbols)];
}

export function parseGeneratorArgs(argv: readonly string[]): ParsedCommand {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        rate: { type: "string" },
        concurrency: { type: "string" },
        count: { type: "string" },
        duration: { type: "string" },
        symbols: { type: "string" },
        batch: { type: "string" },
        seed: { type: "string" },
        model: { type: "string" },
        token: { type: "string" },
        timeout: { type: "string" },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help) return { help: true };

  const model = values.model;
  if (model !== undefined && !(PRICE_MODELS as readonly string[]).includes(model)) {
    throw new UsageError(`--model must be one of ${PRICE_MODELS.join(", ")}, got ${JSON.stringify(model)}`);
  }
  const options: GeneratorOptions = {
    url: values.url,
    rate: number("rate", values.rate, false),
    concurrency: number("concurrency", values.concurrency, true),
    count: number("count", values.count, true),
    durationSeconds: number("duration", values.duration, false),
    symbols: values.symbols === undefined ? undefined : parseSymbols(values.symbols),
    batch: number("batch", values.batch, true),
    seed: values.seed,
    model: model as PriceModel | undefined,
    token: values.token,
    timeoutMs: number("timeout", values.timeout, false),
    quiet: values.quiet,
  };
  for (const [flag, value] of [
    ["rate", options.rate],
    ["concurrency", options.concurrency],
    ["duration", options.durationSeconds],
    ["batch", options.batch],
    ["timeout", options.timeoutMs],
  ] as const) {
    if (value === 0) throw new UsageError(`--${flag} must be greater than 0`);
  }
  if (options.url !== undefined) {
    try {
      const protocol = new URL(options.url).protocol;
      if (protocol !== "http:" && protocol !== "https:") throw new Error(protocol);
    } catch {
      throw new UsageError(`--url must be an http(s) URL, got ${JSON.stringify(options.url)}`);
    }
  }
  return { help: false, options };
}
