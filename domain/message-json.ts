import type { PriceTick, StockMessage } from "./messages";

/**
 * A validated message as it goes to the log: exactly `JSON.stringify(message)`, byte for byte. A
 * price tick, nearly all the traffic, is written from a template, about twice as fast: a ticker
 * (TICKER_PATTERN) needs no escaping, and a finite number is written as `String(n)` by both.
 * test/unit/domain/message-json.test.ts checks the equality on generated ticks.
 */
export function messageJson(m: StockMessage): string {
  return "data_type" in m ? JSON.stringify(m) : priceTickJson(m);
}

function priceTickJson(t: PriceTick): string {
  return (
    '{"stock_symbol":"' +
    t.stock_symbol +
    '","opening_price":' +
    t.opening_price +
    ',"closing_price":' +
    t.closing_price +
    ',"high":' +
    t.high +
    ',"low":' +
    t.low +
    ',"volume":' +
    t.volume +
    ',"timestamp":' +
    t.timestamp +
    "}"
  );
}
