import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { SymbolActor } from "../../../../domain/symbol-actor";
import { partitionForKey } from "../../../../lib/partitioner";
import {
  PARTITIONS,
  RECOVERIES,
  SETTINGS,
  stream,
  type RecoveryName,
  type ScenarioName,
  type ScenarioResult,
} from "./support/host-stream";

/**
 * The actor host on the embedded adapters (in-process log, PGlite, in-memory snapshots): the
 * whole per-batch cycle, apply -> results -> snapshots -> commit, with no server. The scenario
 * runs in a child process (see support/host-scenarios.ts); this file checks what it stored.
 */

const ROOT = path.resolve(__dirname, "../../../..");
const TSX = path.join(ROOT, "node_modules/.bin/tsx");

const SCENARIOS: ScenarioName[] = ["pipeline", "dead-letters", "replay", ...RECOVERIES];
let results: Record<string, ScenarioResult>;

beforeAll(async () => {
  const { stdout } = await promisify(execFile)(
    TSX,
    [path.join(__dirname, "support/host-scenarios.ts"), ...SCENARIOS],
    { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
  );
  results = JSON.parse(stdout) as Record<string, ScenarioResult>;
}, 180000);

const run = (name: ScenarioName) => results[name];

const bySymbolSeq = (a: { symbol?: unknown; seq?: unknown }, b: { symbol?: unknown; seq?: unknown }) =>
  String(a.symbol).localeCompare(String(b.symbol)) || Number(a.seq) - Number(b.seq);

/** What one actor per symbol computes from the scenario's valid messages, at their offsets in the log. */
function expected(name: ScenarioName) {
  const actors = new Map<string, SymbolActor>();
  const ticks: Record<string, unknown>[] = [];
  const signals: Record<string, unknown>[] = [];
  const nextOffset = new Array<number>(PARTITIONS).fill(0);
  for (const { key, message } of stream(name)) {
    const offset = nextOffset[partitionForKey(key, PARTITIONS)]++;
    if (!message || !("stock_symbol" in message)) continue;
    let actor = actors.get(message.stock_symbol);
    if (!actor) actors.set(message.stock_symbol, (actor = new SymbolActor(message.stock_symbol, SETTINGS)));
    const out = actor.apply(message, offset);
    if (out?.kind !== "tick") continue;
    const t = out.tick;
    ticks.push({ symbol: t.symbol, seq: t.seq, close: t.close, sma: t.sma, ema: t.ema, rsi: t.rsi });
    if (out.signal) signals.push({ symbol: t.symbol, seq: t.seq, side: out.signal.side });
  }
  return { actors, ticks: ticks.sort(bySymbolSeq), signals: signals.sort(bySymbolSeq) };
}

describe("ActorHost on the embedded log, PGlite and in-memory snapshots", () => {
  it("stores every result exactly as one actor per symbol computes it, and commits in order", () => {
    const result = run("pipeline");
    const want = expected("pipeline");
    expect(result.ticks).toEqual(want.ticks);
    expect(want.signals.length).toBeGreaterThan(0);
    expect(result.signals).toEqual(want.signals);
    // Every stored signal is handed out for notification once.
    expect(result.published.sort(bySymbolSeq)).toEqual(
      want.signals.map(({ symbol, seq }) => ({ symbol, seq })),
    );
    expect(result.orderBook).toHaveLength(4);
    expect(result.economic).toEqual([{ indicator_name: "GDP Growth Rate", value: 2.5 }]);
    expect(result.deadLetters).toEqual([]);
    // Batches of at most 25 messages: many commits, each partition's offsets only growing.
    expect(result.commits.length).toBeGreaterThan(5);
    for (const p of new Set(result.commits.map(([q]) => q))) {
      const offsets = result.commits.filter(([q]) => q === p).map(([, next]) => next);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }
    // Each snapshot, and each actor's record in Postgres, is the actor's whole state.
    for (const [symbol, actor] of want.actors) {
      expect(result.snapshots[symbol]).toEqual(JSON.parse(JSON.stringify(actor.snapshot())));
      expect(result.records[symbol]).toEqual(JSON.parse(JSON.stringify(actor.snapshot())));
    }
  });

  it("sends what no actor can apply to dead_letters and moves on", () => {
    const result = run("dead-letters");
    const reasons = result.deadLetters.map(d => String(d.reason));
    expect(reasons).toHaveLength(3);
    expect(reasons.some(r => /not JSON/.test(r))).toBe(true);
    expect(reasons.some(r => /belongs to partition/.test(r))).toBe(true);
    expect(result.ticks).toEqual(expected("dead-letters").ticks);
  });

  it("replays the log from the start under a new group without changing, duplicating or re-notifying a result", () => {
    const result = run("replay");
    expect(result.ticks).toEqual(expected("replay").ticks);
    expect(result.published.length).toBeGreaterThan(0);
    expect(result.replayed).toEqual({
      ticks: result.ticks,
      signals: result.signals,
      orderBook: result.orderBook,
      economic: result.economic,
      deadLetters: result.deadLetters,
      published: [],
    });
  });

  /** What each recovery scenario must have made the hosts do, besides storing everything exactly. */
  const RESTORED_FROM: Record<RecoveryName, string[]> = {
    "cache-emptied": ["postgres/missing"],
    "cache-stale": ["postgres/stale"],
    "cache-foreign": ["postgres/stale", "postgres/unreadable"],
    "cache-down": ["postgres/unavailable"],
  };

  describe.each(RECOVERIES)("with the snapshot cache %s between restarts", name => {
    it("stores every result exactly once, records every actor's state, and restores from Postgres", () => {
      const result = run(name);
      const want = expected(name);
      expect(result.ticks).toEqual(want.ticks);
      expect(result.signals).toEqual(want.signals);
      expect(result.published.sort(bySymbolSeq)).toEqual(
        want.signals.map(({ symbol, seq }) => ({ symbol, seq })),
      );
      expect(result.orderBook).toHaveLength(4);
      expect(result.deadLetters).toEqual([]);
      for (const [symbol, actor] of want.actors)
        expect(result.records[symbol]).toEqual(JSON.parse(JSON.stringify(actor.snapshot())));
      for (const kind of RESTORED_FROM[name]) expect(result.restores[kind]).toBeGreaterThan(0);
      // Never a fresh start of a symbol Postgres has a record of: each symbol is new exactly once.
      expect(result.restores["new/none"]).toBe(want.actors.size);
    });
  });
});
