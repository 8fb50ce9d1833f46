import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { GatewayClient } from "../../../replay/client";
import type { ReplayOptions } from "../../../replay/run";

export interface BarSpec {
  date: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

/** `n` valid daily bars from 2001-01-01 on, one per calendar day, on a deterministic zigzag walk. */
export function dailyBars(n: number, start = Date.UTC(2001, 0, 1)): BarSpec[] {
  const bars: BarSpec[] = [];
  let close = 100;
  for (let i = 0; i < n; i++) {
    const open = close;
    close = open * (1 + 0.01 * Math.sin(i * 1.7) + 0.004 * Math.cos(i * 0.3));
    bars.push({
      date: new Date(start + i * 86_400_000).toISOString().slice(0, 10),
      open,
      high: Math.max(open, close) + 0.5,
      low: Math.min(open, close) - 0.5,
      close,
      volume: 1000 + i,
    });
  }
  return bars;
}

/** Yahoo's layout: Date,Open,High,Low,Close,Adj Close,Volume. */
export function yahooCsv(bars: readonly BarSpec[]): string {
  return [
    "Date,Open,High,Low,Close,Adj Close,Volume",
    ...bars.map(b => `${b.date},${b.open},${b.high},${b.low},${b.close},${b.close},${b.volume}`),
  ].join("\n");
}

/** A fresh temporary folder, removed by `cleanup`. */
export function tempDir(prefix = "replay-test-"): { dir: string; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** 21:00 UTC of a `YYYY-MM-DD` date, in epoch seconds: when the replay sends a daily bar. */
export const barTime = (date: string) => Date.parse(`${date}T21:00:00Z`) / 1000;

/** The engine's options for a test: full speed, 1 ms between retries, nothing aborted. */
export function engineOptions(
  client: GatewayClient,
  log: (line: string) => void,
  overrides: Partial<ReplayOptions> = {},
): ReplayOptions {
  return {
    client,
    pacing: { kind: "max" },
    batchSize: 1000,
    concurrency: 4,
    retries: 3,
    stop: new AbortController().signal,
    abandon: new AbortController().signal,
    log,
    backoffMs: () => 1,
    reconcileTimeoutMs: 10_000,
    ...overrides,
  };
}
