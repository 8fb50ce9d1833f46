import fc from "fast-check";
import { messageJson } from "../../../domain/message-json";
import {
  MAX_EPOCH_SECONDS,
  MAX_PRICE,
  MAX_VOLUME,
  MIN_EPOCH_SECONDS,
  MIN_PRICE,
  parseMessage,
  type StockMessage,
} from "../../../domain/messages";

/** What goes to Kafka must not depend on which writer wrote it: messageJson is JSON.stringify, byte for byte. */

/** Every price the schema accepts, its bounds included (the smallest, 1e-6, is where String() would turn to exponents). */
const price = fc.oneof(
  fc.double({ min: MIN_PRICE, max: MAX_PRICE, noNaN: true }),
  fc.constantFrom(MIN_PRICE, 1.5e-6, 0.1 + 0.2, 123456789.123, MAX_PRICE, 995.6848523475071),
);

const tick = fc
  .record({
    stock_symbol: fc.stringMatching(/^[A-Z0-9]{1,10}(?:[.-][A-Z0-9]{1,6}){0,2}$/),
    prices: fc.array(price, { minLength: 4, maxLength: 4 }),
    volume: fc.oneof(fc.nat(), fc.constantFrom(0, -0, 1e11 + 1, MAX_VOLUME)),
    timestamp: fc.oneof(
      fc.double({ min: MIN_EPOCH_SECONDS, max: MAX_EPOCH_SECONDS, maxExcluded: true, noNaN: true }),
      fc.integer({ min: MIN_EPOCH_SECONDS, max: MAX_EPOCH_SECONDS - 1 }),
    ),
  })
  .map(({ stock_symbol, prices, volume, timestamp }) => {
    const [low, open, close, high] = [...prices].sort((a, b) => a - b);
    return { stock_symbol, opening_price: open, closing_price: close, high, low, volume, timestamp };
  });

function validated(input: unknown): StockMessage {
  const r = parseMessage(input);
  if (!r.ok) throw new Error(`not valid: ${JSON.stringify(r.issues)}`);
  return r.message;
}

describe("messageJson", () => {
  it("writes a validated price tick exactly as JSON.stringify does", () => {
    fc.assert(
      fc.property(tick, input => {
        for (const m of [validated(input), validated(JSON.parse(JSON.stringify(input)))]) {
          expect(messageJson(m)).toBe(JSON.stringify(m));
        }
      }),
      { numRuns: 20000 },
    );
  });

  it("writes side data with JSON.stringify", () => {
    const m = validated({
      data_type: "order_book",
      timestamp: 1764151200.5,
      stock_symbol: "AAPL",
      order_type: "buy",
      price: 1000.25,
      quantity: 3,
    });
    expect(messageJson(m)).toBe(JSON.stringify(m));
  });
});
