import { SymbolActor, type ActorSnapshot } from "../../../../domain/symbol-actor";
import type { IdempotencyMark } from "../../../../runtime/apply-chunk";
import { RecordPolicy, Unrecorded } from "../../../../runtime/host/record-policy";

/**
 * When a partition records its actors' states and marks, and what the record holds: everything
 * changed since the last record, the chunk's own changes on top.
 */

const SETTINGS = { smaPeriod: 3, emaPeriod: 3, rsiPeriod: 3, rsiOversold: 30, rsiOverbought: 70 };

/** The snapshot of an actor of `symbol` after ticks closing at `closes`, the last read at `offset`. */
function snapshotAfter(symbol: string, closes: number[], offset: number): ActorSnapshot {
  const actor = new SymbolActor(symbol, SETTINGS);
  closes.forEach((close, i) =>
    actor.apply(
      {
        stock_symbol: symbol,
        opening_price: close,
        closing_price: close,
        high: close + 1,
        low: close - 1,
        volume: 10,
        timestamp: 1_700_000_000 + i,
      },
      offset - closes.length + 1 + i,
    ),
  );
  return actor.snapshot();
}

const mark = (hi: number, hiOffset: number): IdempotencyMark => ({
  use: 1,
  hi,
  hiOffset,
  at: 1000 + hiOffset,
});

describe("RecordPolicy", () => {
  it("records with every chunk when the interval is 0", () => {
    const every = new RecordPolicy(0);
    expect(every.dueWithChunk(Date.now(), Date.now(), false)).toBe(true);
  });

  it("records with a chunk once the interval has run out since the last record, not before", () => {
    const policy = new RecordPolicy(5000);
    expect(policy.dueWithChunk(10_000, 14_999, false)).toBe(false);
    expect(policy.dueWithChunk(10_000, 15_000, false)).toBe(true);
  });

  it("records with every chunk of a stopping node, whatever the interval", () => {
    expect(new RecordPolicy(5000).dueWithChunk(10_000, 10_001, true)).toBe(true);
  });

  it("lets the timer record a partition whose interval ran out, or every one for the shutdown's flush", () => {
    const policy = new RecordPolicy(5000);
    expect(policy.dueOnTimer(10_000, 14_999, false)).toBe(false);
    expect(policy.dueOnTimer(10_000, 15_000, false)).toBe(true);
    expect(policy.dueOnTimer(10_000, 10_000, true)).toBe(true);
  });

  it("starts partitions claimed together at their own points of the interval", () => {
    const policy = new RecordPolicy(5000);
    const draws = [0, 0.25, 0.999];
    const starts = draws.map(r => policy.firstRecordedAt(100_000, () => r));
    expect(starts).toEqual([100_000, 98_750, 100_000 - 4995]);
    // None is due at its claim; each is due one interval after the point it starts at.
    expect(starts.map(s => policy.dueWithChunk(s, 100_000, false))).toEqual([false, false, false]);
    expect(starts.map(s => policy.dueWithChunk(s, s + 5000, false))).toEqual([true, true, true]);
  });
});

describe("Unrecorded", () => {
  it("has nothing pending at first, nor once its offset is committed", () => {
    const u = new Unrecorded();
    expect(u.pending).toBe(false);
    u.pendingNext = 10;
    expect(u.pending).toBe(true);
    u.committedNext = 10;
    expect(u.pending).toBe(false);
  });

  it("is pending while a state or a mark waits for the record", () => {
    const states = new Unrecorded();
    states.keep([snapshotAfter("AAPL", [100], 0)], new Map());
    expect(states.pending).toBe(true);
    const marks = new Unrecorded();
    marks.keep([], new Map([["k", mark(0, 3)]]));
    expect(marks.pending).toBe(true);
  });

  it("keeps the latest state of each symbol and mark of each key across chunks that do not record", () => {
    const u = new Unrecorded();
    u.keep([snapshotAfter("AAPL", [100], 0), snapshotAfter("MSFT", [50], 1)], new Map([["k", mark(0, 1)]]));
    const later = snapshotAfter("AAPL", [100, 101], 2);
    u.keep([later], new Map([["k", mark(1, 2)]]));
    expect([...u.states.keys()]).toEqual(["AAPL", "MSFT"]);
    expect(u.states.get("AAPL")).toBe(later);
    expect(u.marks.get("k")).toEqual(mark(1, 2));
  });

  it("records what it kept with the chunk's own changes on top, as actor_state records of the partition", () => {
    const u = new Unrecorded();
    const msft = snapshotAfter("MSFT", [50], 1);
    u.keep([snapshotAfter("AAPL", [100], 0), msft], new Map([["a", mark(0, 0)]]));
    const aapl = snapshotAfter("AAPL", [100, 101, 102], 4);
    const record = u.recordWith(7, [aapl], new Map([["b", mark(2, 4)]]));
    expect(record.actors).toEqual([
      { symbol: "AAPL", partition: 7, seq: 3, lastOffset: 4, state: JSON.stringify(aapl) },
      { symbol: "MSFT", partition: 7, seq: 1, lastOffset: 1, state: JSON.stringify(msft) },
    ]);
    expect(record.marks).toEqual([
      { key: "a", ...mark(0, 0) },
      { key: "b", ...mark(2, 4) },
    ]);
    // The chunk's changes joined the record only: what waits is as it was, until `recorded`.
    expect(u.states.get("AAPL")?.seq).toBe(1);
    expect([...u.marks.keys()]).toEqual(["a"]);
  });

  it("records what is pending alone for the timer", () => {
    const u = new Unrecorded();
    const aapl = snapshotAfter("AAPL", [100], 0);
    u.keep([aapl], new Map([["a", mark(0, 0)]]));
    expect(u.record(2)).toEqual({
      actors: [{ symbol: "AAPL", partition: 2, seq: 1, lastOffset: 0, state: JSON.stringify(aapl) }],
      marks: [{ key: "a", ...mark(0, 0) }],
    });
  });

  it("forgets states and marks once recorded, but keeps the offset to commit", () => {
    const u = new Unrecorded();
    u.keep([snapshotAfter("AAPL", [100], 0)], new Map([["a", mark(0, 0)]]));
    u.pendingNext = 1;
    u.recorded();
    expect(u.states.size + u.marks.size).toBe(0);
    expect(u.pendingNext).toBe(1);
    expect(u.pending).toBe(true);
  });

  it("drops everything, the offset to commit too, when the partition moves on", () => {
    const u = new Unrecorded();
    u.keep([snapshotAfter("AAPL", [100], 0)], new Map([["a", mark(0, 0)]]));
    u.pendingNext = 1;
    u.drop();
    expect(u.pendingNext).toBeNull();
    expect(u.pending).toBe(false);
    expect(u.record(0)).toEqual({ actors: [], marks: [] });
  });
});
