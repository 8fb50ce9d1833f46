import { messageKey, type StockMessage } from "../../../../../domain/messages";
import type { IndicatorSettings } from "../../../../../domain/symbol-actor";
import { partitionForKey } from "../../../../../lib/partitioner";
import { orderBook, randomWalk, seededRandom, ticksFromCloses } from "../../../domain/fixtures";

/** The input of the actor host scenarios, shared by the scenario runner and the test that checks it. */

export const SETTINGS: IndicatorSettings = {
  smaPeriod: 5,
  emaPeriod: 4,
  rsiPeriod: 3,
  rsiOversold: 30,
  rsiOverbought: 70,
};
export const PARTITIONS = 3;
export const GROUP = "host-test";

export type ScenarioName = "pipeline" | "dead-letters" | "replay" | RecoveryName;

/**
 * The log is consumed in phases by a new host each time, and between phases the snapshot cache
 * is emptied, rolled back to an older copy, filled with other symbols' states and garbage, or
 * fails on every call.
 */
export type RecoveryName = "cache-emptied" | "cache-stale" | "cache-foreign" | "cache-down";
export const RECOVERIES: RecoveryName[] = ["cache-emptied", "cache-stale", "cache-foreign", "cache-down"];

export interface RawRecord {
  key: string;
  value: string;
  /** The valid message it carries, if any. */
  message?: StockMessage;
}

export interface ScenarioResult {
  ticks: Record<string, unknown>[];
  signals: Record<string, unknown>[];
  orderBook: Record<string, unknown>[];
  economic: Record<string, unknown>[];
  deadLetters: Record<string, unknown>[];
  commits: [number, number][];
  snapshots: Record<string, unknown>;
  /** The signals the host handed out for notification. */
  published: { symbol: string; seq: number }[];
  replayed: Omit<ScenarioResult, "commits" | "snapshots" | "replayed" | "records" | "restores"> | null;
  /** Each symbol's state in Postgres' record (table actor_state). */
  records: Record<string, unknown>;
  /** How the hosts activated actors: "source/reason" -> count. */
  restores: Record<string, number>;
}

function messages(): StockMessage[] {
  const random = seededRandom(7);
  const out: StockMessage[] = [];
  for (const symbol of ["AAPL", "MSFT", "TSLA", "BRK.B"]) {
    out.push(...ticksFromCloses(random, symbol, randomWalk(random, 60, 100, 0.08)));
    out.push(orderBook(symbol, "buy", 99.5, 10));
  }
  out.push({
    data_type: "economic_indicator",
    indicator_name: "GDP Growth Rate",
    value: 2.5,
    timestamp: 1_700_000_100,
  });
  return out;
}

/** A key that hashes to `partition`. */
function keyIn(partition: number): string {
  for (let i = 0; ; i++) if (partitionForKey(`K${i}`, PARTITIONS) === partition) return `K${i}`;
}

/** The symbols' messages taken in turn, so that every phase of a recovery scenario moves every symbol. */
function interleaved(all: StockMessage[]): StockMessage[] {
  const bySymbol = new Map<string, StockMessage[]>();
  const rest: StockMessage[] = [];
  for (const m of all) {
    if (!("stock_symbol" in m)) rest.push(m);
    else bySymbol.set(m.stock_symbol, [...(bySymbol.get(m.stock_symbol) ?? []), m]);
  }
  const out: StockMessage[] = [];
  const queues = [...bySymbol.values()];
  for (let i = 0; queues.some(q => i < q.length); i++)
    for (const q of queues) if (i < q.length) out.push(q[i]);
  return [...out, ...rest];
}

export function stream(name: ScenarioName): RawRecord[] {
  const valid = (RECOVERIES as string[]).includes(name) ? interleaved(messages()) : messages();
  const records: RawRecord[] = valid.map(m => ({ key: messageKey(m), value: JSON.stringify(m), message: m }));
  if (name !== "dead-letters") return records;
  const wrongPartition = (partitionForKey("AAPL", PARTITIONS) + 1) % PARTITIONS;
  return [
    ...records,
    { key: "AAPL", value: "{not json" },
    { key: keyIn(wrongPartition), value: JSON.stringify({ ...valid[0], stock_symbol: "AAPL" }) },
    { key: "AAPL", value: JSON.stringify({ stock_symbol: "AAPL", closing_price: -1 }) },
  ];
}
