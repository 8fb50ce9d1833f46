import type { LogMessage } from "../../../../adapters/log/types";
import { Refusals } from "../../../../runtime/host/refusals";
import { recordingLogger } from "../../../support/logger";

/**
 * A partition's refused messages, and how a chunk that Postgres keeps refusing with a data error
 * is taken apart until the one message at fault is dead-lettered, so that the rest flows.
 */

const CHUNK = 2000;
const outOfRange = () =>
  Object.assign(new Error('value "1e400" is out of range for type double precision'), { code: "22003" });

/** Messages of partition 4 at offsets `from`..`to`. */
const messages = (from: number, to: number): LogMessage[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({
    partition: 4,
    offset: from + i,
    key: "AAPL",
    value: null,
    timestamp: 0,
  }));

describe("Refusals", () => {
  it("starts from the refusals its claim loaded, replacing any it held", () => {
    const refusals = new Refusals(4, recordingLogger());
    refusals.refuse(1, { kind: "unappliable", reason: "overflows" });
    refusals.load(new Map([[7, { kind: "refused", reason: "out of range" }]]));
    expect([...refusals.refused]).toEqual([[7, { kind: "refused", reason: "out of range" }]]);
  });

  it("takes a chunk apart into single messages after its third data error, and only that stretch", () => {
    const refusals = new Refusals(4, recordingLogger());
    const chunk = messages(10, 19);
    refusals.onDataError(chunk, outOfRange());
    refusals.onDataError(chunk, outOfRange());
    expect(refusals.chunkSizeAt(10, CHUNK)).toBe(CHUNK);
    refusals.onDataError(chunk, outOfRange());
    expect([10, 15, 19].map(o => refusals.chunkSizeAt(o, CHUNK))).toEqual([1, 1, 1]);
    expect(refusals.chunkSizeAt(20, CHUNK)).toBe(CHUNK);
    // Taking a chunk apart refuses nothing by itself.
    expect(refusals.refused.size).toBe(0);
  });

  it("refuses a single message after its third data error, with the error, and warns each time", () => {
    const logger = recordingLogger();
    const refusals = new Refusals(4, logger);
    const one = messages(15, 15);
    refusals.onDataError(one, outOfRange());
    refusals.onDataError(one, outOfRange());
    expect(refusals.exhausted(one)).toBe(false);
    refusals.onDataError(one, outOfRange());
    expect(refusals.refused.get(15)).toEqual({
      kind: "refused",
      reason: 'Postgres refused its results: value "1e400" is out of range for type double precision',
    });
    // Refused, and its dead letter alone still fails: nothing is left to take apart.
    expect(refusals.exhausted(one)).toBe(true);
    expect(refusals.exhausted(messages(14, 15))).toBe(false);
    expect(logger.lines.filter(l => l.startsWith("warn"))).toEqual([
      expect.stringMatching(
        /^warn partition 4: Postgres refused the results of offsets 15\.\.15 \(try 1 of 3\)/,
      ),
      expect.stringMatching(/\(try 2 of 3\)/),
      expect.stringMatching(/\(try 3 of 3\)/),
      expect.stringMatching(
        /^warn partition 4: offset 15 goes to dead_letters: Postgres refused its results/,
      ),
    ]);
  });

  it("counts the data errors of each chunk apart, and forgets them once the chunk is stored", () => {
    const refusals = new Refusals(4, recordingLogger());
    const first = messages(0, 9);
    refusals.onDataError(first, outOfRange());
    refusals.onDataError(first, outOfRange());
    refusals.onDataError(messages(10, 19), outOfRange());
    refusals.stored(0);
    refusals.onDataError(first, outOfRange());
    refusals.onDataError(first, outOfRange());
    expect(refusals.chunkSizeAt(0, CHUNK)).toBe(CHUNK);
    refusals.onDataError(first, outOfRange());
    expect(refusals.chunkSizeAt(0, CHUNK)).toBe(1);
  });
});
