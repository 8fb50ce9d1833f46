import { aggregateBuckets, bucketTicks, minuteOf } from "../../../domain/aggregates";
import type { PriceTick } from "../../../domain/messages";
import { createNode, type StockNode } from "../../../app/node";
import { gatewayPort, waitUntilReady } from "../../support/ports";
import { deleteTopic, freshDatabase, STACK, testConfig, uniqueName, waitFor } from "../../support/stack";
import { TcpProxy } from "../../support/tcp-proxy";
import { getJson, makeTicks, postJson, referenceRun } from "./cluster-harness";

interface ErrorBody {
  error: string;
  type: string;
  issues?: { path: string; message: string }[];
}

/**
 * The REST API of one production-like node (real Kafka, Postgres and Redis), with Postgres
 * reached through a proxy the test can cut to see readiness follow the dependency.
 */
describe("REST API", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let node: StockNode;
  let proxy: TcpProxy;
  let base = "";
  let topic = "";
  // Ticks one second apart over about eight minutes, so ranges cover several minute buckets.
  const ticks: PriceTick[] = makeTicks(500, 1, "api").map((t, i) => ({ ...t, timestamp: 1_764_000_000 + i }));
  const symbol = ticks[0].stock_symbol;
  const reference = referenceRun(ticks, {
    smaPeriod: 20,
    emaPeriod: 20,
    rsiPeriod: 3,
    rsiOversold: 30,
    rsiOverbought: 70,
  });

  beforeAll(async () => {
    db = await freshDatabase();
    proxy = new TcpProxy("127.0.0.1", 5432);
    const proxied = db.url.replace("127.0.0.1:5432", `127.0.0.1:${await proxy.start()}`);
    topic = uniqueName("api");
    node = createNode(
      testConfig({
        // The OS picks the port as the gateway listens: nothing can take it in between.
        PORT: "0",
        KAFKA_ACK_TIMEOUT_MS: "30000",
        KAFKA_BROKERS: STACK.kafkaBrokers,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: uniqueName("api_group"),
        KAFKA_PARTITIONS: "4",
        DATABASE_URL: proxied,
        REDIS_URL: STACK.redisUrl,
        RSI_PERIOD: "3",
        RETRY_MAX_BACKOFF_MS: "200",
      }),
    );
    await node.broker.start();
    base = `http://127.0.0.1:${gatewayPort(node)}`;
    // Its services may still be starting when broker.start() resolves (503 until then).
    await waitUntilReady(base);
    for (let i = 0; i < ticks.length; i += 100) {
      expect((await postJson(`${base}/ingest`, ticks.slice(i, i + 100))).status).toBe(200);
    }
    await waitFor(
      "every tick stored",
      async () => {
        const r = await getJson<{ tick_count: number }[]>(`${base}/api/symbols`);
        return r.body[0]?.tick_count === ticks.length;
      },
      90000,
    );
  }, 180000);

  afterAll(async () => {
    await node?.broker.stop();
    await proxy?.stop();
    await deleteTopic(topic);
    await db?.drop();
  });

  it("lists symbols with their latest indicators", async () => {
    const { status, body } = await getJson<Record<string, unknown>[]>(`${base}/api/symbols`);
    const expected = reference.actors.get(symbol)!.view();
    expect(status).toBe(200);
    expect(body).toHaveLength(1);
    expect(body[0]).toMatchObject({
      symbol,
      tick_count: ticks.length,
      seq: ticks.length,
      close: ticks.at(-1)!.closing_price,
      sma: expected.sma,
      ema: expected.ema,
      rsi: expected.rsi,
      total_volume: expected.aggregates.total_volume,
    });
  });

  it("returns the history of a time range, oldest first, limited to the latest ticks", async () => {
    const from = ticks[100].timestamp;
    const to = ticks[200].timestamp;
    const { body } = await getJson<{ ticks: { seq: number; relative_strength_index: number | null }[] }>(
      `${base}/api/symbols/${symbol}/history?from=${from}&to=${new Date(to * 1000).toISOString()}&limit=30`,
    );
    expect(body.ticks.map(t => t.seq)).toEqual(Array.from({ length: 30 }, (_, i) => 171 + i));
    const rows = reference.rows.filter(r => r.seq > 170 && r.seq <= 200);
    expect(body.ticks.map(t => t.relative_strength_index)).toEqual(rows.map(r => r.rsi));
  });

  it("computes aggregates over whole minutes from the buckets, equal to a computation over the raw ticks", async () => {
    const from = ticks[90].timestamp;
    const to = ticks[330].timestamp;
    const { body } = await getJson<Record<string, unknown>>(
      `${base}/api/aggregates/${symbol}?from=${from}&to=${to}`,
    );
    // The range covers whole minutes: from rounded down, to rounded up.
    const lo = minuteOf(from);
    const hi = minuteOf(to) + 60;
    const inRange = ticks
      .map((t, i) => ({
        symbol,
        seq: i + 1,
        timestamp: t.timestamp,
        open: t.opening_price,
        close: t.closing_price,
        high: t.high,
        low: t.low,
        volume: t.volume,
      }))
      .filter(t => t.timestamp >= lo && t.timestamp < hi);
    const expected = aggregateBuckets(bucketTicks(inRange));
    expect(body).toMatchObject({
      symbol,
      tick_count: inRange.length,
      total_volume: expected.total_volume,
      lowest_price: expected.lowest_price,
      highest_price: expected.highest_price,
    });
    expect(body.average_closing_price as number).toBeCloseTo(expected.average_closing_price!, 9);
    expect(body.average_opening_price as number).toBeCloseTo(expected.average_opening_price!, 9);

    const allTime = (await getJson<Record<string, unknown>>(`${base}/api/aggregates/${symbol}`)).body;
    expect(allTime).toMatchObject({ range: null, tick_count: ticks.length });
  });

  it("filters signals by symbol and returns them newest first", async () => {
    const { body } = await getJson<{ symbol: string; seq: number }[]>(
      `${base}/api/signals?symbol=${symbol}&limit=10000`,
    );
    expect(body.length).toBe(reference.signals);
    const seqs = body.map(s => s.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    expect((await getJson<unknown[]>(`${base}/api/signals?symbol=ZZZZ`)).body).toEqual([]);
  });

  it.each([
    [`/api/signals?limit=abc`, "limit", /whole number from 1 to 10000/],
    [`/api/signals?limit=0`, "limit", /whole number from 1 to 10000/],
    [`/api/signals?from=yesterday`, "from", /ISO 8601 time or epoch seconds/],
    [`/api/signals?from=1764000000000`, "from", /milliseconds/],
    [`/api/signals?symbol=aapl`, "symbol", /upper-case ticker/],
    [`/api/symbols/X/history?from=1764000100&to=1764000000`, "to", /after from/],
    [`/api/aggregates/bad%20symbol`, "symbol", /upper-case ticker/],
    [`/api/symbols/not-a-ticker!`, "symbol", /upper-case ticker/],
  ])("answers %s with a 400 naming %s", async (path, param, message) => {
    const { status, body } = await getJson<ErrorBody>(`${base}${path}`);
    expect(status).toBe(400);
    expect(body.type).toBe("INVALID_PARAMETERS");
    expect(body.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: param, message: expect.stringMatching(message) }),
      ]),
    );
  });

  it("answers 404 for a symbol it has never seen", async () => {
    expect((await getJson<ErrorBody>(`${base}/api/symbols/NOPE`)).status).toBe(404);
    expect((await getJson<ErrorBody>(`${base}/api/aggregates/NOPE`)).status).toBe(404);
  });

  it("stays ready while Postgres is away, saying so, and answers the Postgres reads 503 until it is back", async () => {
    interface Readiness {
      status: string;
      checks: Record<string, string>;
    }
    expect((await getJson<Readiness>(`${base}/readyz`)).body.status).toBe("ready");
    await proxy.cut();
    try {
      // A read either meets the outage itself or the background probe (every 5 s) saw it first:
      // either way the answer is 503 POSTGRES_UNAVAILABLE, never a 500 or a hang.
      const refused = await waitFor(
        "/api/symbols to answer 503",
        async () => {
          const r = await getJson<ErrorBody & { retryable?: boolean }>(`${base}/api/symbols`);
          return r.status === 503 ? r.body : null;
        },
        30000,
      );
      expect(refused).toEqual({
        error: expect.stringMatching(
          /^Postgres unreachable since \S+: Postgres: .*; the query API answers again once it is back$/,
        ),
        type: "POSTGRES_UNAVAILABLE",
        retryable: true,
      });
      // Every read that needs Postgres answers at once, from the cached state.
      for (const path of [
        `/api/symbols/${symbol}/history`,
        "/api/signals",
        `/api/aggregates/${symbol}`,
        `/api/report/${symbol}`,
      ]) {
        const started = Date.now();
        const r = await getJson<ErrorBody>(`${base}${path}`);
        expect({ path, status: r.status, type: r.body.type }).toEqual({
          path,
          status: 503,
          type: "POSTGRES_UNAVAILABLE",
        });
        expect(Date.now() - started).toBeLessThan(1000);
      }
      // The node stays in its Service: ingest needs only the log.
      const ready = await getJson<Readiness>(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(ready.body.status).toBe("ready");
      expect(ready.body.checks.log).toBe("ok");
      expect(ready.body.checks.ingest).toBe("ok");
      expect(ready.body.checks.database).toMatch(/^degraded: Postgres: /);
      expect((await postJson(`${base}/ingest`, [{ ...ticks[0], stock_symbol: "PGDOWN" }])).status).toBe(200);
      expect((await getJson(`${base}/healthz`)).status).toBe(200);
    } finally {
      await proxy.restore();
    }
    await waitFor(
      "/api/symbols to answer 200 again",
      async () => (await getJson(`${base}/api/symbols`)).status === 200,
      30000,
    );
    const after = await getJson<Readiness>(`${base}/readyz`);
    expect([after.status, after.body.checks.database]).toEqual([200, "ok"]);
  });
});
