import type { LogMessage } from "../adapters/log/types";
import { parseMessage, type PriceTick, type SymbolSideData } from "../domain/messages";
import type { SymbolActor, TickResult } from "../domain/symbol-actor";
import { partitionForKey } from "../lib/partitioner";
import { emptyOutputs, type BatchOutputs, type TickRow } from "./batch-outputs";

/** A log message read for the actors: a symbol's message, a market-wide indicator, or why it can't be applied. */
export type ParsedMessage =
  | { symbol: string; message: PriceTick | SymbolSideData; economic?: undefined }
  | { economic: { indicator_name: string; value: number; timestamp: number } }
  | { reason: string };

/**
 * Parses one log message. A symbol's message keyed into another partition than the one its
 * symbol hashes to (another producer, or a partition count that changed) can't be applied here:
 * its actor lives in the other partition.
 */
export function parseLogMessage(m: LogMessage, partitionCount: number): ParsedMessage {
  if (!m.value) return { reason: "empty message value" };
  let json: unknown;
  try {
    json = JSON.parse(m.value.toString("utf8"));
  } catch (err) {
    return { reason: `not JSON: ${(err as Error).message}` };
  }
  const r = parseMessage(json);
  if (!r.ok) return { reason: r.issues.map(i => `${i.path} ${i.message}`).join("; ") };
  const msg = r.message;
  if (!("stock_symbol" in msg)) return { economic: msg };
  const home = partitionForKey(msg.stock_symbol, partitionCount);
  if (home !== m.partition) {
    return {
      reason: `symbol ${msg.stock_symbol} belongs to partition ${home}, found in ${m.partition} (message key ${JSON.stringify(m.key)})`,
    };
  }
  return { symbol: msg.stock_symbol, message: msg };
}

/** Kafka headers that carry a client request's identity (`Idempotency-Key`) with each of its messages. */
export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
export const IDEMPOTENCY_INDEX_HEADER = "idempotency-index";

/**
 * What a partition has seen of one idempotency key: the highest message index applied (`hi`),
 * the offset that message was read at, and when the log accepted it (ms). A request's messages
 * reach a partition in index order, so a later copy of index <= hi is a repeat of the request.
 */
export interface IdempotencyMark {
  hi: number;
  hiOffset: number;
  at: number;
}

/** What applying one chunk produced. */
export interface ChunkOutcome {
  /** Every row for the results transaction. */
  outputs: BatchOutputs;
  /** Actors whose state changed: their snapshots must be written. */
  touched: SymbolActor[];
  /** The newest tick of each symbol that got one, for live updates. */
  latest: TickResult[];
  /** Idempotency marks this chunk set, to record with the actors' states. */
  marks: Map<string, IdempotencyMark>;
  /** Each changed mark's value before the chunk (undefined: none), to put back if the chunk fails. */
  undo: Map<string, IdempotencyMark | undefined>;
  /** Messages skipped as repeats of a request already applied. */
  duplicates: number;
}

/**
 * The pure step of the engine: a chunk of one partition's messages, in offset order, applied to
 * the actors that own them. No I/O: the caller has already activated an actor for every symbol
 * in `parsed`, and persists, snapshots and commits what this returns.
 */
export function applyChunk(
  partition: number,
  chunk: readonly LogMessage[],
  parsed: readonly ParsedMessage[],
  actorOf: (symbol: string) => SymbolActor,
  marks: Map<string, IdempotencyMark> = new Map(),
): ChunkOutcome {
  const out = emptyOutputs(partition);
  const changed = new Map<string, IdempotencyMark>();
  const undo = new Map<string, IdempotencyMark | undefined>();
  let duplicates = 0;
  /**
   * Whether `m`, sent with idempotency key `key`, repeats a message this partition applied;
   * otherwise the key's mark moves up to it.
   */
  const repeated = (m: LogMessage, key: string | undefined): boolean => {
    if (key === undefined) return false;
    const index = Number(m.headers?.[IDEMPOTENCY_INDEX_HEADER] ?? 0);
    const mark = marks.get(key);
    if (mark && index <= mark.hi && m.offset > mark.hiOffset) return true;
    if (!mark || index > mark.hi) {
      if (!undo.has(key)) undo.set(key, mark);
      const next = { hi: index, hiOffset: m.offset, at: m.timestamp };
      marks.set(key, next);
      changed.set(key, next);
    }
    return false;
  };
  const touched = new Map<string, SymbolActor>();
  const latest = new Map<string, TickResult>();
  const deadLetter = (m: LogMessage, reason: string) =>
    out.deadLetters.push({
      offset: m.offset,
      key: m.key,
      payload: m.value?.toString("utf8") ?? null,
      reason,
    });

  for (let i = 0; i < chunk.length; i++) {
    const m = chunk[i];
    const item = parsed[i];
    if ("reason" in item) {
      deadLetter(m, item.reason);
      continue;
    }
    if (item.economic) {
      // No actor, so no offset of its own: a copy read before is one at or below the mark's offset,
      // and the table ignores it then (keyed by partition and offset).
      if (repeated(m, m.headers?.[IDEMPOTENCY_KEY_HEADER])) {
        duplicates += 1;
        continue;
      }
      const e = item.economic;
      out.economic.push({ name: e.indicator_name, value: e.value, timestamp: e.timestamp, offset: m.offset });
      continue;
    }
    const actor = actorOf(item.symbol);
    // Already applied (a replay after a crash or a rebalance): the actor skips it, below.
    if (repeated(m, m.offset > actor.lastOffset ? m.headers?.[IDEMPOTENCY_KEY_HEADER] : undefined)) {
      actor.skipDuplicate(m.offset);
      touched.set(item.symbol, actor);
      duplicates += 1;
      continue;
    }
    let output;
    try {
      output = actor.apply(item.message, m.offset);
    } catch (err) {
      deadLetter(m, (err as Error).message);
      continue;
    }
    if (output === null) continue;
    touched.set(item.symbol, actor);
    if (output.kind === "tick") {
      const row = output.tick as TickRow;
      row.logTimestamp = m.timestamp;
      out.ticks.push(row);
      latest.set(item.symbol, output.tick);
      if (output.signal) out.signals.push(output.signal);
    } else {
      pushSide(out, output.side.payload, output.side.sideSeq);
    }
  }

  for (const actor of touched.values()) {
    if (!latest.has(actor.symbol)) continue;
    const a = actor.view().aggregates;
    out.aggregates.push({
      symbol: actor.symbol,
      totalVolume: actor.totalVolumeExact(),
      averageVolume: a.average_volume ?? 0,
      averageOpen: a.average_opening_price ?? 0,
      averageClose: a.average_closing_price ?? 0,
      lowest: a.lowest_price ?? 0,
      highest: a.highest_price ?? 0,
      tickCount: a.tick_count,
      firstTimestamp: a.first_timestamp ?? 0,
      lastTimestamp: a.last_timestamp ?? 0,
      lastSeq: actor.seq,
    });
  }
  return {
    outputs: out,
    touched: [...touched.values()],
    latest: [...latest.values()],
    marks: changed,
    undo,
    duplicates,
  };
}

function pushSide(out: BatchOutputs, payload: SymbolSideData, sideSeq: number): void {
  const base = { symbol: payload.stock_symbol, sideSeq, timestamp: payload.timestamp };
  switch (payload.data_type) {
    case "order_book":
      out.orderBook.push({
        ...base,
        orderType: payload.order_type,
        price: payload.price,
        quantity: payload.quantity,
      });
      break;
    case "news_sentiment":
      out.sentiment.push({ ...base, score: payload.sentiment_score, magnitude: payload.sentiment_magnitude });
      break;
    case "market_data":
      out.marketData.push({ ...base, marketCap: payload.market_cap, peRatio: payload.pe_ratio });
      break;
  }
}
