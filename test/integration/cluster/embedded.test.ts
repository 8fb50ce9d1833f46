import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ActorView } from "../../../domain/symbol-actor";
import { startOnFreePorts, type AppProcess } from "../../support/processes";
import { waitFor } from "../../support/stack";
import { getJson, makeTicks, postJson, referenceRun } from "./cluster-harness";

interface StateReply {
  nodeID: string;
  state: ActorView;
}

/**
 * `npm start` with no configuration: one process, the in-process log, PGlite under DATA_DIR,
 * in-memory snapshots and the demo feed. (The test sets only the ports and a temporary data
 * folder, so it cannot collide with a developer's own `npm start`.)
 */
describe("embedded mode (no configuration)", () => {
  let dataDir = "";
  let base = "";
  let app: AppProcess | null = null;
  const ticks = makeTicks(30, 1, "embedded");
  const symbol = ticks[0].stock_symbol;
  const reference = referenceRun(ticks);

  // Each start picks its ports just before the process listens on them (retried if another
  // process took one in between); the data folder is what survives a restart.
  const start = async () => {
    const started = await startOnFreePorts(
      "embedded",
      ["PORT", "METRICS_PORT"],
      ({ PORT, METRICS_PORT }) => ({
        PORT: String(PORT),
        METRICS_PORT: String(METRICS_PORT),
        DATA_DIR: dataDir,
        DEMO_FEED_RATE: "20",
      }),
      (_, { PORT }) =>
        waitFor(
          "/readyz to answer 200",
          async () => (await getJson(`http://127.0.0.1:${PORT}/readyz`)).status === 200,
          90000,
          250,
        ),
    );
    app = started.process;
    base = `http://127.0.0.1:${started.ports.PORT}`;
  };

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "stock-embedded-"));
    await start();
  }, 180000);

  afterAll(async () => {
    await app?.kill("SIGKILL");
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("ingests and shows the results through the API", async () => {
    const r = await postJson(`${base}/ingest`, ticks);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({ accepted: ticks.length });

    const live = await waitFor(
      `${symbol} to have applied every tick`,
      async () => {
        const s = await getJson<StateReply>(`${base}/api/symbols/${symbol}`);
        return s.status === 200 && s.body.state.seq === ticks.length ? s.body : null;
      },
      60000,
    );
    const expected = reference.actors.get(symbol)!.view();
    expect(live.state.rsi).toBe(expected.rsi);
    expect(live.state.sma).toBe(expected.sma);
    expect(live.state.aggregates).toEqual(expected.aggregates);

    const history = await getJson<{ ticks: { seq: number; relative_strength_index: number | null }[] }>(
      `${base}/api/symbols/${symbol}/history?limit=1000`,
    );
    expect(history.body.ticks.map(t => t.seq)).toEqual(ticks.map((_, i) => i + 1));
    expect(history.body.ticks.at(-1)!.relative_strength_index).toBe(expected.rsi);
  });

  it("runs the demo feed, which shows live RSI values in /api/symbols", async () => {
    const rows = await waitFor(
      "demo symbols with an RSI",
      async () => {
        const r = await getJson<{ symbol: string; rsi: number | null }[]>(`${base}/api/symbols`);
        const demo = r.body.filter(s => ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA"].includes(s.symbol));
        return demo.length === 5 && demo.every(s => typeof s.rsi === "number") ? demo : null;
      },
      90000,
      1000,
    );
    expect(rows).toHaveLength(5);
  }, 120000);

  it("keeps its data across a restart and continues the sequence", async () => {
    expect(await app!.kill("SIGTERM")).toBe(0);
    await start();
    const restored = await waitFor(
      `${symbol} to be restored`,
      async () => {
        const s = await getJson<StateReply>(`${base}/api/symbols/${symbol}`);
        return s.status === 200 ? s.body : null;
      },
      60000,
    );
    expect(restored.state.seq).toBe(ticks.length);

    const next = { ...ticks[ticks.length - 1], timestamp: ticks[ticks.length - 1].timestamp + 1 };
    expect((await postJson(`${base}/ingest`, next)).status).toBe(200);
    await waitFor(
      `${symbol} to apply the new tick`,
      async () => {
        const s = await getJson<StateReply>(`${base}/api/symbols/${symbol}`);
        return s.status === 200 && s.body.state.seq === ticks.length + 1;
      },
      60000,
    );
    const history = await getJson<{ ticks: { seq: number }[] }>(
      `${base}/api/symbols/${symbol}/history?limit=1000`,
    );
    expect(history.body.ticks.map(t => t.seq)).toEqual([...ticks, next].map((_, i) => i + 1));
  }, 300000);
});
