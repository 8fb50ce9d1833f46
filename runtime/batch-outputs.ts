import type { Signal, TickResult } from "../domain/symbol-actor";

export interface TickRow extends TickResult {
  /** When the log accepted the tick (ms): the start of the end-to-end latency. */
  logTimestamp: number;
}

export interface AggregateRow {
  symbol: string;
  /** Exact, as a decimal string: past 2^53 a double loses units (column `numeric`). */
  totalVolume: string;
  averageVolume: number;
  averageOpen: number;
  averageClose: number;
  lowest: number;
  highest: number;
  tickCount: number;
  firstTimestamp: number;
  lastTimestamp: number;
  lastSeq: number;
}

export interface OrderBookRow {
  symbol: string;
  sideSeq: number;
  orderType: "buy" | "sell";
  price: number;
  quantity: number;
  timestamp: number;
}

export interface SentimentRow {
  symbol: string;
  sideSeq: number;
  score: number;
  magnitude: number;
  timestamp: number;
}

export interface MarketDataRow {
  symbol: string;
  sideSeq: number;
  marketCap: number;
  peRatio: number;
  timestamp: number;
}

export interface EconomicRow {
  name: string;
  value: number;
  timestamp: number;
  offset: number;
}

/**
 * Why a message went to `dead_letters` (its `kind` column): `invalid`, it is not a message the
 * system accepts (not JSON, fails the schema, keyed into another partition); `unappliable`, its
 * actor could not apply it (its state would stop being finite, or a late copy of a reused
 * Idempotency-Key); `refused`, Postgres refused its results with a data error, try after try.
 */
export type DeadLetterKind = "invalid" | "unappliable" | "refused";

export interface DeadLetterRow {
  offset: number;
  key: string | null;
  payload: string | null;
  reason: string;
  kind: DeadLetterKind;
}

/** Everything one batch of one partition produced, ready for one database transaction. */
export interface BatchOutputs {
  partition: number;
  ticks: TickRow[];
  signals: Signal[];
  aggregates: AggregateRow[];
  orderBook: OrderBookRow[];
  sentiment: SentimentRow[];
  marketData: MarketDataRow[];
  economic: EconomicRow[];
  deadLetters: DeadLetterRow[];
}

export function emptyOutputs(partition: number): BatchOutputs {
  return {
    partition,
    ticks: [],
    signals: [],
    aggregates: [],
    orderBook: [],
    sentiment: [],
    marketData: [],
    economic: [],
    deadLetters: [],
  };
}
