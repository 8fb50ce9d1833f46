import { SymbolActor } from "../domain/symbol-actor";
import { SETTINGS, randomWalkTick, seededRandom } from "./harness/ticks";

/**
 * The memory half of bench/scale.ts, run in a fresh process of its own (`node --expose-gc`):
 * RSS and heap after forced GC, before and after creating `symbols` live actors, each warmed with
 * `WARM_TICKS` price ticks so that its indicator windows are full. The actors are held the way
 * ActorHost holds them (a Map from symbol to a slot with the actor, when it was last used and a
 * flag), so the figure is what one more live actor costs a node, not a bare object's size.
 * Prints one line, `SCALE_CHILD {json}`.
 *
 *   node --expose-gc --require tsx/cjs bench/scale-child.ts <symbols>
 */

/** Price ticks per actor: more than the longest window (SMA 20, EMA 20, RSI 14 + 1) needs. */
export const WARM_TICKS = 30;

/** The i-th symbol: "S" and i in upper-case base 36 (S0, S1, ..., S255R), a valid ticker. */
export function symbolName(i: number): string {
  return `S${i.toString(36).toUpperCase()}`;
}

/** What ActorHost keeps per live actor (runtime/actor-host.ts, ActorSlot). */
interface Slot {
  actor: SymbolActor;
  lastUsed: number;
  unverified: boolean;
}

export interface MemoryUsage {
  rss: number;
  heapUsed: number;
  /** Off-heap memory of ArrayBuffers (typed arrays' backing stores), part of `external`. */
  arrayBuffers: number;
  external: number;
}

export interface ChildReport {
  symbols: number;
  before: MemoryUsage;
  /** With the actors alive. */
  after: MemoryUsage;
  /** With the actors alive and a snapshot object of each held too (what a partition's unrecorded map holds). */
  withSnapshots: MemoryUsage;
  /** Mean size of an actor's snapshot as JSON (what a record and a cache entry hold), over a sample. */
  snapshotJsonBytes: number;
}

/** Creates `count` actors named from `first` on and applies `WARM_TICKS` ticks to each, round-robin as a partition delivers them. */
function createActors(first: number, count: number, seed: number): Map<string, Slot> {
  const random = seededRandom(seed);
  const slots = new Map<string, Slot>();
  const actors: SymbolActor[] = new Array<SymbolActor>(count);
  const price = new Float64Array(count);
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const symbol = symbolName(first + i);
    actors[i] = new SymbolActor(symbol, SETTINGS);
    slots.set(symbol, { actor: actors[i], lastUsed: now, unverified: false });
    price[i] = 20 + random() * 300;
  }
  let offset = 0;
  let timestamp = 1_700_000_000;
  for (let t = 0; t < WARM_TICKS; t++) {
    timestamp += 1;
    for (let i = 0; i < count; i++) {
      const tick = randomWalkTick(random, actors[i].symbol, price[i], timestamp);
      price[i] = tick.closing_price;
      actors[i].apply(tick, offset++);
    }
  }
  return slots;
}

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc");
  // Two full collections: weak references and finalisers may free more on the second (a third
  // changes nothing measurable here).
  gc();
  gc();
}

function usage(): MemoryUsage {
  collect();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, external: m.external };
}

function measure(symbols: number): ChildReport {
  // Warm-up: the code paths are compiled and the heap has grown once before the baseline, so that
  // neither counts as the actors' memory.
  let warm: Map<string, Slot> | null = createActors(10_000_000, Math.min(symbols, 5000), 1);
  for (const slot of warm.values()) slot.actor.snapshot();
  warm = null;

  const before = usage();
  const slots = createActors(0, symbols, 20240601);
  const after = usage();
  const snapshots = [...slots.values()].map(slot => slot.actor.snapshot());
  const withSnapshots = usage();
  const sample = snapshots.slice(0, 1000);
  const snapshotJsonBytes =
    sample.reduce((n, s) => n + Buffer.byteLength(JSON.stringify(s)), 0) / sample.length;
  // Still alive here: the collections above could not have freed them.
  if (slots.size !== symbols || snapshots.length !== symbols) throw new Error("actors went missing");
  return { symbols, before, after, withSnapshots, snapshotJsonBytes };
}

/**
 * Preloaded into the baseline's actors process (`--require`, with BENCH_SCALE_GC_SIGNAL=1): on
 * SIGUSR2 it forces GC and prints `SCALE_GC {json}` with the memory usage, so that the process's
 * floor is measured the way the actors' growth is.
 */
if (process.env.BENCH_SCALE_GC_SIGNAL === "1" && require.main !== module) {
  process.on("SIGUSR2", () => console.log(`SCALE_GC ${JSON.stringify(usage())}`));
}

if (require.main === module) {
  const symbols = Number(process.argv[2]);
  if (!Number.isSafeInteger(symbols) || symbols < 1) {
    console.error("usage: node --expose-gc --require tsx/cjs bench/scale-child.ts <symbols>");
    process.exit(2);
  }
  console.log(`SCALE_CHILD ${JSON.stringify(measure(symbols))}`);
}
