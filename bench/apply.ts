import type { PriceTick, SymbolSideData } from "../domain/messages";
import { SymbolActor } from "../domain/symbol-actor";
import { fmt, spread } from "./harness/figures";
import { printLines } from "./harness/print";
import { SETTINGS, randomWalkTick, seededRandom } from "./harness/ticks";

/**
 * Pure `SymbolActor.apply` throughput on one core, and the size of one actor's snapshot: the two figures that
 * bound how many symbols a node can host (README, "Scaling beyond one machine"). No Kafka, no I/O.
 *
 *   npx tsx bench/apply.ts [ticks] [symbols]
 */

const WARM_UP_ROUNDS = 2;
const MEASURED_ROUNDS = 7;

export interface ApplyBenchResult {
  /** Median over the measured rounds. */
  ticksPerSecond: number;
  bestTicksPerSecond: number;
  /** JSON snapshot of an actor with full windows and price ticks only. */
  bytesPerActor: number;
  /** The same with one of each kind of side data applied too. */
  bytesPerActorWithSideData: number;
}

/** Ticks of `symbols` symbols interleaved round-robin, as one partition delivers them; random-walk prices. */
function generate(
  ticks: number,
  symbols: number,
): { messages: PriceTick[]; owner: Uint32Array; names: string[] } {
  const random = seededRandom(20240601);
  const names = Array.from({ length: symbols }, (_, i) => `SYM${i}`);
  const last = Array.from({ length: symbols }, () => 50 + random() * 200);
  const messages: PriceTick[] = new Array(ticks);
  const owner = new Uint32Array(ticks);
  let timestamp = 1_700_000_000;
  for (let i = 0; i < ticks; i++) {
    const s = i % symbols;
    if (s === 0) timestamp += 1;
    owner[i] = s;
    messages[i] = randomWalkTick(random, names[s], last[s], timestamp);
    last[s] = messages[i].closing_price;
  }
  return { messages, owner, names };
}

function runRound(
  messages: PriceTick[],
  owner: Uint32Array,
  names: string[],
): { ns: number; actors: SymbolActor[] } {
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

function snapshotBytes(actor: SymbolActor): number {
  return Buffer.byteLength(JSON.stringify(actor.snapshot()), "utf8");
}

function sideDataFor(stock_symbol: string, timestamp: number): SymbolSideData[] {
  return [
    { data_type: "order_book", stock_symbol, order_type: "buy", price: 101.25, quantity: 300, timestamp },
    { data_type: "order_book", stock_symbol, order_type: "sell", price: 101.5, quantity: 120, timestamp },
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

export async function benchApply(opts: { ticks?: number; symbols?: number } = {}): Promise<ApplyBenchResult> {
  const ticks = opts.ticks ?? 1_000_000;
  const symbols = opts.symbols ?? 100;
  if (!(ticks >= 1 && symbols >= 1)) throw new RangeError("ticks and symbols must be at least 1");
  const { messages, owner, names } = generate(ticks, symbols);

  for (let r = 0; r < WARM_UP_ROUNDS; r++) runRound(messages, owner, names);
  const rates: number[] = [];
  for (let r = 0; r < MEASURED_ROUNDS; r++) {
    const { ns } = runRound(messages, owner, names);
    rates.push(ticks / (ns / 1e9));
    // Yield between rounds so pending work (timers, GC finalisers) does not land inside a timed loop.
    await new Promise(resolve => setImmediate(resolve));
  }

  // Size: actors whose windows are full (well past the longest period), so the figure is the steady state.
  const sizeSample = generate(Math.min(symbols, 100) * 200, Math.min(symbols, 100));
  const sized = runRound(sizeSample.messages, sizeSample.owner, sizeSample.names).actors;
  const bytesPerActor = sized.reduce((s, a) => s + snapshotBytes(a), 0) / sized.length;
  let offset = sizeSample.messages.length;
  for (const a of sized) for (const m of sideDataFor(a.symbol, 1_700_000_500)) a.apply(m, offset++);
  const bytesPerActorWithSideData = sized.reduce((s, a) => s + snapshotBytes(a), 0) / sized.length;

  return {
    ticksPerSecond: spread(rates).median,
    bestTicksPerSecond: Math.max(...rates),
    bytesPerActor: Math.round(bytesPerActor),
    bytesPerActorWithSideData: Math.round(bytesPerActorWithSideData),
  };
}

async function main(): Promise<void> {
  const ticks = process.argv[2] ? Number(process.argv[2]) : undefined;
  const symbols = process.argv[3] ? Number(process.argv[3]) : undefined;
  const r = await benchApply({ ticks, symbols });
  const t = ticks ?? 1_000_000;
  const s = symbols ?? 100;
  printLines(
    `SymbolActor.apply, one core, node ${process.version}`,
    `  input: ${fmt(t)} price ticks over ${fmt(s)} symbols, ${WARM_UP_ROUNDS} warm-up + ${MEASURED_ROUNDS} timed rounds`,
    `  median: ${fmt(r.ticksPerSecond)} ticks/s (${(1e9 / r.ticksPerSecond).toFixed(0)} ns/tick)`,
    `  best:   ${fmt(r.bestTicksPerSecond)} ticks/s (${(1e9 / r.bestTicksPerSecond).toFixed(0)} ns/tick)`,
    `state per actor (JSON snapshot, periods ${SETTINGS.smaPeriod}/${SETTINGS.emaPeriod}/${SETTINGS.rsiPeriod}, windows full):`,
    `  price ticks only:        ${fmt(r.bytesPerActor)} bytes`,
    `  with all side data kinds: ${fmt(r.bytesPerActorWithSideData)} bytes`,
  );
}

if (require.main === module) {
  main().catch(err => {
    console.error(err);
    process.exitCode = 1;
  });
}
