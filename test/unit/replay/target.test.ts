import fs from "node:fs";
import path from "node:path";
import { GatewayClient } from "../../../replay/client";
import { prepareJob, type PreparedJob } from "../../../replay/prepare";
import { collectReports, reportTargets } from "../../../replay/report";
import { runReplay, type ReplayJob, type ReplayOptions } from "../../../replay/run";
import { loadState } from "../../../replay/state";
import { localRejections, rewind } from "../../../replay/target";
import { startFakeGateway, type FakeGateway } from "./fake-gateway";
import { barTime, dailyBars, engineOptions, tempDir, yahooCsv, type BarSpec } from "./helpers";

/** Two apps (A and B), one file, one state folder: the state is per file, the app decides. */
describe("the replay against what the app holds", () => {
  let a: FakeGateway;
  let b: FakeGateway;
  let clients: Map<FakeGateway, GatewayClient>;
  let tmp: ReturnType<typeof tempDir>;
  let logs: string[];
  let file: string;
  const bars = dailyBars(300);

  beforeEach(async () => {
    a = await startFakeGateway();
    b = await startFakeGateway();
    clients = new Map([a, b].map(f => [f, new GatewayClient(f.base, { timeoutMs: 5000, maxSockets: 4 })]));
    tmp = tempDir();
    logs = [];
    file = path.join(tmp.dir, "AAA.csv");
    fs.writeFileSync(file, yahooCsv(bars));
  });

  afterEach(async () => {
    for (const c of clients.values()) c.close();
    await Promise.all([a.close(), b.close()]);
    tmp.cleanup();
  });

  const client = (app: FakeGateway) => clients.get(app) as GatewayClient;
  const prepare = (app: FakeGateway, restart = false): Promise<PreparedJob> =>
    prepareJob(
      { file, symbol: "AAA" },
      {
        stateDir: path.join(tmp.dir, "state"),
        restart,
        adjusted: false,
        baseUrl: app.base,
        client: client(app),
        log: line => logs.push(line),
        settleMs: 100,
      },
    );
  const options = (app: FakeGateway): ReplayOptions =>
    engineOptions(client(app), line => logs.push(line), { batchSize: 50 });
  const replayInto = async (app: FakeGateway, job?: ReplayJob) => {
    const j = job ?? (await prepare(app)).job;
    const [result] = await runReplay([j], options(app));
    expect(result.status).toBe("completed");
    return j;
  };
  const times = (app: FakeGateway) => (app.accepted.get("AAA") ?? []).map(t => t.timestamp);
  const allTimes = (list: readonly BarSpec[]) => list.map(x => barTime(x.date));
  const sentRows = (app: FakeGateway, since = 0) =>
    app.calls.slice(since).reduce((n, c) => n + c.timestamps.length, 0);

  it("after a complete replay into one app, a fresh app gets every row again, and its report is complete", async () => {
    await replayInto(a);
    const { job, target } = await prepare(b);
    expect(target.kind).toBe("rewound");
    expect(logs).toContainEqual(
      `AAA: the app holds no tick of AAA, fewer than the 300 the state ${job.statePath} says it was sent ` +
        "(another app, or its data was removed): sending lines 2-301 again",
    );
    expect(loadState(job.statePath)).toMatchObject({
      position: 0,
      accepted: 0,
      completed: false,
      baselineTicks: 0,
    });

    await replayInto(b, job);
    expect(times(b)).toEqual(allTimes(bars));
    const [row] = await collectReports(client(b), reportTargets([job]), { timeoutMs: 2000 });
    expect(row).toMatchObject({ complete: true, notes: [], report: { ticks: 300 } });
  });

  it("sends a resend into the same app under the same keys, so the app takes every row once", async () => {
    const job = await replayInto(a);
    const firstKeys = a.calls.map(c => c.key);
    expect(new Set(firstKeys).size).toBe(6);
    expect(firstKeys.every(k => k !== undefined && /^[\x21-\x7e]{1,255}$/.test(k))).toBe(true);

    // However the replay came to send them again (a state that lost track, a rewind), the app is unchanged.
    rewind(job, 0, 0, localRejections(job));
    await replayInto(a, job);
    expect(a.calls.slice(6).map(c => c.key)).toEqual(firstKeys);
    expect(times(a)).toEqual(allTimes(bars));

    // The keys come from the file and the rows: a run into another app sends the very same ones.
    fs.rmSync(path.join(tmp.dir, "state"), { recursive: true });
    await replayInto(b);
    expect(b.calls.map(c => c.key)).toEqual(firstKeys);
  });

  it("to an app that holds the first rows of the symbol, sends the rest from where they end", async () => {
    const job = await replayInto(a);
    b.accepted.set("AAA", (a.accepted.get("AAA") ?? []).slice(0, 120));
    const again = await prepare(b);
    expect(again.target.kind).toBe("rewound");
    expect(logs).toContainEqual(
      `AAA: the app holds 120 ticks of AAA (lines 2-121 of this file), fewer than the 300 the state ${job.statePath} ` +
        "says it was sent (another app, or its data was removed): sending lines 122-301 again",
    );
    expect(again.job.state).toMatchObject({ position: 120, accepted: 120, baselineTicks: 0 });

    await replayInto(b, again.job);
    expect(sentRows(b)).toBe(180);
    expect(times(b)).toEqual(allTimes(bars));
    const [row] = await collectReports(client(b), reportTargets([again.job]), { timeoutMs: 2000 });
    expect(row).toMatchObject({ complete: true, report: { ticks: 300 } });
  });

  it("to an app whose ticks do not line up with the file, sends every row again after them", async () => {
    await replayInto(a);
    b.extraTicks.set("AAA", 50);
    const again = await prepare(b);
    expect(logs.at(-1)).toMatch(
      /^AAA: the app holds 50 ticks of AAA that do not line up with this file, fewer than the 300 .*: sending lines 2-301 again, after its 50$/,
    );
    expect(again.job.state).toMatchObject({ position: 0, baselineTicks: 50 });
    await replayInto(b, again.job);
    expect(times(b)).toEqual(allTimes(bars));
    const [row] = await collectReports(client(b), reportTargets([again.job]), { timeoutMs: 2000 });
    expect(row.complete).toBe(true);
  });

  it("with nothing to send and the app holding every row, reports at once from what the app holds", async () => {
    await replayInto(a);
    const again = await prepare(a);
    expect(again).toMatchObject({ resumed: true, target: { kind: "agrees" } });
    expect(again.job.state.completed).toBe(true);
    const before = a.calls.length;
    await replayInto(a, again.job);
    expect(a.calls.length).toBe(before);
    const [row] = await collectReports(client(a), reportTargets([again.job]), { timeoutMs: 2000 });
    expect(row).toMatchObject({ complete: true, notes: [], report: { ticks: 300 } });
  });

  it("says why when it cannot ask the app, and goes by the saved state", async () => {
    await replayInto(a);
    a.queryDown = "Postgres unreachable";
    const again = await prepare(a);
    expect(again.target).toEqual({
      kind: "unknown",
      reason: "GET /api/aggregates/AAA: HTTP 503 POSTGRES_UNAVAILABLE: Postgres unreachable",
    });
    expect(again.job.state.completed).toBe(true);
    expect(logs.at(-1)).toBe(
      "AAA: cannot ask the app what it holds of AAA (GET /api/aggregates/AAA: HTTP 503 POSTGRES_UNAVAILABLE: " +
        "Postgres unreachable); going by the saved state",
    );
  });

  it("a first run into an app that already holds this file's rows (a lost state) sends only the rest", async () => {
    await replayInto(a);
    fs.rmSync(path.join(tmp.dir, "state"), { recursive: true });
    b.accepted.set("AAA", (a.accepted.get("AAA") ?? []).slice(0, 200));
    const fresh = await prepare(b);
    expect(fresh.resumed).toBe(false);
    expect(logs.at(-1)).toBe(
      "AAA: the app already holds lines 2-201 of this file (200 ticks, from an earlier replay): sending lines 202-301",
    );
    await replayInto(b, fresh.job);
    expect(sentRows(b)).toBe(100);
    expect(times(b)).toEqual(allTimes(bars));
  });
});
