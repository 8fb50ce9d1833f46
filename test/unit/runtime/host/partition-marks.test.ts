import type { LogMessage } from "../../../../adapters/log/types";
import type { IdempotencyMark } from "../../../../runtime/apply-chunk";
import { PartitionMarks } from "../../../../runtime/host/partition-marks";

/**
 * A partition's idempotency marks and the clock they expire by: the latest time the log gave one
 * of its messages, never the wall clock, so a partition that lags or replays decides as it did.
 */

const TTL = 60_000;
const T0 = 1_764_000_000_000;
const TEN_MINUTES = 600_000;

/** A chunk whose messages the log accepted at `times` (ms). */
const chunkAt = (...times: number[]): LogMessage[] =>
  times.map((timestamp, offset) => ({ partition: 0, offset, key: "AAPL", value: null, timestamp }));

const mark = (at: number, hiOffset = 0): IdempotencyMark => ({ use: 1, hi: 0, hiOffset, at });

describe("PartitionMarks", () => {
  it("starts from the marks its claim loaded, replacing any it held", () => {
    const marks = new PartitionMarks();
    marks.stored(chunkAt(T0), new Map([["old", mark(T0)]]));
    marks.load([
      { key: "a", ...mark(T0, 3) },
      { key: "b", ...mark(T0, 4) },
    ]);
    expect([...marks.current]).toEqual([
      ["a", mark(T0, 3)],
      ["b", mark(T0, 4)],
    ]);
  });

  it("takes a stored chunk's marks, the latest of a key replacing the one before", () => {
    const marks = new PartitionMarks();
    marks.load([{ key: "a", ...mark(T0, 3) }]);
    marks.stored(chunkAt(T0 + 1), new Map([["a", mark(T0 + 1, 9)]]));
    expect(marks.current.get("a")).toEqual(mark(T0 + 1, 9));
  });

  it("forgets marks older than twice the TTL by the log's clock, not the wall clock", () => {
    const marks = new PartitionMarks();
    marks.load([
      { key: "old", ...mark(T0) },
      { key: "recent", ...mark(T0 + TTL) },
    ]);
    // The log's latest message is as old as the marks: nothing expires, however late it is now.
    marks.stored(chunkAt(T0 + TTL), new Map());
    marks.prune(TTL, new Map());
    expect([...marks.current.keys()]).toEqual(["old", "recent"]);
    // Two TTLs of log time past the old mark, and a moment more.
    marks.stored(chunkAt(T0 + 2 * TTL + 1, T0 + TTL), new Map());
    marks.prune(TTL, new Map());
    expect([...marks.current.keys()]).toEqual(["recent"]);
  });

  it("keeps an expired mark that waits for the record: the record must still hold it", () => {
    const marks = new PartitionMarks();
    marks.stored(chunkAt(T0), new Map([["a", mark(T0)]]));
    marks.stored(chunkAt(T0 + 3 * TTL), new Map());
    marks.prune(TTL, new Map([["a", mark(T0)]]));
    expect(marks.current.has("a")).toBe(true);
    marks.prune(TTL, new Map());
    expect(marks.current.has("a")).toBe(false);
  });

  it("asks to delete the marks in Postgres every ten minutes of log time, before two TTLs ago", () => {
    const marks = new PartitionMarks();
    marks.stored(chunkAt(T0), new Map());
    expect(marks.prune(TTL, new Map())).toBe(T0 - 2 * TTL);
    marks.stored(chunkAt(T0 + TEN_MINUTES - 1), new Map());
    expect(marks.prune(TTL, new Map())).toBeNull();
    marks.stored(chunkAt(T0 + TEN_MINUTES), new Map());
    expect(marks.prune(TTL, new Map())).toBe(T0 + TEN_MINUTES - 2 * TTL);
    // A chunk from earlier log time (a replay) moves the clock neither back nor on.
    marks.stored(chunkAt(T0), new Map());
    expect(marks.prune(TTL, new Map())).toBeNull();
  });
});
