import type { SymbolSideData } from "../domain/messages";
import { SymbolActor } from "../domain/symbol-actor";
import { fmt, spread } from "./harness/figures";
import { printLines } from "./harness/print";
import { SETTINGS, tickWalk } from "./harness/ticks";

/**
 * Pure `SymbolActor.apply` throughput on one core, and the size of one actor's snapshot: the two figures that
 * bound how many symbols a node can host (README, "Scaling beyond one machine"). No Kafka, no I/O.
 *
 *   npx tsx bench/apply.ts [ticks] [symbols]
 */

const WARM_UP_ROUNDS = 2;
const MEASURED_ROUNDS = 7;

/** `ticks` ticks of `symbols` symbols in turn, as one partition interleaves them, and each one's symbol index. */
function generate(ticks: number, symbols: number) {
  const names = Array.from({ length: symbols }, (_, i) => `SYM${i}`);
  const messages = Array.from({ length: ticks }, tickWalk(names, 20240601));
  return { messages, owner: Uint32Array.from(messages, (_, i) => i % symbols), names };
}

function runRound({ messages, owner, names }: ReturnType<typeof generate>): {
  ns: number;
  actors: SymbolActor[];
} {
  const actors = names.map(name => new SymbolActor(name, SETTINGS));
  let signals = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < messages.length; i++) {
    const out = actors[owner[i]].apply(messages[i], i);
    if (out !== null && out.kind === "tick" && out.signal !== null) signals++;
  }
  const ns = Number(process.hrtime.bigint() - start);
  // Reading the outputs keeps the optimiser from discarding the work.
  if (signals < 0) throw new Error("unreachable");
  return { ns, actors };
}

/** Mean JSON snapshot size of the actors. */
const snapshotBytes = (actors: SymbolActor[]) =>
  actors.reduce((n, a) => n + Buffer.byteLength(JSON.stringify(a.snapshot())), 0) / actors.length;

/** One message of each kind of side data. */
function sideDataFor(stock_symbol: string, timestamp: number): SymbolSideData[] {
  const book = { data_type: "order_book", stock_symbol, quantity: 300, timestamp } as const;
  return [
    { ...book, order_type: "buy", price: 101.25 },
    { ...book, order_type: "sell", price: 101.5, quantity: 120 },
    {
      data_type: "news_sentiment",
      stock_symbol,
      sentiment_score: 0.3125,
      sentiment_magnitude: 1.75,
      timestamp,
    },
    { data_type: "market_data", stock_symbol, market_cap: 2.5e12, pe_ratio: 28.4, timestamp },
  ];
}

async function benchApply(ticks = 1_000_000, symbols = 100) {
  if (!(ticks >= 1 && symbols >= 1)) throw new RangeError("ticks and symbols must be at least 1");
  const input = generate(ticks, symbols);
  for (let r = 0; r < WARM_UP_ROUNDS; r++) runRound(input);
  const rates: number[] = [];
  for (let r = 0; r < MEASURED_ROUNDS; r++) {
    rates.push(ticks / (runRound(input).ns / 1e9));
    // Yield between rounds so pending work (timers, GC finalisers) does not land inside a timed loop.
    await new Promise(resolve => setImmediate(resolve));
  }
  // Size: actors whose windows are full (well past the longest period), so the figure is the steady state.
  const sized = runRound(generate(Math.min(symbols, 100) * 200, Math.min(symbols, 100))).actors;
  const bytesPerActor = snapshotBytes(sized);
  let offset = Math.min(symbols, 100) * 200;
  for (const a of sized) for (const m of sideDataFor(a.symbol, 1_700_000_500)) a.apply(m, offset++);
  return {
    /** Median over the measured rounds. */
    ticksPerSecond: spread(rates).median,
    bestTicksPerSecond: Math.max(...rates),
    /** JSON snapshot of an actor with full windows and price ticks only, and with one of each kind of side data too. */
    bytesPerActor: Math.round(bytesPerActor),
    bytesPerActorWithSideData: Math.round(snapshotBytes(sized)),
  };
}

/** Measures, and prints the figures under `heading`. */
export async function printApply(heading: string, ticks = 1_000_000, symbols = 100): Promise<void> {
  const r = await benchApply(ticks, symbols);
  const rate = (perSecond: number) => `${fmt(perSecond)} ticks/s (${(1e9 / perSecond).toFixed(0)} ns/tick)`;
  const { smaPeriod, emaPeriod, rsiPeriod } = SETTINGS;
  printLines(
    `${heading} (${fmt(ticks)} price ticks over ${fmt(symbols)} symbols, periods ${smaPeriod}/${emaPeriod}/${rsiPeriod}, ` +
      `${WARM_UP_ROUNDS} warm-up + ${MEASURED_ROUNDS} timed rounds)`,
    `  median ${rate(r.ticksPerSecond)}, best ${rate(r.bestTicksPerSecond)}`,
    `  state per actor (JSON snapshot, windows full): ${fmt(r.bytesPerActor)} bytes, ` +
      `${fmt(r.bytesPerActorWithSideData)} bytes with all side data kinds`,
  );
}

if (require.main === module) {
  const [ticks, symbols] = [process.argv[2] ?? 1_000_000, process.argv[3] ?? 100].map(Number);
  printApply(`SymbolActor.apply on one core, node ${process.version}`, ticks, symbols).catch(err => {
    console.error(err);
    process.exitCode = 1;
  });
}
