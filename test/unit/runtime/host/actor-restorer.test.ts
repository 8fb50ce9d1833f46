import { SymbolActor, type ActorSnapshot } from "../../../../domain/symbol-actor";
import { classify, type RestoreDecision } from "../../../../runtime/host/actor-restorer";

/**
 * `classify`, the restorer's decision without I/O: where each symbol's state comes from, given
 * the positions Postgres records and what the cache holds. The cache's state is taken only when it
 * is exactly the recorded one; a symbol with no record is new, or continues the cache's state
 * unverified. (Reading the records and recomputing from stored ticks is the host's scenarios'
 * part: support/host-scenarios.ts with the cache emptied, stale, foreign or down.)
 */

const SETTINGS = { smaPeriod: 3, emaPeriod: 3, rsiPeriod: 3, rsiOversold: 30, rsiOverbought: 70 };
const PARTITION = 2;

/** The state of `symbol` after `n` ticks, the last read at offset 10 + n. */
function stateAfter(symbol: string, n: number, settings = SETTINGS): ActorSnapshot {
  const actor = new SymbolActor(symbol, settings);
  for (let i = 1; i <= n; i++)
    actor.apply(
      {
        stock_symbol: symbol,
        opening_price: 100 + i,
        closing_price: 101 + i,
        high: 103 + i,
        low: 99 + i,
        volume: 10 * i,
        timestamp: 1_700_000_000 + i,
      },
      10 + i,
    );
  return actor.snapshot();
}

/** The position Postgres records for `snapshot`, in `partition`. */
const positionOf = (s: ActorSnapshot, partition = PARTITION) => ({
  symbol: s.symbol,
  partition,
  seq: s.seq,
  lastOffset: s.lastOffset,
});

/** The one decision for `symbol`. */
function decide(
  position: ReturnType<typeof positionOf> | null,
  cached: string | null | "cache down",
  symbol = "AAPL",
): RestoreDecision {
  const [decision] = classify(
    [symbol],
    position ? [position] : [],
    cached === "cache down" ? null : [cached],
    PARTITION,
    SETTINGS,
  );
  return decision;
}

const recorded = stateAfter("AAPL", 4);

describe("classify, a symbol with a record", () => {
  it("continues the cache's state when it is the recorded one (hit)", () => {
    const d = decide(positionOf(recorded), JSON.stringify(recorded));
    expect(d).toMatchObject({ symbol: "AAPL", source: "cache", unverified: false });
    expect(d.source === "cache" && d.actor.snapshot()).toEqual(recorded);
  });

  it("reads the record when the cache has no state of the symbol (missing)", () => {
    expect(decide(positionOf(recorded), null)).toEqual({
      symbol: "AAPL",
      source: "postgres",
      reason: "missing",
    });
  });

  it("reads the record when the cache's state is another one (stale): older, or of another symbol", () => {
    const stale = { symbol: "AAPL", source: "postgres", reason: "stale" };
    expect(decide(positionOf(recorded), JSON.stringify(stateAfter("AAPL", 3)))).toEqual(stale);
    // Same seq and offset, but the entry is another symbol's state.
    expect(decide(positionOf(recorded), JSON.stringify({ ...recorded, symbol: "MSFT" }))).toEqual(stale);
    // Same seq and offset, taken under other settings: the record decides, not the cache.
    const otherSettings = stateAfter("AAPL", 4, { ...SETTINGS, smaPeriod: 2 });
    expect(decide(positionOf(recorded), JSON.stringify(otherSettings))).toEqual(stale);
  });

  it("reads the record when the cache's entry cannot be read (unreadable): not JSON, not an object, damaged", () => {
    const unreadable = { symbol: "AAPL", source: "postgres", reason: "unreadable" };
    expect(decide(positionOf(recorded), "{not json")).toEqual(unreadable);
    expect(decide(positionOf(recorded), "42")).toEqual(unreadable);
    // The recorded position, in a format this build does not read.
    expect(decide(positionOf(recorded), JSON.stringify({ ...recorded, v: 2 }))).toEqual(unreadable);
    expect(decide(positionOf(recorded), JSON.stringify({ ...recorded, lastTick: null }))).toEqual(unreadable);
  });

  it("reads the record when the cache is down (unavailable)", () => {
    expect(decide(positionOf(recorded), "cache down")).toEqual({
      symbol: "AAPL",
      source: "postgres",
      reason: "unavailable",
    });
  });

  it("reads the record of another partition whatever the cache holds (moved)", () => {
    const moved = { symbol: "AAPL", source: "postgres", reason: "moved" };
    expect(decide(positionOf(recorded, PARTITION + 1), JSON.stringify(recorded))).toEqual(moved);
    expect(decide(positionOf(recorded, PARTITION + 1), "cache down")).toEqual(moved);
  });
});

describe("classify, a symbol without a record", () => {
  it("starts a new actor, to be checked against the stored ticks (none)", () => {
    for (const cached of [null, "cache down", "{not json", JSON.stringify(stateAfter("MSFT", 2))] as const) {
      const d = decide(null, cached);
      expect(d).toMatchObject({ symbol: "AAPL", source: "new", unverified: true });
      expect(d.source === "new" && d.actor.seq).toBe(0);
    }
  });

  it("continues the cache's state unverified: it was written before records existed", () => {
    const d = decide(null, JSON.stringify(recorded));
    expect(d).toMatchObject({ symbol: "AAPL", source: "cache", unverified: true });
    expect(d.source === "cache" && d.actor.seq).toBe(4);
  });

  it("recomputes a cached state taken under other settings from the stored ticks (resettle)", () => {
    const other = stateAfter("AAPL", 4, { ...SETTINGS, rsiPeriod: 5 });
    expect(decide(null, JSON.stringify(other))).toEqual({
      symbol: "AAPL",
      source: "resettle",
      snapshot: other,
    });
  });
});

describe("classify, several symbols", () => {
  it("decides each symbol by its own record and cache entry, in the order asked", () => {
    const msft = stateAfter("MSFT", 2);
    const decisions = classify(
      ["MSFT", "AAPL", "TSLA"],
      [positionOf(recorded), positionOf(msft)],
      [JSON.stringify(msft), JSON.stringify(stateAfter("AAPL", 1)), null],
      PARTITION,
      SETTINGS,
    );
    expect(decisions.map(d => [d.symbol, d.source, "reason" in d ? d.reason : null])).toEqual([
      ["MSFT", "cache", null],
      ["AAPL", "postgres", "stale"],
      ["TSLA", "new", null],
    ]);
  });
});
