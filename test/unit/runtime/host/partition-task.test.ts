import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import type { EdgeScenario } from "./support/edge-scenarios";

/**
 * The partition task at the edges of exactly-once (its claim, marks, refusals, records and live
 * view), through the actor host, each scenario in its own words: hand-built batches of one
 * partition, PGlite in memory, states recorded every chunk. The scenarios run in a
 * child process (support/edge-scenarios.ts: PGlite cannot load inside Jest's VM); this file
 * checks what they stored and announced.
 */

const ROOT = path.resolve(__dirname, "../../../..");
const TSX = path.join(ROOT, "node_modules/.bin/tsx");
const SCENARIOS: EdgeScenario[] = [
  "marks-read-fails",
  "retry-after-lag",
  "replay-across-ttl",
  "key-reused",
  "commit-fails",
  "paused-node",
  "group-made-anew",
  "replay-announces",
  "view-in-flight",
  "side-data-unverified",
  "data-error",
  "state-overflows",
];

interface Stored {
  ticks: { symbol: string; seq: number; close: number; offset: number }[];
  deadLetters: { offset: number; kind: string; reason: string }[];
  orderBook: { symbol: string; side_seq: number }[];
}

let results: Record<EdgeScenario, Record<string, unknown>>;

beforeAll(async () => {
  const { stdout } = await promisify(execFile)(
    TSX,
    [path.join(__dirname, "support/edge-scenarios.ts"), ...SCENARIOS],
    { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
  );
  results = JSON.parse(stdout) as typeof results;
}, 180000);

const closes = (s: Stored, symbol = "AAPL") => s.ticks.filter(t => t.symbol === symbol).map(t => t.close);

describe("the partition task keeps exactly-once at the edges", () => {
  it("loads the idempotency marks before the partition counts as claimed, so a failed read cannot skip them", () => {
    const r = results["marks-read-fails"] as unknown as Stored & { firstTry: string; done: number };
    expect(r.firstTry).toMatch(/statement timeout/);
    expect(r.done).toBe(3);
    // The retried copies were recognised on the batch's second try: three ticks stored, not six.
    expect(closes(r)).toEqual([100, 101, 102]);
  });

  it("recognises a retry read after more than the TTL of consumer lag: marks expire by the log's clock", () => {
    expect(closes(results["retry-after-lag"] as unknown as Stored)).toEqual([100]);
  });

  it("decides a replay that crosses the TTL exactly as the first run did", () => {
    const r = results["replay-across-ttl"] as unknown as Stored & { storedFirst: Stored };
    expect(closes(r.storedFirst)).toEqual([100, 90]);
    expect(r.ticks).toEqual(r.storedFirst.ticks);
  });

  it("applies a new use of a reused key in full, and its retry once, across a restart", () => {
    const r = results["key-reused"] as unknown as Stored;
    expect(closes(r)).toEqual([100, 101, 102, 103, 50, 51]);
  });

  it("announces a stored signal although the offset commit after it failed", () => {
    const r = results["commit-fails"] as {
      failure: string;
      signals: { seq: number }[];
      published: { signals: number[] }[];
    };
    expect(r.failure).toMatch(/rebalancing/);
    expect(r.signals.map(s => s.seq)).toEqual([4]);
    expect(r.published.flatMap(p => p.signals)).toEqual([4]);
  });

  it("refuses the claim of a node that froze past the session timeout, and the rightful owner goes on", () => {
    const r = results["paused-node"] as unknown as Stored & {
      pausedDone: number;
      rightfulDone: number;
      epochs: { epoch: number; owner: string; generation: number }[];
    };
    expect(r.pausedDone).toBe(0);
    expect(r.rightfulDone).toBe(2);
    expect(r.epochs).toMatchObject([{ epoch: 1, owner: "rightful", generation: 6 }]);
    expect(closes(r)).toEqual([100, 101, 102, 103]);
  });

  it("claims a partition in a consumer group made anew, once the log confirms its generation", () => {
    const r = results["group-made-anew"] as unknown as Stored & {
      done: number;
      epochs: { epoch: number; generation: number }[];
    };
    expect(r.done).toBe(2);
    expect(r.epochs).toMatchObject([{ epoch: 2, generation: 1 }]);
    expect(closes(r)).toEqual([100, 101, 102]);
  });

  it("announces no tick of a replayed chunk: live views never see a symbol's seq go back", () => {
    const r = results["replay-announces"] as { first: { ticks: number[] }[]; again: { ticks: number[] }[] };
    expect(r.first.flatMap(p => p.ticks)).toEqual([3]);
    expect(r.again).toEqual([]);
  });

  it("shows the stored state in the live view while a chunk is in flight, and after it failed", () => {
    expect(results["view-in-flight"]).toEqual({ during: 1, after: 1 });
  });

  it("checks an actor without a record on a chunk of side data alone, before it writes anything", () => {
    const r = results["side-data-unverified"] as unknown as Stored & { failure: string | null };
    expect(r.failure).toMatch(/SnapshotLostError: symbol AAPL: Postgres holds its ticks up to seq 3/);
    expect(r.orderBook).toEqual([{ symbol: "AAPL", side_seq: 1 }]);
  });

  it("dead-letters a message whose results Postgres keeps refusing, the rest flows, and a replay decides the same", () => {
    const r = results["data-error"] as {
      done: number;
      first: Stored;
      replayDone: number;
      replayed: Stored;
      record: { seq: number; close: number };
    };
    expect(r.done).toBe(5);
    expect(closes(r.first)).toEqual([100, 101]);
    expect(closes(r.first, "MSFT")).toEqual([50, 51]);
    expect(r.first.deadLetters).toEqual([
      {
        offset: 2,
        kind: "refused",
        reason: expect.stringMatching(/^Postgres refused its results: .*out of range/),
      },
    ]);
    expect(r.replayDone).toBe(5);
    expect(r.replayed).toEqual(r.first);
    expect(r.record).toEqual({ seq: 2, close: 101 });
  });

  it("dead-letters what would leave an actor's state not finite; its partition flows, also after a restart", () => {
    const r = results["state-overflows"] as unknown as Stored & { done: number; afterRestart: string | null };
    expect(r.done).toBe(2);
    expect(r.afterRestart).toBeNull();
    expect(closes(r, "MSFT")).toEqual([50, 51]);
    expect(closes(r)).toEqual([100]);
    expect(r.deadLetters.map(d => [d.offset, d.kind])).toEqual([
      [1, "unappliable"],
      [3, "unappliable"],
    ]);
    expect(r.deadLetters[0].reason).toMatch(/would leave the state of AAPL not finite/);
  });
});
