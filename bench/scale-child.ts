import { SymbolActor } from "../domain/symbol-actor";
import type { ActorSlot as Slot } from "../runtime/host/options";
import { collectGarbage } from "./harness/proc";
import { SETTINGS, tickWalk } from "./harness/ticks";

/**
 * The memory half of bench/scale.ts (BENCHMARKS.md, "Memory and scale"), in a fresh process: RSS and
 * heap after forced GC, before and after creating `symbols` live actors with full windows, held as
 * ActorHost holds them. Prints one line, `SCALE_CHILD {json}`.
 *
 *   npx tsx bench/scale-child.ts <symbols>
 */

/** Price ticks per actor: more than the longest window (SMA 20, EMA 20, RSI 14 + 1) needs. */
export const WARM_TICKS = 30;

/** The i-th symbol: "S" and i in upper-case base 36 (S0, S1, ..., S255R), a valid ticker. */
export function symbolName(i: number): string {
  return `S${i.toString(36).toUpperCase()}`;
}

/** `count` actors named from `first` on, `WARM_TICKS` ticks applied to each, round-robin as a partition delivers them. */
function createActors(first: number, count: number, seed: number): Map<string, Slot> {
  const names = Array.from({ length: count }, (_, i) => symbolName(first + i));
  const actors = names.map(name => new SymbolActor(name, SETTINGS));
  const next = tickWalk(names, seed);
  for (let n = 0; n < WARM_TICKS * count; n++) actors[n % count].apply(next(), n);
  const now = Date.now();
  return new Map(actors.map(actor => [actor.symbol, { actor, lastUsed: now, unverified: false }]));
}

/** RSS, V8 heap and ArrayBuffers' off-heap memory (typed arrays' backing stores) after forced GC. */
function usage() {
  // Two full collections: weak references and finalisers may free more on the second (a third
  // changes nothing measurable here).
  collectGarbage();
  collectGarbage();
  const { rss, heapUsed, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, arrayBuffers };
}

export type MemoryUsage = ReturnType<typeof usage>;

function measure(symbols: number) {
  // Warm-up: the code paths are compiled and the heap has grown once before the baseline, so that
  // neither counts as the actors' memory.
  let warm: Map<string, Slot> | null = createActors(10_000_000, Math.min(symbols, 5000), 1);
  for (const slot of warm.values()) slot.actor.snapshot();
  warm = null;

  const before = usage();
  const slots = createActors(0, symbols, 20240601);
  const after = usage();
  // A snapshot object of each held too: what a partition's unrecorded map holds.
  const snapshots = [...slots.values()].map(slot => slot.actor.snapshot());
  const withSnapshots = usage();
  // Still alive here: the collections above could not have freed them.
  if (slots.size !== symbols || snapshots.length !== symbols) throw new Error("actors went missing");
  return { symbols, before, after, withSnapshots };
}

export type ChildReport = ReturnType<typeof measure>;

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
  if (!Number.isSafeInteger(symbols) || symbols < 1)
    throw new Error("usage: npx tsx bench/scale-child.ts <symbols>");
  console.log(`SCALE_CHILD ${JSON.stringify(measure(symbols))}`);
}
