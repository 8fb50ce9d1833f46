import fs from "node:fs";
import path from "node:path";
import { GatewayClient } from "../../../replay/client";
import { prepareJob } from "../../../replay/prepare";
import { idempotencyKey } from "../../../replay/ingest-protocol";
import { runReplay, type ReplayJob, type ReplayOptions } from "../../../replay/run";
import { loadState } from "../../../replay/state";
import { startFakeGateway, type FakeGateway } from "./fake-gateway";
import { barTime, dailyBars, engineOptions, tempDir, yahooCsv, type BarSpec } from "./helpers";

describe("the replay engine against a gateway", () => {
  let fake: FakeGateway;
  let client: GatewayClient;
  let tmp: ReturnType<typeof tempDir>;
  let logs: string[];

  beforeEach(async () => {
    fake = await startFakeGateway();
    client = new GatewayClient(fake.base, { timeoutMs: 5000, maxSockets: 8 });
    tmp = tempDir();
    logs = [];
  });

  afterEach(async () => {
    client.close();
    await fake.close();
    tmp.cleanup();
  });

  async function job(symbol: string, bars: readonly BarSpec[]): Promise<ReplayJob> {
    const file = path.join(tmp.dir, `${symbol}.csv`);
    if (!fs.existsSync(file)) fs.writeFileSync(file, yahooCsv(bars));
    const prepared = await prepareJob(
      { file, symbol },
      {
        stateDir: path.join(tmp.dir, "state"),
        restart: false,
        adjusted: false,
        baseUrl: fake.base,
        client,
        log: line => logs.push(line),
      },
    );
    return prepared.job;
  }

  const options = (overrides: Partial<ReplayOptions> = {}): ReplayOptions =>
    engineOptions(client, line => logs.push(line), overrides);

  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
  const sentTimes = (symbol: string) => (fake.accepted.get(symbol) ?? []).map(t => t.timestamp);
  const allTimes = (bars: readonly BarSpec[]) => bars.map(b => barTime(b.date));

  it("sends every row once and in order, one request in flight per symbol, several symbols at once", async () => {
    const a = dailyBars(250);
    const b = dailyBars(180, Date.UTC(2005, 0, 1));
    const jobs = [await job("AAA", a), await job("BBB", b)];
    const results = await runReplay(jobs, options({ batchSize: 40 }));

    expect(results.map(r => r.status)).toEqual(["completed", "completed"]);
    expect(sentTimes("AAA")).toEqual(allTimes(a));
    expect(sentTimes("BBB")).toEqual(allTimes(b));
    expect(fake.calls.every(c => c.symbols.length === 1 && c.timestamps.length <= 40)).toBe(true);
    expect(fake.maxInFlightPerSymbol()).toBe(1);
    expect(fake.maxInFlight()).toBe(2);
    const state = loadState(jobs[0].statePath)!;
    expect(state).toMatchObject({
      position: 250,
      accepted: 250,
      rejectedCount: 0,
      completed: true,
      lastLine: 251,
    });
    expect(results[0].acceptedThisRun).toBe(250);
  });

  it("records the rows the gateway rejects by line, and resends the rest of their request in order", async () => {
    const bars = dailyBars(60);
    bars[3] = { ...bars[3], high: bars[3].low - 1 }; // line 5
    bars[40] = { ...bars[40], volume: -3 }; // line 42
    const j = await job("BAD", bars);
    const [result] = await runReplay([j], options({ batchSize: 25 }));

    expect(result.status).toBe("completed");
    const good = bars.filter((_, i) => i !== 3 && i !== 40);
    expect(sentTimes("BAD")).toEqual(allTimes(good));
    expect(j.state).toMatchObject({ position: 60, accepted: 58, rejectedCount: 2 });
    expect(j.state.rejected.map(r => r.line)).toEqual([5, 42]);
    expect(j.state.rejected[0].reason).toMatch(/^high: must not be below/);
    expect(j.state.rejected[1].reason).toBe("volume: must not be negative");
  });

  it("finds every bad row even when the gateway lists only the first 100 issues", async () => {
    const bars = dailyBars(400).map((b, i) => (i % 2 === 0 && i < 300 ? { ...b, volume: -1 } : b));
    const j = await job("MANY", bars);
    const [result] = await runReplay([j], options({ batchSize: 400 }));

    expect(result.status).toBe("completed");
    expect(j.state.rejectedCount).toBe(150);
    expect(j.state.accepted).toBe(250);
    expect(sentTimes("MANY")).toEqual(allTimes(bars.filter((_, i) => !(i % 2 === 0 && i < 300))));
  });

  it("retries 429 and 5xx answers under the same Idempotency-Key, and notes rows resent after an answer that left it open", async () => {
    const bars = dailyBars(30);
    // The first request reaches the log but its 503 says otherwise: the resend, under the same key, is applied once.
    fake.answer = n =>
      n === 0
        ? {
            status: 503,
            body: { error: "Kafka did not acknowledge", type: "LOG_UNAVAILABLE" },
            produce: true,
          }
        : n === 1
          ? {
              status: 429,
              body: { error: "slow down", type: "RATE_LIMIT_EXCEEDED" },
              headers: { "Retry-After": "0" },
            }
          : "validate";
    const j = await job("RETRY", bars);
    const [result] = await runReplay([j], options({ batchSize: 10 }));

    expect(result.status).toBe("completed");
    expect(sentTimes("RETRY")).toEqual(allTimes(bars));
    expect(fake.calls.slice(0, 3).map(c => c.key)).toEqual(
      new Array(3).fill(idempotencyKey(j, range(0, 10))),
    );
    expect(fake.calls[3].key).toBe(idempotencyKey(j, range(10, 20)));
    expect(j.state.uncertainRetries).toEqual([{ firstLine: 2, lastLine: 11 }]);
    expect(logs.some(l => /HTTP 503 LOG_UNAVAILABLE.*retry 1 of 3.*may have taken them/.test(l))).toBe(true);
  });

  it("gives up after --retries, leaving the request in doubt in the state", async () => {
    fake.answer = () => ({ status: 503, body: { error: "down", type: "LOG_UNAVAILABLE", retryable: true } });
    const j = await job("DOWN", dailyBars(20));
    const [result] = await runReplay([j], options({ batchSize: 10, retries: 2 }));

    expect(result.status).toBe("failed");
    expect(result.error).toMatch(
      /DOWN lines 2-11: gave up after 3 attempts; the last answer: HTTP 503 LOG_UNAVAILABLE: down/,
    );
    const saved = loadState(j.statePath)!;
    expect(saved.position).toBe(0);
    expect(saved.inDoubt).toMatchObject({ start: 0, end: 10, rows: 10, firstLine: 2, lastLine: 11 });
  });

  it("stops every symbol at once on 401, naming --token", async () => {
    fake.answer = () => ({
      status: 401,
      body: { error: "a valid bearer token is required", type: "UNAUTHORIZED" },
    });
    const results = await runReplay(
      [await job("AUTH", dailyBars(20)), await job("AUTH2", dailyBars(20))],
      options(),
    );
    expect(results.map(r => r.status)).toEqual(["failed", "failed"]);
    expect(results[0].error).toMatch(/HTTP 401 UNAUTHORIZED.*--token/);
    expect(results[0].job.state.inDoubt).toBeNull();
  });

  it("halves its requests while the gateway answers 413", async () => {
    fake.answer = (_n, items) =>
      items.length > 50 ? { status: 413, body: { error: "too many", type: "BATCH_TOO_LARGE" } } : "validate";
    const bars = dailyBars(300);
    const j = await job("BIG", bars);
    const [result] = await runReplay([j], options({ batchSize: 200 }));

    expect(result.status).toBe("completed");
    expect(sentTimes("BIG")).toEqual(allTimes(bars));
    const accepted = fake.calls.filter(c => c.timestamps.length <= 50);
    expect(accepted.reduce((n, c) => n + c.timestamps.length, 0)).toBe(300);
  });

  it("stops after the request in flight on Ctrl-C, and a second run sends the rest exactly once", async () => {
    const bars = dailyBars(100);
    const stop = new AbortController();
    fake.answer = n => {
      if (n === 3) stop.abort();
      return "validate";
    };
    const first = await runReplay([await job("RESUME", bars)], options({ batchSize: 10, stop: stop.signal }));
    expect(first[0].status).toBe("stopped");
    expect(loadState(first[0].job.statePath)).toMatchObject({ position: 40, accepted: 40, lastLine: 41 });

    fake.answer = () => "validate";
    const again = await job("RESUME", bars);
    expect(again.state.position).toBe(40);
    const second = await runReplay([again], options({ batchSize: 10 }));
    expect(second[0]).toMatchObject({ status: "completed", acceptedThisRun: 60 });
    expect(sentTimes("RESUME")).toEqual(allTimes(bars));
  });

  it.each([
    ["arrived", true, 20],
    ["never arrived", false, 30],
  ])(
    "after an abandoned request whose rows %s, a resume asks the app and sends each row once",
    async (_what, produced, expectedResent) => {
      const bars = dailyBars(50);
      const abandon = new AbortController();
      fake.answer = n => {
        if (n < 2) return "validate";
        setTimeout(() => abandon.abort(), 20);
        return { hang: true, produce: produced };
      };
      const first = await runReplay(
        [await job("DOUBT", bars)],
        options({ batchSize: 10, abandon: abandon.signal }),
      );
      expect(first[0].status).toBe("abandoned");
      expect(loadState(first[0].job.statePath)!.inDoubt).toMatchObject({ start: 20, end: 30, firstLine: 22 });

      fake.answer = () => "validate";
      const before = fake.calls.length;
      const second = await runReplay([await job("DOUBT", bars)], options({ batchSize: 10 }));
      expect(second[0].status).toBe("completed");
      expect(sentTimes("DOUBT")).toEqual(allTimes(bars));
      const resent = fake.calls.slice(before).reduce((n, c) => n + c.timestamps.length, 0);
      expect(resent).toBe(expectedResent);
      expect(second[0].job.state.uncertainRetries).toEqual([]);
    },
  );

  it("resends a request left in doubt as that same request, under its key, so the app takes it once", async () => {
    const bars = dailyBars(50);
    const abandon = new AbortController();
    fake.answer = n => {
      if (n < 2) return "validate";
      setTimeout(() => abandon.abort(), 20);
      return { hang: true, produce: true };
    };
    const first = await runReplay(
      [await job("KEYED", bars)],
      options({ batchSize: 10, abandon: abandon.signal }),
    );
    expect(first[0].status).toBe("abandoned");
    const doubtKey = fake.calls[2].key;

    // Without the app's count before the replay, the resume cannot tell: it sends the rows again.
    const again = await job("KEYED", bars);
    again.state.baselineTicks = null;
    fake.answer = () => "validate";
    const second = await runReplay([again], options({ pacing: { kind: "rate", rowsPerSecond: 1000 } }));
    expect(second[0].status).toBe("completed");
    expect(fake.calls[3]).toMatchObject({ key: doubtKey, timestamps: allTimes(bars.slice(20, 30)) });
    expect(sentTimes("KEYED")).toEqual(allTimes(bars));
    expect(logs).toContainEqual(
      expect.stringMatching(/KEYED lines 22-31: .*sending them again under the same Idempotency-Key/),
    );
  });

  it("keys a request by the file, its setting, the symbol and the rows: at most 255 visible ASCII characters", async () => {
    const j = await job("BRK.B", dailyBars(20));
    const hash = j.state.fileHash.slice(0, 16);
    expect(idempotencyKey(j, range(0, 10))).toBe(`replay-BRK.B-${hash}-rows-0-9`);
    const gapped = idempotencyKey(j, [0, 1, 3, 4]);
    expect(gapped).toMatch(new RegExp(`^replay-BRK\\.B-${hash}-rows-0-4-4-of-[0-9a-f]{12}$`));
    expect(gapped).not.toBe(idempotencyKey(j, [0, 2, 3, 4]));
    j.state.settings.adjusted = true;
    expect(idempotencyKey(j, range(0, 10))).toBe(`replay-BRK.B-${hash}-adjusted-rows-0-9`);
    const longest = idempotencyKey({ ...j, symbol: "ABCDEFGHIJ.KLMNO-PQRST" }, [0, 999_999_998, 999_999_999]);
    expect(longest).toMatch(/^[\x21-\x7e]{1,255}$/);
  });

  it("keeps to --rate: 40 rows at 200 rows/s take at least 195 ms", async () => {
    const j = await job("PACED", dailyBars(40));
    const started = performance.now();
    const [result] = await runReplay([j], options({ pacing: { kind: "rate", rowsPerSecond: 200 } }));
    expect(result.status).toBe("completed");
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(fake.calls.length).toBeGreaterThan(1);
  });
});
