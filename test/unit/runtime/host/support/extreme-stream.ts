import { messageKey, type PriceTick, type StockMessage } from "../../../../../domain/messages";
import { partitionForKey } from "../../../../../lib/partitioner";
import { randomWalk, seededRandom, T0, ticksFromCloses } from "../../../domain/fixtures";
import { PARTITIONS } from "./host-stream";

/**
 * The input of the extreme-value scenarios (extreme-values.ts runs them, extreme-values.test.ts
 * checks them), written straight into the log as a producer other than the gateway could.
 */

export type ExtremeScenario = "extreme-values" | "exact-volume";

export interface ExtremeRecord {
  key: string;
  value: string;
  /** The valid message it carries; absent for one the actors must dead-letter. */
  message?: StockMessage;
  /** Which phase (0 before the restart, 1 after) produces it. */
  phase: 0 | 1;
}

export const XOM = "XOM";
export const HOME = partitionForKey(XOM, PARTITIONS);
/** Two more symbols of XOM's partition: what stopped with it when one of its ticks could not be stored. */
export const NEIGHBOURS = ["CVX", "COP", "EOG", "SLB", "OXY", "PSX", "MPC", "VLO", "HAL", "KMI", "WMB"]
  .filter(s => partitionForKey(s, PARTITIONS) === HOME)
  .slice(0, 2);
if (NEIGHBOURS.length !== 2) throw new Error(`too few candidate symbols share partition ${HOME} with XOM`);
const [CVX] = NEIGHBOURS;
/** A symbol of another partition, which must flow as well. */
export const ELSEWHERE = ["AAPL", "MSFT", "TSLA", "NVDA"].find(s => partitionForKey(s, PARTITIONS) !== HOME)!;

/** Valid in every way before the bounds: prices need only be finite and positive, volumes safe integers. */
export const HUGE_PRICE = 1e308;
export const HUGE_VOLUME = 9007199254740991;
/** The count at which a total of HUGE_VOLUME passed bigint's range (9.2e18) in aggregated_metrics. */
export const HUGE_VOLUME_TICKS = 1025;

const hugePrices = (timestamp: number): PriceTick => ({
  stock_symbol: XOM,
  opening_price: HUGE_PRICE,
  closing_price: HUGE_PRICE,
  high: HUGE_PRICE,
  low: HUGE_PRICE,
  volume: 100,
  timestamp,
});

const hugeVolume = (timestamp: number): PriceTick => ({
  stock_symbol: CVX,
  opening_price: 100,
  closing_price: 100.5,
  high: 101,
  low: 99.5,
  volume: HUGE_VOLUME,
  timestamp,
});

/** The symbols' messages taken in turn. */
function interleaved(lists: StockMessage[][]): StockMessage[] {
  const out: StockMessage[] = [];
  for (let i = 0; lists.some(l => i < l.length); i++) for (const l of lists) if (i < l.length) out.push(l[i]);
  return out;
}

const valid = (m: StockMessage, phase: 0 | 1): ExtremeRecord => ({
  key: messageKey(m),
  value: JSON.stringify(m),
  message: m,
  phase,
});
const refused = (m: unknown, key: string, phase: 0 | 1): ExtremeRecord => ({
  key,
  value: JSON.stringify(m),
  phase,
});

/**
 * Normal ticks of XOM, its two neighbours and a symbol elsewhere; among them two XOM ticks priced
 * 1e308 and 1,025 ticks of a neighbour with a volume of 2^53 - 1 (and an order of that quantity),
 * half before the restart and half after.
 */
function extremeValues(): ExtremeRecord[] {
  const random = seededRandom(23);
  const normal = interleaved(
    [XOM, ...NEIGHBOURS, ELSEWHERE].map(s => ticksFromCloses(random, s, randomWalk(random, 80, 100, 0.08))),
  );
  const half = Math.floor(normal.length / 2);
  const out: ExtremeRecord[] = [];
  let huge = 0;
  normal.forEach((m, i) => {
    const phase = i < half ? 0 : 1;
    out.push(valid(m, phase));
    if (i === 40 || i === half + 40) out.push(refused(hugePrices(T0 + i), XOM, phase));
    // The huge volumes come in runs of up to 103 between the normal ticks, about half in each phase.
    for (let k = 0; i % 32 === 5 && k < 103 && huge < HUGE_VOLUME_TICKS; k++, huge++)
      out.push(refused(hugeVolume(T0 + i), CVX, phase));
  });
  if (huge !== HUGE_VOLUME_TICKS) throw new Error(`${huge} huge-volume ticks, not ${HUGE_VOLUME_TICKS}`);
  out.push(
    refused(
      {
        data_type: "order_book",
        timestamp: T0,
        stock_symbol: NEIGHBOURS[1],
        order_type: "buy",
        price: 100,
        quantity: HUGE_VOLUME,
      },
      NEIGHBOURS[1],
      1,
    ),
  );
  return out;
}

export const VOL = "VOL";
/** Ticks of VOL in one minute: their volumes pass 2^53 in total (9,007 ticks at 1e12). */
export const EXACT_TICKS = 9100;
export const EXACT_TICKS_AFTER = 100;

/**
 * Ticks of one symbol at the largest volumes accepted, odd and even, all in one minute, so that
 * both its running total and its minute bucket pass 2^53, where a double sum loses units; then
 * more of them after the restart.
 */
function exactVolume(): ExtremeRecord[] {
  const minute = Math.floor(T0 / 60) * 60;
  const tick = (i: number): PriceTick => ({
    stock_symbol: VOL,
    opening_price: 50 + (i % 7),
    closing_price: 50 + (i % 5),
    high: 60,
    low: 40,
    volume: i % 3 === 0 ? 1e12 : 1e12 - 1 - (i % 1000),
    timestamp: minute + (i < EXACT_TICKS ? i * 0.006 : 60 + i - EXACT_TICKS),
  });
  return Array.from({ length: EXACT_TICKS + EXACT_TICKS_AFTER }, (_, i) =>
    valid(tick(i), i < EXACT_TICKS ? 0 : 1),
  );
}

export function extremeStream(name: ExtremeScenario): ExtremeRecord[] {
  return name === "extreme-values" ? extremeValues() : exactVolume();
}

export interface ExtremeResult {
  ticks: Record<string, unknown>[];
  deadLetters: { partition: number; offset: number; key: string; reason: string }[];
  /** After each phase: every partition's committed offset and end. */
  lag: { partition: number; committed: number; highWatermark: number }[][];
  /** Each symbol's aggregates row, total_volume as Postgres writes it. */
  aggregates: { symbol: string; tick_count: number; total_volume: string }[];
  /** Each minute bucket's volume as Postgres writes it. */
  buckets: { symbol: string; minute: number; volume: string }[];
  /** What the query service reads of total_volume, per read, for the scenario's first symbol. */
  reads: Record<string, unknown>;
  records: Record<string, unknown>;
  /** How the host of each phase activated actors: "source/reason" -> count. */
  restores: Record<string, number>[];
}
