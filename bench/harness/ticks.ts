import type { PriceTick } from "../../domain/messages";
import type { IndicatorSettings } from "../../domain/symbol-actor";

/** The default indicator settings (lib/config.ts): SMA 20, EMA 20, RSI 14, 30/70. */
export const SETTINGS: IndicatorSettings = {
  smaPeriod: 20,
  emaPeriod: 20,
  rsiPeriod: 14,
  rsiOversold: 30,
  rsiOverbought: 70,
};

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
