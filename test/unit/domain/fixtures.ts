import type { PriceTick, SymbolSideData } from "../../../domain/messages";

/** mulberry32: a tiny seeded PRNG, so every "random" test input is the same on every run. */
export function seededRandom(seed: number): () => number {
  // Jest runs tests in a vm context where each global lookup is slow; bind it once for the hot loops.
  const imul = Math.imul;
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Closing prices that move by up to +-`step` (relative) per tick, never flat in practice. */
export function randomWalk(random: () => number, count: number, start = 100, step = 0.02): number[] {
  const out: number[] = [];
  let c = start;
  for (let i = 0; i < count; i++) {
    c *= 1 + (random() - 0.5) * step;
    out.push(c);
  }
  return out;
}

export const T0 = 1_700_000_000;

/** Valid price ticks (low <= open, close <= high) whose closes follow `closes`. */
export function ticksFromCloses(
  random: () => number,
  symbol: string,
  closes: readonly number[],
): PriceTick[] {
  let open = closes[0];
  let ts = T0;
  return closes.map(close => {
    const tick: PriceTick = {
      stock_symbol: symbol,
      opening_price: open,
      closing_price: close,
      high: Math.max(open, close) * (1 + random() * 0.005),
      low: Math.min(open, close) * (1 - random() * 0.005),
      volume: Math.floor(random() * 10_000),
      timestamp: ts,
    };
    open = close;
    ts += Math.floor(random() * 20);
    return tick;
  });
}

export function orderBook(
  symbol: string,
  side: "buy" | "sell",
  price: number,
  quantity: number,
  ts = T0,
): SymbolSideData {
  return { data_type: "order_book", stock_symbol: symbol, order_type: side, price, quantity, timestamp: ts };
}

/** `|a - b| <= rel * max(|a|, |b|)`, and null only matches null. */
export function closeRelative(a: number | null, b: number | null, rel: number): boolean {
  if (a === null || b === null) return a === b;
  if (a === b) return true;
  return Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b));
}

/** The first index where two series disagree beyond `rel`, with both values, or null when they agree. */
export function firstMismatch(
  actual: readonly (number | null)[],
  expected: readonly (number | null)[],
  rel: number,
): { index: number; actual: number | null | undefined; expected: number | null | undefined } | null {
  const len = Math.max(actual.length, expected.length);
  for (let i = 0; i < len; i++) {
    const a = actual[i];
    const e = expected[i];
    if (a === undefined || e === undefined || !closeRelative(a, e, rel))
      return { index: i, actual: a, expected: e };
  }
  return null;
}
