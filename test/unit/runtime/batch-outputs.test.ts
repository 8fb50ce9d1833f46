import { emptyOutputs } from "../../../runtime/batch-outputs";

/** The outputs a chunk starts from (and the timer's record writes alone): nothing, for one partition. */

describe("emptyOutputs", () => {
  it("holds no row of any table, for its partition", () => {
    const out = emptyOutputs(7);
    const { partition, ...tables } = out;
    expect(partition).toBe(7);
    expect(Object.keys(tables).sort()).toEqual([
      "aggregates",
      "deadLetters",
      "economic",
      "marketData",
      "orderBook",
      "sentiment",
      "signals",
      "ticks",
    ]);
    for (const rows of Object.values(tables)) expect(rows).toEqual([]);
  });

  it("gives each chunk arrays of its own", () => {
    const a = emptyOutputs(0);
    const b = emptyOutputs(0);
    a.deadLetters.push({ offset: 1, key: null, payload: null, reason: "not JSON", kind: "invalid" });
    expect(b.deadLetters).toEqual([]);
  });
});
