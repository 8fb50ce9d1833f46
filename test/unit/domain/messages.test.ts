import fc from "fast-check";
import {
  MAX_EPOCH_SECONDS,
  messageKey,
  MIN_EPOCH_SECONDS,
  parseMessage,
  priceTickSchema,
  validPriceTick,
} from "../../../domain/messages";

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
    fc.constantFrom(0, -0, -1, 1, 99, 100, 101, 102, 1e-300, 1.5, 2 ** 53, 2 ** 53 - 1, Number.MAX_VALUE),
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
