import fs from "node:fs";
import path from "node:path";
import {
  contentHash,
  loadState,
  MAX_STORED_REJECTIONS,
  newState,
  recordResolved,
  saveState,
  statePath,
  StateError,
} from "../../../replay/state";
import { tempDir } from "./helpers";

describe("replay state", () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  const fresh = () =>
    newState({
      symbol: "SPX",
      file: "/data/sp500.csv",
      fileHash: contentHash("a,b\n"),
      settings: { adjusted: false },
      url: "http://localhost:5000",
      rows: 100,
      baselineTicks: 0,
      now: new Date("2026-01-01T00:00:00Z"),
    });

  it("is named after the symbol and the file's content", () => {
    const hash = contentHash("Date,Open\n");
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(statePath(".replay", "SPX", hash)).toBe(path.join(".replay", `SPX-${hash.slice(0, 16)}.json`));
    expect(contentHash("Date,Open\n")).toBe(hash);
    expect(contentHash("Date,Open\r\n")).not.toBe(hash);
  });

  it("survives a save and a load, and leaves no temporary file behind", () => {
    const file = path.join(tmp.dir, "nested", "SPX-0123.json");
    const state = fresh();
    recordResolved(state, {
      count: 10,
      rejected: [{ line: 5, reason: "volume: must not be negative" }],
      lastLine: 11,
    });
    saveState(file, state);
    expect(loadState(file)).toEqual(state);
    expect(fs.readdirSync(path.dirname(file))).toEqual(["SPX-0123.json"]);
  });

  it("is absent (null) before the first run", () => {
    expect(loadState(path.join(tmp.dir, "none.json"))).toBeNull();
  });

  it("refuses a file that is not JSON, not a state, or does not add up, and says --restart", () => {
    const file = path.join(tmp.dir, "s.json");
    fs.writeFileSync(file, "{not json");
    expect(() => loadState(file)).toThrow(StateError);
    expect(() => loadState(file)).toThrow(/--restart/);

    fs.writeFileSync(file, JSON.stringify({ version: 2 }));
    expect(() => loadState(file)).toThrow(/version/);

    fs.writeFileSync(file, JSON.stringify({ ...fresh(), position: 10 }));
    expect(() => loadState(file)).toThrow(/does not add up/);
  });

  it("moves past resolved rows, counting the rejected ones apart, and completes at the last row", () => {
    const state = fresh();
    recordResolved(state, { count: 60, rejected: [], lastLine: 61 });
    recordResolved(state, {
      count: 40,
      rejected: [
        { line: 70, reason: "x" },
        { line: 90, reason: "y" },
      ],
      lastLine: 101,
    });
    expect(state).toMatchObject({
      position: 100,
      accepted: 98,
      rejectedCount: 2,
      lastLine: 101,
      completed: true,
    });
    expect(() => recordResolved(state, { count: 1, rejected: [], lastLine: 102 })).toThrow(RangeError);
  });

  it("keeps the first rejections only, but counts them all", () => {
    const state = { ...fresh(), rows: 5000 };
    const rejected = Array.from({ length: 1500 }, (_, i) => ({ line: i + 2, reason: "bad" }));
    recordResolved(state, { count: 1500, rejected, lastLine: 1501 });
    expect(state.rejectedCount).toBe(1500);
    expect(state.rejected).toHaveLength(MAX_STORED_REJECTIONS);
  });
});
