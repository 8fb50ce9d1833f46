import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import {
  ingestJsonSchema,
  MAX_EPOCH_SECONDS,
  MAX_INDICATOR_VALUE,
  MAX_MARKET_CAP,
  MAX_PE_RATIO,
  MAX_PRICE,
  MAX_SENTIMENT_MAGNITUDE,
  MAX_VOLUME,
  messageKey,
  MIN_EPOCH_SECONDS,
  MIN_PRICE,
  parseMessage,
  priceTickSchema,
  validPriceTick,
} from "../../../domain/messages";

/** The double next to `x` towards `direction`: "just beyond" a bound that is not a whole number. */
function nextDouble(x: number, direction: 1 | -1): number {
  if (x === 0) return direction * Number.MIN_VALUE;
  const bits = new BigInt64Array(new Float64Array([x]).buffer);
  bits[0] += x > 0 === direction > 0 ? 1n : -1n;
  return new Float64Array(bits.buffer)[0];
}

const economic = {
  data_type: "economic_indicator",
  timestamp: 1764151200,
  indicator_name: "GDP Growth Rate",
  value: -1.5,
};

describe("economic indicator messages", () => {
  it("are accepted without a symbol and keyed by their indicator name", () => {
    const r = parseMessage(economic);
    expect(r.ok).toBe(true);
    if (r.ok) expect(messageKey(r.message)).toBe("GDP Growth Rate");
  });

  it("reject an indicator name with control characters, which Postgres text cannot always hold", () => {
    const r = parseMessage({ ...economic, indicator_name: "GDP\u0000Rate" });
    expect(r).toEqual({
      ok: false,
      issues: [{ path: "indicator_name", message: "must not contain control characters" }],
    });
  });
});

describe("price ticks: the fast path agrees with the schema", () => {
  const valid = {
    stock_symbol: "AAPL",
    opening_price: 100,
    closing_price: 101,
    high: 102,
    low: 99,
    volume: 1000,
    timestamp: 1_700_000_000,
  };
  /** Near the edges of every rule: types, signs, bounds, NaN-like values, the high/low relations. */
  const number = fc.oneof(
    fc.constantFrom(
      0,
      -0,
      -1,
      1,
      99,
      100,
      101,
      102,
      1e-300,
      1.5,
      2 ** 53,
      2 ** 53 - 1,
      Number.MAX_VALUE,
      1e308,
    ),
    fc.constantFrom(MIN_PRICE, nextDouble(MIN_PRICE, -1), MAX_PRICE, nextDouble(MAX_PRICE, 1)),
    fc.constantFrom(MAX_VOLUME, MAX_VOLUME + 1, MAX_VOLUME - 0.5),
    fc.constantFrom(MIN_EPOCH_SECONDS, MIN_EPOCH_SECONDS - 1e-6, MAX_EPOCH_SECONDS, MAX_EPOCH_SECONDS - 1e-6),
    fc.constantFrom(1_700_000_000_000, Infinity, -Infinity, NaN),
    fc.double(),
    fc.integer(),
  );
  const anything = fc.oneof(
    number,
    fc.string(),
    fc.constant(null),
    fc.constant(undefined),
    fc.boolean(),
    fc.constant([]),
  );
  const field = fc.oneof({ weight: 3, arbitrary: number }, { weight: 1, arbitrary: anything });
  const tick = fc.record(
    {
      stock_symbol: fc.oneof(fc.constantFrom("AAPL", "BRK.B", "aapl", "", "A".repeat(11), "BF-B"), anything),
      opening_price: field,
      closing_price: field,
      high: field,
      low: field,
      volume: field,
      timestamp: field,
      data_type: fc.oneof(fc.constant(undefined), anything),
      extra: anything,
    },
    { requiredKeys: [] },
  );

  it("accepts exactly what zod accepts, as the same object with the same keys in the same order", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          tick,
          tick.map(t => ({ ...valid, ...t })),
        ),
        input => {
          const fast = validPriceTick(input);
          const zod = priceTickSchema.safeParse(input);
          if (fast) {
            expect(zod.success).toBe(true);
            expect(Object.keys(fast)).toEqual(Object.keys(zod.data!));
            expect(Object.is(fast.volume, zod.data!.volume)).toBe(true);
            expect(fast).toEqual(zod.data);
          }
          // What the fast path leaves to zod, zod still decides.
          const r = parseMessage(input);
          expect(r.ok).toBe(zod.success || (input.data_type !== undefined && r.ok));
        },
      ),
      { numRuns: 10000 },
    );
  });

  it("takes the fast path for well-formed ticks, with extra fields stripped", () => {
    expect(validPriceTick({ ...valid, note: "x" })).toEqual(valid);
    expect(validPriceTick({ ...valid, low: 101.5 })).toBeNull();
    expect(parseMessage({ ...valid, low: 101.5 })).toEqual({
      ok: false,
      issues: [{ path: "low", message: "must not be above opening_price or closing_price" }],
    });
  });
});

const tick = (o: Record<string, unknown> = {}) => ({
  stock_symbol: "XOM",
  opening_price: 100,
  closing_price: 100,
  high: 100,
  low: 100,
  volume: 1000,
  timestamp: 1_700_000_000,
  ...o,
});
const side = {
  order_book: (o: Record<string, unknown>) => ({
    data_type: "order_book",
    timestamp: 1_700_000_000,
    stock_symbol: "XOM",
    order_type: "buy",
    price: 100,
    quantity: 10,
    ...o,
  }),
  news_sentiment: (o: Record<string, unknown>) => ({
    data_type: "news_sentiment",
    timestamp: 1_700_000_000,
    stock_symbol: "XOM",
    sentiment_score: 0.5,
    sentiment_magnitude: 0.5,
    ...o,
  }),
  market_data: (o: Record<string, unknown>) => ({
    data_type: "market_data",
    timestamp: 1_700_000_000,
    stock_symbol: "XOM",
    market_cap: 1e12,
    pe_ratio: 20,
    ...o,
  }),
  economic_indicator: (o: Record<string, unknown>) => ({
    data_type: "economic_indicator",
    timestamp: 1_700_000_000,
    indicator_name: "GDP Growth Rate",
    value: 1.5,
    ...o,
  }),
};

/** A price at its bound, with the tick's other prices moved along so that low <= open, close <= high holds. */
const allPrices = (v: number) => tick({ opening_price: v, closing_price: v, high: v, low: v });

interface Bound {
  field: string;
  make: (v: number) => Record<string, unknown>;
  limit: number;
  beyond: number;
  message: string;
}

const price = (field: string, make: (v: number) => Record<string, unknown>): Bound[] => [
  {
    field,
    make,
    limit: MIN_PRICE,
    beyond: nextDouble(MIN_PRICE, -1),
    message: "must be at least 0.000001 (1e-6)",
  },
  {
    field,
    make,
    limit: MAX_PRICE,
    beyond: nextDouble(MAX_PRICE, 1),
    message: "must be at most 1000000000 (1e9)",
  },
];
/**
 * A tick with one price at `v` and the other prices where the high/low rules want them, so that
 * the price alone decides. Past its bound a price is refused before those rules are checked.
 */
const onlyPrice = (field: string) => (v: number) => {
  const near = Math.min(MAX_PRICE, Math.max(MIN_PRICE, v));
  const others = field === "low" ? Math.max(near, 1) : field === "high" ? Math.min(near, 1) : 1;
  return tick({
    opening_price: others,
    closing_price: others,
    high: Math.max(near, others),
    low: Math.min(near, others),
    [field]: v,
  });
};

const BOUNDS: Bound[] = [
  ...["opening_price", "closing_price", "high", "low"].flatMap(f => price(f, onlyPrice(f))),
  ...price("price", v => side.order_book({ price: v })),
  { field: "volume", make: v => tick({ volume: v }), limit: 0, beyond: -1, message: "must not be negative" },
  {
    field: "volume",
    make: v => tick({ volume: v }),
    limit: MAX_VOLUME,
    beyond: MAX_VOLUME + 1,
    message: "must be at most 1000000000000 (1e12)",
  },
  {
    field: "quantity",
    make: v => side.order_book({ quantity: v }),
    limit: 1,
    beyond: 0,
    message: "must be at least 1",
  },
  {
    field: "quantity",
    make: v => side.order_book({ quantity: v }),
    limit: MAX_VOLUME,
    beyond: MAX_VOLUME + 1,
    message: "must be at most 1000000000000 (1e12)",
  },
  {
    field: "market_cap",
    make: v => side.market_data({ market_cap: v }),
    limit: Number.MIN_VALUE,
    beyond: 0,
    message: "must be greater than 0",
  },
  {
    field: "market_cap",
    make: v => side.market_data({ market_cap: v }),
    limit: MAX_MARKET_CAP,
    beyond: nextDouble(MAX_MARKET_CAP, 1),
    message: "must be at most 10000000000000000 (1e16)",
  },
  {
    field: "pe_ratio",
    make: v => side.market_data({ pe_ratio: v }),
    limit: -MAX_PE_RATIO,
    beyond: nextDouble(-MAX_PE_RATIO, -1),
    message: "must be at least -1000000 (-1e6)",
  },
  {
    field: "pe_ratio",
    make: v => side.market_data({ pe_ratio: v }),
    limit: MAX_PE_RATIO,
    beyond: nextDouble(MAX_PE_RATIO, 1),
    message: "must be at most 1000000 (1e6)",
  },
  {
    field: "sentiment_magnitude",
    make: v => side.news_sentiment({ sentiment_magnitude: v }),
    limit: 0,
    beyond: nextDouble(0, -1),
    message: "must not be negative",
  },
  {
    field: "sentiment_magnitude",
    make: v => side.news_sentiment({ sentiment_magnitude: v }),
    limit: MAX_SENTIMENT_MAGNITUDE,
    beyond: nextDouble(MAX_SENTIMENT_MAGNITUDE, 1),
    message: "must be at most 1000000 (1e6)",
  },
  {
    field: "sentiment_score",
    make: v => side.news_sentiment({ sentiment_score: v }),
    limit: -1,
    beyond: nextDouble(-1, -1),
    message: "must be between -1 and 1",
  },
  {
    field: "sentiment_score",
    make: v => side.news_sentiment({ sentiment_score: v }),
    limit: 1,
    beyond: nextDouble(1, 1),
    message: "must be between -1 and 1",
  },
  {
    field: "value",
    make: v => side.economic_indicator({ value: v }),
    limit: -MAX_INDICATOR_VALUE,
    beyond: nextDouble(-MAX_INDICATOR_VALUE, -1),
    message: "must be at least -1000000000000000 (-1e15)",
  },
  {
    field: "value",
    make: v => side.economic_indicator({ value: v }),
    limit: MAX_INDICATOR_VALUE,
    beyond: nextDouble(MAX_INDICATOR_VALUE, 1),
    message: "must be at most 1000000000000000 (1e15)",
  },
];

describe("bounds on every number a message carries", () => {
  it.each(BOUNDS.map(b => [b.field, b.limit, b] as const))("accept %s at %p", (_, limit, b) => {
    const r = parseMessage(b.make(limit));
    expect(r.ok ? [] : r.issues).toEqual([]);
  });

  it.each(BOUNDS.map(b => [b.field, b.beyond, b] as const))(
    "refuse %s at %p, naming the field and the bound",
    (_, beyond, b) => {
      expect(parseMessage(b.make(beyond))).toEqual({
        ok: false,
        issues: [{ path: b.field, message: b.message }],
      });
    },
  );

  it("refuse the ticks that once halted a partition: prices of 1e308, a volume of 2^53 - 1", () => {
    expect(parseMessage(allPrices(1e308))).toEqual({
      ok: false,
      issues: ["opening_price", "closing_price", "high", "low"].map(path => ({
        path,
        message: "must be at most 1000000000 (1e9)",
      })),
    });
    expect(parseMessage(tick({ volume: 9007199254740991 }))).toEqual({
      ok: false,
      issues: [{ path: "volume", message: "must be at most 1000000000000 (1e12)" }],
    });
  });

  it("say a volume or a quantity past the bound is too big, not that it is not whole", () => {
    expect(parseMessage(tick({ volume: 1e20 }))).toEqual({
      ok: false,
      issues: [{ path: "volume", message: "must be at most 1000000000000 (1e12)" }],
    });
    expect(parseMessage(side.order_book({ quantity: 2.5 }))).toEqual({
      ok: false,
      issues: [{ path: "quantity", message: "must be a whole number" }],
    });
  });

  it("leave a negative volume beside the other findings, as the README's example shows", () => {
    const r = parseMessage({
      stock_symbol: "AAPL",
      opening_price: 1000,
      closing_price: 1001,
      high: 999,
      low: 998,
      volume: -5,
      timestamp: 1764151200123,
    });
    expect(r.ok ? [] : r.issues.map(i => i.path)).toEqual(["volume", "timestamp", "high"]);
  });

  it("keep the largest index volume of the repo's S&P 500 sample accepted", () => {
    const csv = fs.readFileSync(path.join(__dirname, "../../../samples/sp500-2000.csv"), "utf8");
    const volumes = csv
      .trim()
      .split("\n")
      .slice(1)
      .map(line => Number(line.split(",")[6]));
    const largest = Math.max(...volumes);
    expect(largest).toBeGreaterThan(1e10);
    expect(parseMessage(tick({ volume: largest })).ok).toBe(true);
  });

  it("appear in the JSON Schema of POST /ingest as minimum and maximum", () => {
    const schema = ingestJsonSchema() as { anyOf: { properties: Record<string, Record<string, unknown>> }[] };
    const [priceTick, orderBook, sentiment, market, economic] = schema.anyOf.map(s => s.properties);
    const range = (minimum: number, maximum: number) => ({ type: "number", minimum, maximum });
    for (const f of ["opening_price", "closing_price", "high", "low"])
      expect(priceTick[f]).toEqual(range(MIN_PRICE, MAX_PRICE));
    expect(priceTick.volume).toEqual({ type: "integer", minimum: 0, maximum: MAX_VOLUME });
    expect(orderBook.price).toEqual(range(MIN_PRICE, MAX_PRICE));
    expect(orderBook.quantity).toEqual({ type: "integer", minimum: 1, maximum: MAX_VOLUME });
    expect(sentiment.sentiment_score).toEqual(range(-1, 1));
    expect(sentiment.sentiment_magnitude).toEqual(range(0, MAX_SENTIMENT_MAGNITUDE));
    expect(market.market_cap).toEqual({ type: "number", exclusiveMinimum: 0, maximum: MAX_MARKET_CAP });
    expect(market.pe_ratio).toEqual(range(-MAX_PE_RATIO, MAX_PE_RATIO));
    expect(economic.value).toEqual(range(-MAX_INDICATOR_VALUE, MAX_INDICATOR_VALUE));
  });
});
