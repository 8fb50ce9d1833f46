import type { LogMessage } from "../adapters/log/types";
import { parseMessage, type PriceTick, type SymbolSideData } from "../domain/messages";
import type { SymbolActor, TickResult } from "../domain/symbol-actor";
import { partitionForKey } from "../lib/partitioner";
import { StockError } from "../domain/errors";
import {
  emptyOutputs,
  type AggregateRow,
  type BatchOutputs,
  type DeadLetterKind,
  type TickRow,
} from "./batch-outputs";

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

/**
 * Kafka headers that carry a client request's identity with each of its messages: its
 * `Idempotency-Key`, which use of the key it is (the key store numbers them, growing: a key
 * reused after its TTL is a new use), and the message's index in the request.
 */
export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
export const IDEMPOTENCY_USE_HEADER = "idempotency-use";
export const IDEMPOTENCY_INDEX_HEADER = "idempotency-index";

/**
 * What a partition has seen of one idempotency key: which use of it (0: a mark or message from
 * before uses were numbered), the highest message index applied (`hi`), the offset that message
 * was read at, and when the log accepted it (ms, for pruning only). A request's messages reach a
 * partition in index order, so a later copy of index <= hi of the same use is a repeat.
 */
export interface IdempotencyMark {
  use: number;
  hi: number;
  hiOffset: number;
  at: number;
}

/** A mark with its key, as the record carries it (table `idempotency_marks`). */
export interface KeyedMark extends IdempotencyMark {
  key: string;
}

/** A message to dead-letter unapplied, wherever the log hands it again: why, and the row's kind. */
export interface Refusal {
  kind: DeadLetterKind;
  reason: string;
}

/**
 * Applying the message at `offset` would leave its actor's state not finite (a sum overflowed).
 * The caller puts the actor back and dead-letters the message (`refused` of `applyChunk`).
 */
export class UnappliableMessageError extends StockError {
  constructor(
    readonly offset: number,
    readonly symbol: string,
  ) {
    super(
      `the message at offset ${offset} would leave the state of ${symbol} not finite (a sum or average ` +
        "overflowed); not applied",
    );
  }
}

/** What applying one chunk produced. */
export interface ChunkOutcome {
  /** Every row for the results transaction. */
  outputs: BatchOutputs;
  /** Actors whose state changed: their snapshots must be written. */
  touched: SymbolActor[];
  /** The newest tick of each symbol that got one, for live updates. */
  latest: TickResult[];
  /** Idempotency marks this chunk set (the caller's map is left alone), to record with the states. */
  marks: Map<string, IdempotencyMark>;
  /** Messages skipped as repeats of a request already applied. */
  duplicates: number;
}

/**
 * What a message sent with an idempotency key is, against the partition's mark of that key:
 * `stored`, at or below the offset the mark was set at (a replay: already decided, and what it
 * produced is stored); `stale`, a copy of an older use of a key that was reused since; `repeat`,
 * a copy of a message of the same use already applied; else `apply`.
 */
function judge(mark: IdempotencyMark | undefined, use: number, index: number, offset: number) {
  if (!mark) return "apply";
  if (offset <= mark.hiOffset) return "stored";
  // Unnumbered marks and messages (from before uses were numbered) compare by index alone.
  const numbered = mark.use !== 0 && use !== 0;
  if (numbered && use > mark.use) return "apply";
  if (numbered && use < mark.use) return "stale";
  return index <= mark.hi ? "repeat" : "apply";
}

/** The idempotency decisions of one chunk: the partition's marks, with this chunk's on top. */
class ChunkMarks {
  readonly changed = new Map<string, IdempotencyMark>();
  duplicates = 0;

  constructor(private readonly marks: ReadonlyMap<string, IdempotencyMark>) {}

  /** The verdict on `m` (sent with `key`); an applied message moves the key's mark up to it. */
  judge(m: LogMessage, key: string): "apply" | "repeat" | "stored" | "stale" {
    const use = Number(m.headers?.[IDEMPOTENCY_USE_HEADER] ?? 0);
    const index = Number(m.headers?.[IDEMPOTENCY_INDEX_HEADER] ?? 0);
    const mark = this.changed.get(key) ?? this.marks.get(key);
    const verdict = judge(mark, use, index, m.offset);
    if (verdict === "repeat") this.duplicates += 1;
    if (verdict === "apply")
      this.changed.set(key, {
        use: Math.max(use, mark?.use ?? 0),
        hi: index,
        hiOffset: m.offset,
        at: m.timestamp,
      });
    return verdict;
  }

  staleReason(m: LogMessage, key: string): string {
    const mark = this.changed.get(key) ?? this.marks.get(key);
    return (
      `Idempotency-Key ${JSON.stringify(key)}: a late copy of use ${m.headers?.[IDEMPOTENCY_USE_HEADER]} of the ` +
      `key, which was reused since (use ${mark?.use}); not applied`
    );
  }
}

/**
 * The pure step of the engine: a chunk of one partition's messages, in offset order, applied to
 * the actors that own them. No I/O, and nothing of the caller's is changed but the actors: the
 * caller has already activated an actor for every symbol in `parsed`, and persists, snapshots and
 * commits what this returns (the marks included). Messages at the offsets of `refused` are
 * dead-lettered unapplied. Throws `UnappliableMessageError` when a message would leave its
 * actor's state not finite: that actor is then part-way through the chunk, and must be put back.
 */
export function applyChunk(
  partition: number,
  chunk: readonly LogMessage[],
  parsed: readonly ParsedMessage[],
  actorOf: (symbol: string) => SymbolActor,
  marks: ReadonlyMap<string, IdempotencyMark> = new Map(),
  refused: ReadonlyMap<number, Refusal> = new Map(),
): ChunkOutcome {
  const out = emptyOutputs(partition);
  const keys = new ChunkMarks(marks);
  const touched = new Map<string, SymbolActor>();
  const latest = new Map<string, TickResult>();
  const deadLetter = (m: LogMessage, reason: string, kind: DeadLetterKind) =>
    out.deadLetters.push({
      offset: m.offset,
      key: m.key,
      payload: m.value?.toString("utf8") ?? null,
      reason,
      kind,
    });

  for (let i = 0; i < chunk.length; i++) {
    const m = chunk[i];
    const item = parsed[i];
    const refusal = refused.get(m.offset);
    if ("reason" in item) {
      deadLetter(m, item.reason, "invalid");
      continue;
    }
    if (item.economic) {
      // No actor, so the key's mark alone says what a replayed copy was: one at or below the
      // mark's offset was decided (and stored, if applied) before.
      const key = m.headers?.[IDEMPOTENCY_KEY_HEADER];
      const verdict = refusal ? "refused" : key === undefined ? "apply" : keys.judge(m, key);
      if (verdict === "refused" && refusal) deadLetter(m, refusal.reason, refusal.kind);
      else if (verdict === "stale" && key !== undefined)
        deadLetter(m, keys.staleReason(m, key), "unappliable");
      if (verdict !== "apply") continue;
      const e = item.economic;
      out.economic.push({ name: e.indicator_name, value: e.value, timestamp: e.timestamp, offset: m.offset });
      continue;
    }
    const actor = actorOf(item.symbol);
    // At or below the actor's offset: already applied (a replay), and the actor skips it, below.
    const fresh = m.offset > actor.lastOffset;
    const key = fresh ? m.headers?.[IDEMPOTENCY_KEY_HEADER] : undefined;
    const verdict = fresh && refusal ? "refused" : key === undefined ? "apply" : keys.judge(m, key);
    if (verdict === "refused" || verdict === "stale" || verdict === "repeat") {
      if (verdict === "refused" && refusal) deadLetter(m, refusal.reason, refusal.kind);
      if (verdict === "stale" && key !== undefined) deadLetter(m, keys.staleReason(m, key), "unappliable");
      // Read, though not applied: a replay of the log decides the same way.
      actor.skipDuplicate(m.offset);
      touched.set(item.symbol, actor);
      continue;
    }
    applyOne(out, m, item, actor, deadLetter, touched, latest);
  }

  for (const actor of touched.values())
    if (latest.has(actor.symbol)) out.aggregates.push(aggregateRow(actor));
  return {
    outputs: out,
    touched: [...touched.values()],
    latest: [...latest.values()],
    marks: keys.changed,
    duplicates: keys.duplicates,
  };
}

/** Applies one symbol message to its actor and adds what it produced to `out`. */
function applyOne(
  out: BatchOutputs,
  m: LogMessage,
  item: { symbol: string; message: PriceTick | SymbolSideData },
  actor: SymbolActor,
  deadLetter: (m: LogMessage, reason: string, kind: DeadLetterKind) => void,
  touched: Map<string, SymbolActor>,
  latest: Map<string, TickResult>,
): void {
  let output;
  try {
    output = actor.apply(item.message, m.offset);
  } catch (err) {
    deadLetter(m, (err as Error).message, "unappliable");
    return;
  }
  if (output === null) return;
  if (!actor.isFinite()) throw new UnappliableMessageError(m.offset, item.symbol);
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

function aggregateRow(actor: SymbolActor): AggregateRow {
  const a = actor.view().aggregates;
  return {
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
