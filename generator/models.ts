import type {
  EconomicIndicator,
  MarketData,
  NewsSentiment,
  OrderBook,
  PriceTick,
  StockMessage,
} from "../domain/messages";
import { TICKER_PATTERN } from "../domain/messages";
import { createRandom, type Random, type Seed } from "./random";

/**
 * The messages the course generator sends (docs/generator-contract.md), as pure builders:
 * randomness comes in as a `Random`, time as a number, so the same seed replays the same content.
 */

export const COURSE_SYMBOLS = ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA"] as const;

/** `iid`: the course's independent draws around 1000; `walk`: a per-symbol random walk whose RSI moves. */
export type PriceModel = "iid" | "walk";
export const PRICE_MODELS: readonly PriceModel[] = ["iid", "walk"];

/** The course runs two threads; each message belongs to one of them. */
export type Stream = "price" | "additional";

export type AdditionalMessage = OrderBook | NewsSentiment | MarketData | EconomicIndicator;
export type GeneratedMessage = StockMessage;

const COURSE_BASE_PRICE = 1000;
// The course's daily GBM step, applied once to a price that is reset to 1000 on every tick.
const COURSE_DRIFT = 0.0002;
const COURSE_VOLATILITY = 0.01;

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Poisson(5000) scaled by (1 + 0.1 N(0,1)) and truncated: mean 5000, sd about 510, so 2900..7200 in practice. */
export function courseVolume(rng: Random): number {
  return Math.max(0, Math.trunc(rng.poisson(5000) * (1 + 0.1 * rng.normal())));
}

/**
 * The course's price tick: open = 1000 * one GBM step (about 1000 +- 10), close = open + N(0,10) rounded
 * to cents, high and low = the larger and smaller of the two pushed out by |N(0,5)| rounded to cents.
 */
export function coursePriceTick(rng: Random, symbol: string, timestamp: number): PriceTick {
  const growth = Math.exp(COURSE_DRIFT - 0.5 * COURSE_VOLATILITY ** 2 + COURSE_VOLATILITY * rng.normal());
  const open = Math.max(0, COURSE_BASE_PRICE * growth);
  const close = Math.max(0, open + round2(rng.normal(0, 10)));
  const high = Math.max(open, close) + round2(Math.abs(rng.normal(0, 5)));
  const low = Math.min(open, close) - round2(Math.abs(rng.normal(0, 5)));
  return {
    stock_symbol: symbol,
    opening_price: open,
    closing_price: close,
    high,
    low,
    volume: courseVolume(rng),
    timestamp,
  };
}

export interface WalkParameters {
  /** Standard deviation of one tick's log-return. */
  volatility: number;
  /** Pull of the log-price back toward its anchor per tick. */
  meanReversion: number;
}

/**
 * 1.5% per tick makes RSI(14) spend roughly 5% of its time on each side of 30..70 (a few dozen
 * crossings per 2000 ticks). The weak pull to the anchor (stationary sd of the log-price about 0.34)
 * barely changes that but keeps a feed that runs for days between roughly a third and three times
 * its start price instead of drifting off to 0 or infinity.
 */
export const DEFAULT_WALK: WalkParameters = { volatility: 0.015, meanReversion: 0.001 };

/**
 * One tick of a mean-reverting geometric random walk that starts where the previous tick closed.
 * High and low stretch the body multiplicatively, so they stay positive and on the right side of it.
 */
export function walkPriceTick(
  rng: Random,
  symbol: string,
  previousClose: number,
  anchor: number,
  timestamp: number,
  params: WalkParameters = DEFAULT_WALK,
): PriceTick {
  const open = previousClose;
  const logReturn = -params.meanReversion * Math.log(open / anchor) + rng.normal(0, params.volatility);
  const close = open * Math.exp(logReturn);
  const wick = params.volatility / 2;
  return {
    stock_symbol: symbol,
    opening_price: open,
    closing_price: close,
    high: Math.max(open, close) * Math.exp(Math.abs(rng.normal(0, wick))),
    low: Math.min(open, close) * Math.exp(-Math.abs(rng.normal(0, wick))),
    volume: courseVolume(rng),
    timestamp,
  };
}

export function orderBook(rng: Random, symbol: string, timestamp: number): OrderBook {
  return {
    data_type: "order_book",
    timestamp,
    stock_symbol: symbol,
    order_type: rng.choice(["buy", "sell"] as const),
    price: rng.uniform(100, 1000),
    quantity: rng.int(1, 100),
  };
}

export function newsSentiment(rng: Random, symbol: string, timestamp: number): NewsSentiment {
  return {
    data_type: "news_sentiment",
    timestamp,
    stock_symbol: symbol,
    sentiment_score: rng.uniform(-1, 1),
    sentiment_magnitude: rng.uniform(0, 1),
  };
}

export function marketData(rng: Random, symbol: string, timestamp: number): MarketData {
  return {
    data_type: "market_data",
    timestamp,
    stock_symbol: symbol,
    market_cap: rng.uniform(1e9, 1e12),
    pe_ratio: rng.uniform(5, 30),
  };
}

/** Market-wide, so it carries no `stock_symbol`: the contract's trap for schemas that require one. */
export function economicIndicator(rng: Random, timestamp: number): EconomicIndicator {
  return {
    data_type: "economic_indicator",
    timestamp,
    indicator_name: "GDP Growth Rate",
    value: rng.uniform(-5, 5),
  };
}

const ADDITIONAL_TYPES = ["order_book", "news_sentiment", "market_data", "economic_indicator"] as const;

/** The course's additional stream: a symbol, then one of the four types with equal probability. */
export function additionalMessage(
  rng: Random,
  symbols: readonly string[],
  timestamp: number,
): AdditionalMessage {
  // The symbol is drawn even for economic_indicator, as the course does, so each type's draws line up.
  const symbol = rng.choice(symbols);
  switch (rng.choice(ADDITIONAL_TYPES)) {
    case "order_book":
      return orderBook(rng, symbol, timestamp);
    case "news_sentiment":
      return newsSentiment(rng, symbol, timestamp);
    case "market_data":
      return marketData(rng, symbol, timestamp);
    case "economic_indicator":
      return economicIndicator(rng, timestamp);
  }
}

/** `n` tickers S0001, S0002, ...: valid under the gateway's ticker pattern and sorted as text. */
export function syntheticSymbols(n: number): string[] {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`the number of symbols must be a positive integer, got ${n}`);
  const width = Math.max(4, String(n).length);
  return Array.from({ length: n }, (_, i) => `S${String(i + 1).padStart(width, "0")}`);
}

export function isValidTicker(symbol: string): boolean {
  return TICKER_PATTERN.test(symbol);
}

/** Message time as the course sends it: seconds since the epoch, with a sub-millisecond fraction. */
export function epochSecondsNow(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

export interface MessageSourceOptions {
  symbols?: readonly string[];
  model?: PriceModel;
  seed?: Seed;
  /** The clock for `timestamp`, in epoch **seconds** (not milliseconds). */
  now?: () => number;
  walk?: WalkParameters;
}

export interface MessageSource {
  next(stream: Stream): GeneratedMessage;
  nextPrice(): PriceTick;
  nextAdditional(): AdditionalMessage;
}

interface WalkState {
  close: number;
  anchor: number;
}

/**
 * The two streams of the course generator. Each stream draws from its own PRNG, derived from the
 * seed, so its sequence of messages replays exactly however the two streams interleave in time.
 */
export function createMessageSource(options: MessageSourceOptions = {}): MessageSource {
  const symbols = options.symbols ?? COURSE_SYMBOLS;
  if (symbols.length === 0) throw new RangeError("at least one symbol is needed");
  const invalid = symbols.filter(s => !isValidTicker(s));
  if (invalid.length > 0) {
    throw new RangeError(
      `not a valid ticker (upper case, like AAPL or BRK.B): ${invalid.slice(0, 5).join(", ")}`,
    );
  }
  const model = options.model ?? "iid";
  const seed = options.seed ?? `${Date.now()}:${Math.random()}`;
  const now = options.now ?? epochSecondsNow;
  const walk = options.walk ?? DEFAULT_WALK;
  const priceRng = createRandom(`${seed}:price`);
  const additionalRng = createRandom(`${seed}:additional`);
  const walks = new Map<string, WalkState>();

  const nextPrice = (): PriceTick => {
    const symbol = priceRng.choice(symbols);
    if (model === "iid") return coursePriceTick(priceRng, symbol, now());
    let state = walks.get(symbol);
    if (state === undefined) {
      // Start prices spread like the course's order-book prices, so symbols are told apart on a chart.
      const start = priceRng.uniform(100, 1000);
      state = { close: start, anchor: start };
      walks.set(symbol, state);
    }
    const tick = walkPriceTick(priceRng, symbol, state.close, state.anchor, now(), walk);
    state.close = tick.closing_price;
    return tick;
  };
  const nextAdditional = (): AdditionalMessage => additionalMessage(additionalRng, symbols, now());

  return {
    next: stream => (stream === "price" ? nextPrice() : nextAdditional()),
    nextPrice,
    nextAdditional,
  };
}
