import { z } from "zod";

/**
 * The message shapes the system accepts: the course generator's five message types
 * (docs/generator-contract.md). These schemas are the single source of truth:
 * types come from `z.infer`, the gateway's error messages from zod's issues, and the
 * API docs' JSON Schema from `z.toJSONSchema`.
 *
 * Unknown extra fields are stripped (zod's default), so they are never forwarded to Kafka.
 */

/** 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in epoch seconds: the window a tick's time must fall in. */
export const MIN_EPOCH_SECONDS = 946684800;
export const MAX_EPOCH_SECONDS = 4102444800;

/**
 * Tickers as exchanges write them: AAPL, BRK.B, BF-B, 0700.HK. Upper case, a root of up to
 * ten letters or digits, then at most two `.` or `-` separated suffixes.
 */
export const TICKER_PATTERN = /^[A-Z0-9]{1,10}(?:[.-][A-Z0-9]{1,6}){0,2}$/;

/**
 * Bounds on every number a message carries. They keep every sum, average and indicator an actor
 * computes finite, and every stored total in its column, over 2^32 ticks of a symbol and more:
 * 2^32 prices of at most 1e9 sum to about 4.3e18, 2^32 volumes of at most 1e12 to about 4.3e21
 * (hence `numeric` for the volume totals, migrations/004). Without them two ticks at 1e308 made a
 * symbol's running sums Infinity, its snapshot unreadable, and its partition halt.
 */
export const MIN_PRICE = 0.000001;
export const MAX_PRICE = 1e9;
/** Traded volume of one tick, and the quantity of one order. Index volumes reach 1.1e10 (samples/). */
export const MAX_VOLUME = 1e12;
export const MAX_MARKET_CAP = 1e16;
export const MAX_PE_RATIO = 1e6;
export const MAX_SENTIMENT_MAGNITUDE = 1e6;
export const MAX_INDICATOR_VALUE = 1e15;

/** A bound as the messages name it: the number written out, then as a power of ten (`1000000000000 (1e12)`). */
function spell(bound: number): string {
  const plain = bound.toLocaleString("en-US", { useGrouping: false, maximumSignificantDigits: 21 });
  return `${plain} (${bound.toExponential().replace("e+", "e")})`;
}

/**
 * Aborting (zod then skips the checks after it, and the tick's rules comparing its prices): past
 * its upper bound nothing else about a number is worth saying (1e20 is too big, not "not whole"),
 * nor about a price out of bounds beside the others (1e308 is not "above high").
 */
const atMost = (bound: number) => ({ message: `must be at most ${spell(bound)}`, abort: true });

/** zod rejects NaN and Infinity as not numbers at all; a JSON number too big for a double (1e400) parses to Infinity. */
const numberError = (what: string) => (iss: { input?: unknown }) =>
  iss.input === undefined
    ? "is required"
    : typeof iss.input === "number"
      ? "must be a finite number"
      : `must be a number (${what})`;

/**
 * A number within [min, max], both bounds aborting (see `atMost`). zod's own gte/lte checks, so
 * that the JSON Schema of the API docs carries them as minimum/maximum.
 */
const bounded = (what: string, min: number, max: number, below = `must be at least ${spell(min)}`) =>
  z
    .number({ error: numberError(what) })
    .gte(min, { message: below, abort: true })
    .lte(max, atMost(max));

const price = (what: string) => bounded(what, MIN_PRICE, MAX_PRICE);

const timestamp = z
  .number({ error: numberError("seconds since the Unix epoch") })
  .refine(Number.isFinite, { message: "must be a finite number", abort: true })
  .superRefine((v, ctx) => {
    if (v >= MAX_EPOCH_SECONDS && v / 1000 >= MIN_EPOCH_SECONDS && v / 1000 < MAX_EPOCH_SECONDS) {
      ctx.addIssue({
        code: "custom",
        message: `looks like milliseconds since the epoch; send seconds (for example ${Math.floor(v / 1000)}.${String(Math.floor(v % 1000)).padStart(3, "0")})`,
      });
    } else if (v < MIN_EPOCH_SECONDS || v >= MAX_EPOCH_SECONDS) {
      ctx.addIssue({
        code: "custom",
        message: "must be seconds since the Unix epoch between 2000-01-01 and 2100-01-01",
      });
    }
  });

const symbol = z
  .string({ error: iss => (iss.input === undefined ? "is required" : "must be a string") })
  .regex(TICKER_PATTERN, { message: "must be an upper-case ticker such as AAPL, BRK.B or BF-B" });

/**
 * A whole number in [min, MAX_VOLUME]; `type: integer` in the JSON Schema. Below `min` it does not
 * abort, so a negative volume still lets the price rules report what they find (as they always did).
 */
const count = (what: string, min: number, below: string) =>
  z
    .number({ error: numberError(what) })
    .gte(min, { message: below })
    .lte(MAX_VOLUME, atMost(MAX_VOLUME))
    .int({ message: "must be a whole number" });

/** A price tick: the message without `data_type`. */
export const priceTickSchema = z
  .object({
    data_type: z.undefined().optional(),
    stock_symbol: symbol,
    opening_price: price("the opening price"),
    closing_price: price("the closing price"),
    high: price("the highest price"),
    low: price("the lowest price"),
    volume: count("the traded volume", 0, "must not be negative"),
    timestamp,
  })
  .superRefine((t, ctx) => {
    if (t.low > Math.min(t.opening_price, t.closing_price)) {
      ctx.addIssue({
        code: "custom",
        path: ["low"],
        message: "must not be above opening_price or closing_price",
      });
    }
    if (t.high < Math.max(t.opening_price, t.closing_price)) {
      ctx.addIssue({
        code: "custom",
        path: ["high"],
        message: "must not be below opening_price or closing_price",
      });
    }
  })
  .transform(({ data_type: _omit, ...tick }) => tick);

export const orderBookSchema = z.object({
  data_type: z.literal("order_book"),
  timestamp,
  stock_symbol: symbol,
  order_type: z.enum(["buy", "sell"], { error: 'must be "buy" or "sell"' }),
  price: price("the order price"),
  quantity: count("the order quantity", 1, "must be at least 1"),
});

export const newsSentimentSchema = z.object({
  data_type: z.literal("news_sentiment"),
  timestamp,
  stock_symbol: symbol,
  sentiment_score: z
    .number({ error: numberError("the sentiment score") })
    .gte(-1, { message: "must be between -1 and 1" })
    .lte(1, { message: "must be between -1 and 1" }),
  sentiment_magnitude: bounded("the sentiment magnitude", 0, MAX_SENTIMENT_MAGNITUDE, "must not be negative"),
});

export const marketDataSchema = z.object({
  data_type: z.literal("market_data"),
  timestamp,
  stock_symbol: symbol,
  market_cap: z
    .number({ error: numberError("the market capitalisation") })
    .gt(0, { message: "must be greater than 0", abort: true })
    .lte(MAX_MARKET_CAP, atMost(MAX_MARKET_CAP)),
  pe_ratio: bounded("the price/earnings ratio", -MAX_PE_RATIO, MAX_PE_RATIO),
});

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** Market-wide data: it has no `stock_symbol`, so it is keyed by its indicator name. */
export const economicIndicatorSchema = z.object({
  data_type: z.literal("economic_indicator"),
  timestamp,
  indicator_name: z
    .string({ error: iss => (iss.input === undefined ? "is required" : "must be a string") })
    .trim()
    .min(1, { message: "must not be empty" })
    .max(100, { message: "must be at most 100 characters" })
    // Control characters (NUL above all, which Postgres text cannot hold) are never part of a name.
    .refine(v => !hasControlCharacter(v), { message: "must not contain control characters" }),
  value: bounded("the indicator value", -MAX_INDICATOR_VALUE, MAX_INDICATOR_VALUE),
});

export const SIDE_DATA_TYPES = ["order_book", "news_sentiment", "market_data", "economic_indicator"] as const;
export type SideDataType = (typeof SIDE_DATA_TYPES)[number];

const sideDataSchema = z.discriminatedUnion("data_type", [
  orderBookSchema,
  newsSentimentSchema,
  marketDataSchema,
  economicIndicatorSchema,
]);

export type PriceTick = z.infer<typeof priceTickSchema>;
export type OrderBook = z.infer<typeof orderBookSchema>;
export type NewsSentiment = z.infer<typeof newsSentimentSchema>;
export type MarketData = z.infer<typeof marketDataSchema>;
export type EconomicIndicator = z.infer<typeof economicIndicatorSchema>;
export type SymbolSideData = OrderBook | NewsSentiment | MarketData;
export type StockMessage = PriceTick | SymbolSideData | EconomicIndicator;

export function isPriceTick(m: StockMessage): m is PriceTick {
  return !("data_type" in m);
}

/** The Kafka key: the symbol, so each symbol's messages keep their order in one partition. */
export function messageKey(m: StockMessage): string {
  return "stock_symbol" in m ? m.stock_symbol : m.indicator_name;
}

export interface MessageIssue {
  path: string;
  message: string;
}

export type ParseResult = { ok: true; message: StockMessage } | { ok: false; issues: MessageIssue[] };

/**
 * A short description of a rejected value for an error message. Never the value itself: a client
 * can send a megabyte string (echoed back in full) or an array nested 10,000 deep (JSON.stringify
 * overflows the stack on it, which made the answer a 500 instead of a 400).
 */
function describeValue(value: unknown): string {
  if (typeof value === "string") {
    return value.length > 40
      ? `${JSON.stringify(value.slice(0, 40))}... (${value.length} characters)`
      : JSON.stringify(value);
  }
  if (value === null || typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function formatPath(path: PropertyKey[]): string {
  return path.map(String).join(".") || "(root)";
}

// NaN fails both comparisons, and Infinity the second.
const isPrice = (v: unknown): v is number => typeof v === "number" && v >= MIN_PRICE && v <= MAX_PRICE;

/**
 * The common case without zod's machinery: a price tick that `priceTickSchema` accepts, as the
 * same object it would return (the known fields, in its order); null when anything is off, and
 * zod then says what. Every actor reads every message through this, so it is on the hot path.
 * (test/unit/domain/messages.test.ts checks it against the schema on generated input.)
 */
export function validPriceTick(r: Record<string, unknown>): PriceTick | null {
  const { stock_symbol, opening_price, closing_price, high, low, volume, timestamp } = r;
  if (
    r.data_type !== undefined ||
    typeof stock_symbol !== "string" ||
    !TICKER_PATTERN.test(stock_symbol) ||
    !isPrice(opening_price) ||
    !isPrice(closing_price) ||
    !isPrice(high) ||
    !isPrice(low) ||
    typeof volume !== "number" ||
    !Number.isInteger(volume) ||
    !(volume >= 0 && volume <= MAX_VOLUME) ||
    typeof timestamp !== "number" ||
    !(timestamp >= MIN_EPOCH_SECONDS && timestamp < MAX_EPOCH_SECONDS) ||
    low > Math.min(opening_price, closing_price) ||
    high < Math.max(opening_price, closing_price)
  )
    return null;
  return { stock_symbol, opening_price, closing_price, high, low, volume, timestamp };
}

/** Validates one decoded JSON value as a stock message. Never throws. */
export function parseMessage(input: unknown): ParseResult {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    const got = input === null ? "null" : Array.isArray(input) ? "an array" : typeof input;
    return { ok: false, issues: [{ path: "(root)", message: `must be a JSON object, got ${got}` }] };
  }
  const record = input as Record<string, unknown>;
  if (record.data_type !== undefined) {
    if (
      typeof record.data_type !== "string" ||
      !(SIDE_DATA_TYPES as readonly string[]).includes(record.data_type)
    ) {
      return {
        ok: false,
        issues: [
          {
            path: "data_type",
            message: `must be one of ${SIDE_DATA_TYPES.join(", ")} (or absent for a price tick), got ${describeValue(record.data_type)}`,
          },
        ],
      };
    }
    const side = sideDataSchema.safeParse(input);
    return side.success
      ? { ok: true, message: side.data }
      : { ok: false, issues: side.error.issues.map(i => ({ path: formatPath(i.path), message: i.message })) };
  }
  const fast = validPriceTick(record);
  if (fast) return { ok: true, message: fast };
  const tick = priceTickSchema.safeParse(input);
  return tick.success
    ? { ok: true, message: tick.data }
    : { ok: false, issues: tick.error.issues.map(i => ({ path: formatPath(i.path), message: i.message })) };
}

/** JSON Schema of everything `POST /ingest` accepts per item, for the API docs. */
export function ingestJsonSchema(): unknown {
  return z.toJSONSchema(
    z.union([
      priceTickSchema.in,
      orderBookSchema,
      newsSentimentSchema,
      marketDataSchema,
      economicIndicatorSchema,
    ]),
    { unrepresentable: "any", io: "input" },
  );
}
