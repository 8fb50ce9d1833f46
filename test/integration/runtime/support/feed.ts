import type { LogMessage } from "../../../../adapters/log/types";
import type { PriceTick, StockMessage } from "../../../../domain/messages";
import { SymbolActor, type IndicatorSettings } from "../../../../domain/symbol-actor";
import { applyChunk, type ParsedMessage } from "../../../../runtime/apply-chunk";
import type { BatchOutputs } from "../../../../runtime/batch-outputs";
import { recordsOf } from "../../../../runtime/host/record-policy";
import type { ActorRecord, RecordFence } from "../../../../runtime/store/results-store";
import { randomWalk, seededRandom, ticksFromCloses } from "../../../unit/domain/fixtures";

/**
 * Real outputs for the store's tests: one partition's messages applied by its actors in chunks
 * (the engine's pure step, applyChunk), at the next offsets of the partition, so that ticks,
 * signals, aggregates, side data and dead letters are what the host would write.
 */

export const SETTINGS: IndicatorSettings = {
  smaPeriod: 3,
  emaPeriod: 3,
  rsiPeriod: 3,
  rsiOversold: 30,
  rsiOverbought: 70,
};
/** When the log accepted the partition's first message (ms). */
const LOG_T0 = 1_764_000_000_000;

/** One chunk, applied: its outputs, its touched actors' records, and its offsets. */
export interface AppliedChunk {
  out: BatchOutputs;
  actors: ActorRecord[];
  first: number;
  last: number;
}

/** `count` price ticks of `symbol`, a seeded random walk that swings enough for RSI signals. */
export function priceTicks(symbol: string, count: number, seed: number): PriceTick[] {
  return ticksFromCloses(seededRandom(seed), symbol, randomWalk(seededRandom(seed + 1), count, 100, 0.2));
}

/** `lists` interleaved: one of each in turn, the longer ones' rest at the end. */
export function interleave<T>(...lists: T[][]): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.max(...lists.map(l => l.length)); i++)
    for (const l of lists) if (i < l.length) out.push(l[i]);
  return out;
}

/** A partition's log and actors, from offset `from`. */
export class PartitionFeed {
  readonly actors = new Map<string, SymbolActor>();
  private next: number;

  constructor(
    readonly partition: number,
    from = 0,
    private readonly settings = SETTINGS,
  ) {
    this.next = from;
  }

  /** The next chunk: `messages` (or raw values, for messages no actor can read) at the next offsets. */
  chunk(messages: (StockMessage | string)[]): AppliedChunk {
    const first = this.next;
    const log: LogMessage[] = messages.map((m, i) => ({
      partition: this.partition,
      offset: first + i,
      key: typeof m === "string" ? null : "stock_symbol" in m ? m.stock_symbol : m.indicator_name,
      value: Buffer.from(typeof m === "string" ? m : JSON.stringify(m)),
      timestamp: LOG_T0 + first + i,
    }));
    this.next += messages.length;
    const parsed = messages.map(parsedOf);
    const outcome = applyChunk(this.partition, log, parsed, symbol => this.actorOf(symbol));
    return {
      out: outcome.outputs,
      actors: recordsOf(
        this.partition,
        outcome.touched.map(a => a.snapshot()),
      ),
      first,
      last: this.next - 1,
    };
  }

  private actorOf(symbol: string): SymbolActor {
    let actor = this.actors.get(symbol);
    if (!actor) this.actors.set(symbol, (actor = new SymbolActor(symbol, this.settings)));
    return actor;
  }
}

/** The chunk's fence under `epoch`, its owner knowing what it wrote before (a feed from its claim). */
export function fenceOf(c: AppliedChunk, epoch: number, writtenBefore = c.first - 1): RecordFence {
  return { partition: c.out.partition, epoch, actors: c.actors, writtenOffset: c.last, writtenBefore };
}

function parsedOf(m: StockMessage | string): ParsedMessage {
  if (typeof m === "string") return { reason: "not JSON" };
  if ("stock_symbol" in m) return { symbol: m.stock_symbol, message: m };
  return { economic: m };
}
