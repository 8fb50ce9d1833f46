import fs from "node:fs";
import path from "node:path";
import { GatewayClient } from "../../../replay/client";
import { InputError, prepareJob } from "../../../replay/prepare";
import { loadState, recordResolved, saveState } from "../../../replay/state";
import { startFakeGateway, type FakeGateway } from "./fake-gateway";
import { dailyBars, tempDir, yahooCsv } from "./helpers";

describe("prepareJob", () => {
  let fake: FakeGateway;
  let client: GatewayClient;
  let tmp: ReturnType<typeof tempDir>;
  let logs: string[];
  let file: string;

  beforeEach(async () => {
    fake = await startFakeGateway();
    client = new GatewayClient(fake.base, { timeoutMs: 2000, maxSockets: 2 });
    tmp = tempDir();
    logs = [];
    file = path.join(tmp.dir, "AAPL.csv");
    fs.writeFileSync(file, yahooCsv(dailyBars(20)));
  });

  afterEach(async () => {
    client.close();
    await fake.close();
    tmp.cleanup();
  });

  const prepare = (overrides: { restart?: boolean; adjusted?: boolean; baseUrl?: string } = {}) =>
    prepareJob(
      { file, symbol: "AAPL" },
      {
        stateDir: path.join(tmp.dir, "state"),
        restart: false,
        adjusted: false,
        baseUrl: fake.base,
        client,
        log: line => logs.push(line),
        ...overrides,
      },
    );

  it("starts a state holding the app's current tick count, and warns when the symbol has ticks already", async () => {
    fake.extraTicks.set("AAPL", 42);
    const { job, resumed } = await prepare();
    expect(resumed).toBe(false);
    expect(job.ticks).toHaveLength(20);
    expect(loadState(job.statePath)).toMatchObject({ baselineTicks: 42, position: 0, rows: 20 });
    expect(logs).toEqual([expect.stringMatching(/already has 42 ticks of AAPL/)]);
  });

  it("resumes a saved state the app agrees with, and with --restart starts from what the app holds", async () => {
    const first = await prepare();
    recordResolved(first.job.state, { count: 5, rejected: [], lastLine: 6 });
    saveState(first.job.statePath, first.job.state);
    fake.accepted.set("AAPL", first.job.ticks.slice(0, 5));

    const again = await prepare();
    expect(again).toMatchObject({ resumed: true, target: { kind: "agrees" } });
    expect(again.job.state.position).toBe(5);

    const restarted = await prepare({ restart: true });
    expect(restarted.resumed).toBe(false);
    expect(restarted.job.state).toMatchObject({ position: 5, accepted: 5, baselineTicks: 0 });
    expect(logs).toContainEqual(
      "AAPL: the app already holds lines 2-6 of this file (5 ticks, from an earlier replay): sending lines 7-21",
    );

    fake.accepted.clear();
    const fresh = await prepare({ restart: true });
    expect(fresh.job.state.position).toBe(0);
    expect(loadState(fresh.job.statePath)!.position).toBe(0);
  });

  it("keeps a separate state for an edited file", async () => {
    const first = await prepare();
    fs.appendFileSync(file, "\n2001-02-01,1,2,0.5,1.5,1.5,10");
    const edited = await prepare();
    expect(edited.job.statePath).not.toBe(first.job.statePath);
    expect(edited.job.state.rows).toBe(21);
  });

  it("refuses to resume under other settings, or --adjusted without Adj Close", async () => {
    await prepare();
    await expect(prepare({ adjusted: true })).rejects.toThrow(
      /saved by a replay without --adjusted.*--restart/,
    );
    fs.writeFileSync(file, "Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5");
    await expect(prepare({ adjusted: true })).rejects.toThrow(InputError);
    await expect(prepare({ adjusted: true })).rejects.toThrow(/needs an Adj Close column/);
  });

  it("names a missing file or a file without the needed columns", async () => {
    fs.rmSync(file);
    await expect(prepare()).rejects.toThrow(/cannot read .*AAPL\.csv: ENOENT/);
    fs.writeFileSync(file, "when,price\n2020-01-02,1");
    await expect(prepare()).rejects.toThrow(
      /AAPL\.csv: line 1: the header has no Date, Open, High, Low, Close column/,
    );
  });

  it("reads the baseline again on resume when the first run could not and sent nothing", async () => {
    const first = await prepare();
    first.job.state.baselineTicks = null;
    saveState(first.job.statePath, first.job.state);
    fake.extraTicks.set("AAPL", 7);
    const again = await prepare();
    expect(again.job.state.baselineTicks).toBe(7);
  });
});
