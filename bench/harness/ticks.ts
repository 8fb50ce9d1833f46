import type { PriceTick } from "../../domain/messages";
import { loadConfig } from "../../lib/config";

/** A node's configuration with nothing set: every default. */
export const DEFAULTS = loadConfig({});

/** The default indicator settings: SMA 20, EMA 20, RSI 14, 30/70. */
export const SETTINGS = DEFAULTS.indicators;

/** mulberry32, so every run measures the same input. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The next step of a symbol's random walk from `open`: close within 0.5 %, wicks within 0.2 %. */
export function randomWalkTick(
  random: () => number,
  symbol: string,
  open: number,
  timestamp: number,
): PriceTick {
  const close = open * (1 + (random() - 0.5) * 0.01);
  return {
    stock_symbol: symbol,
    opening_price: open,
    closing_price: close,
    high: Math.max(open, close) * (1 + random() * 0.002),
    low: Math.min(open, close) * (1 - random() * 0.002),
    volume: Math.floor(random() * 10_000),
    timestamp,
  };
}

/**
 * Random walks of the symbols `names` from prices between 20 and 320, one tick of each in turn (as a
 * partition interleaves them) or, with `shuffled`, of a random one each time; the clock moves a second
 * per `names.length` ticks.
 */
export function tickWalk(names: readonly string[], seed: number, shuffled = false): () => PriceTick {
  const random = seededRandom(seed);
  const price = names.map(() => 20 + random() * 300);
  let n = 0;
  return () => {
    const s = shuffled ? Math.floor(random() * names.length) : n % names.length;
    const tick = randomWalkTick(random, names[s], price[s], 1_700_000_000 + Math.floor(n++ / names.length));
    price[s] = tick.closing_price;
    return tick;
  };
}
