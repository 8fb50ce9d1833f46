import { createNode, type StockNode } from "../../../app/node";
import { waitUntilReady } from "../../support/ports";
import { deleteTopic, STACK, testConfig, uniqueName, waitFor } from "../../support/stack";
import { post, postJson, readAll, startIngestNode, tick, type ErrorBody, type IngestNode } from "./helpers";

// The integration project's `testTimeout` in jest.config.js is not applied (Jest reads it only from
// the global config), and a loaded 2-core machine needs more than the default 5 s.
jest.setTimeout(120000);

/**
 * The two ways a gateway hands a request to ingest: in-process when its own node runs the ingest
 * service (POST /ingest skips moleculer-web's `api.rest` action and the `ingest.push` action call),
 * and the `ingest.push` action of another node over NATS when it does not. Both answer the same.
 */

type Labels = Record<string, unknown>;

/**
 * The sum over a Moleculer metric's items whose labels include `match`: of their values (counters),
 * or of their observation counts (`count`, histograms).
 */
function metricSum(node: StockNode, name: string, match: Labels, field: "value" | "count" = "value"): number {
  const metric = node.broker.metrics.getMetric(name) as unknown as
    { generateSnapshot(): ({ labels: Labels } & Record<"value" | "count", number>)[] } | null | undefined;
  if (!metric) return 0;
  return metric
    .generateSnapshot()
    .filter(item => Object.entries(match).every(([k, v]) => item.labels[k] === v))
    .reduce((sum, item) => sum + item[field], 0);
}

/** How many observations a Moleculer histogram holds under labels that include `match`. */
const observations = (node: StockNode, name: string, match: Labels) => metricSum(node, name, match, "count");

const restCalls = (node: StockNode) => metricSum(node, "moleculer.request.total", { action: "gateway.rest" });

describe("POST /ingest on a node that runs ingest itself", () => {
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_direct");
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it("calls no Moleculer action for POST /ingest, and still names the request in X-Request-ID", async () => {
    const call = jest.spyOn(ingest.node.broker, "call");
    const restBefore = restCalls(ingest.node);
    try {
      const reply = await postJson(ingest.url, [tick({ volume: 101 }), tick({ volume: 102 })]);
      expect({ status: reply.status, body: reply.json }).toEqual({ status: 200, body: { accepted: 2 } });
      expect(reply.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      const echoed = await postJson(ingest.url, tick({ volume: 103 }), {
        headers: { "X-Request-ID": "feed-7-000123" },
      });
      expect(echoed.status).toBe(200);
      expect(echoed.headers["x-request-id"]).toBe("feed-7-000123");
      expect(call.mock.calls.filter(([action]) => action === "ingest.push")).toEqual([]);
      expect(restCalls(ingest.node)).toBe(restBefore);
    } finally {
      call.mockRestore();
    }
  });

  it("serves other spellings of the URL through moleculer-web's router, with the same answers", async () => {
    const restBefore = restCalls(ingest.node);
    for (const url of [`${ingest.url}/`, `${ingest.url}?source=test`]) {
      const reply = await postJson(url, tick({ volume: 104 }));
      expect({ status: reply.status, body: reply.json }).toEqual({ status: 200, body: { accepted: 1 } });
      expect(reply.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      const invalid = await postJson(url, tick({ volume: -1 }));
      expect(invalid.status).toBe(400);
      expect((invalid.json as ErrorBody).issues).toEqual([
        { index: 0, path: "volume", message: "must not be negative" },
      ]);
    }
    expect(restCalls(ingest.node)).toBe(restBefore + 4);
  });

  it("counts and times direct calls in Moleculer's request metrics of ingest.push, errors by code", async () => {
    const labels = { service: "ingest", action: "ingest.push" };
    const totalBefore = metricSum(ingest.node, "moleculer.request.total", labels);
    const timedBefore = observations(ingest.node, "moleculer.request.time", labels);
    const errorsBefore = metricSum(ingest.node, "moleculer.request.error.total", {
      ...labels,
      errorCode: 400,
    });
    expect((await postJson(ingest.url, tick())).status).toBe(200);
    expect((await postJson(ingest.url, tick({ high: 1 }))).status).toBe(400);
    // The per-request counters reach the registry within a second.
    await waitFor(
      "the request counters",
      () => metricSum(ingest.node, "moleculer.request.total", labels) >= totalBefore + 2,
      10000,
      100,
    );
    expect(metricSum(ingest.node, "moleculer.request.error.total", { ...labels, errorCode: 400 })).toBe(
      errorsBefore + 1,
    );
    // Both calls are timed at once (the cluster dashboard's request latency p99 by action).
    expect(observations(ingest.node, "moleculer.request.time", labels)).toBe(timedBefore + 2);
  });

  it("has exactly what it answered 200 for in Kafka", async () => {
    const records = await readAll(STACK.kafkaBrokers, ingest.topic);
    const volumes = records.map(r => (JSON.parse(r.value) as { volume: number }).volume);
    // 101-104: the direct path and the router's (104 twice); 5012: the metrics test's tick.
    expect(volumes.sort((a, b) => a - b)).toEqual([101, 102, 103, 104, 104, 5012]);
  });
});

describe("POST /ingest when the ingest service runs on another node (NATS)", () => {
  const namespace = uniqueName("remote_ingest");
  const topic = uniqueName("remote_ingest");
  let ingestNode: StockNode | undefined;
  let gateway: IngestNode | undefined;

  beforeAll(async () => {
    const shared = { NATS_URL: STACK.natsUrl, NAMESPACE: namespace, LOG_LEVEL: "warn" };
    ingestNode = createNode(
      testConfig({
        ...shared,
        SERVICES: "ingest",
        NODE_ID: uniqueName("remote_ingest_node"),
        KAFKA_BROKERS: STACK.kafkaBrokers,
        KAFKA_TOPIC: topic,
        KAFKA_PARTITIONS: "6",
        KAFKA_ACK_TIMEOUT_MS: "30000",
        METRICS_PORT: "0",
      }),
    );
    await ingestNode.broker.start();
    gateway = await startIngestNode("remote_gateway", { ...shared, SERVICES: "gateway" });
    // Ready once the gateway sees the other node's ingest service (and it reaches Kafka).
    await waitUntilReady(gateway.url.replace(/\/ingest$/, ""));
    await waitFor(
      "the ingest node to accept",
      async () => (await postJson(gateway!.url, tick({ volume: 200 }))).status === 200,
      60000,
      250,
    );
  }, 180000);

  afterAll(async () => {
    await gateway?.stop();
    await ingestNode?.broker.stop();
    await deleteTopic(topic);
  }, 60000);

  it("sends the work to the ingest.push action of the other node, and answers as before", async () => {
    const call = jest.spyOn(gateway!.node.broker, "call");
    try {
      const single = await postJson(gateway!.url, tick({ volume: 201 }));
      expect({ status: single.status, body: single.json }).toEqual({ status: 200, body: { accepted: 1 } });
      expect(single.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      const batch = await postJson(gateway!.url, [tick({ volume: 202 }), tick({ volume: 203 })]);
      expect({ status: batch.status, body: batch.json }).toEqual({ status: 200, body: { accepted: 2 } });
      const ndjson = await post(
        gateway!.url,
        `${JSON.stringify(tick({ volume: 204 }))}\n${JSON.stringify(tick({ volume: 205 }))}\n`,
        { contentType: "application/x-ndjson" },
      );
      expect({ status: ndjson.status, body: ndjson.json }).toEqual({ status: 200, body: { accepted: 2 } });
      expect(call.mock.calls.filter(([action]) => action === "ingest.push")).toHaveLength(3);
    } finally {
      call.mockRestore();
    }
  });

  it("passes the other node's errors on unchanged", async () => {
    const invalid = await postJson(gateway!.url, [tick({ volume: 206 }), tick({ low: 2000 })]);
    expect(invalid.status).toBe(400);
    expect(invalid.json).toEqual({
      error: "1 of 2 messages are invalid; nothing was accepted",
      type: "VALIDATION_ERROR",
      issues: [{ index: 1, path: "low", message: "must not be above opening_price or closing_price" }],
    });
    const empty = await postJson(gateway!.url, []);
    expect({ status: empty.status, type: (empty.json as ErrorBody).type }).toEqual({
      status: 400,
      type: "EMPTY_BATCH",
    });
  });

  it("has exactly what it answered 200 for in the other node's topic", async () => {
    const records = await readAll(STACK.kafkaBrokers, topic);
    const volumes = records.map(r => (JSON.parse(r.value) as { volume: number }).volume);
    // 200: the readiness probe (at least once); 201-205: the test above; 206 was refused.
    expect(volumes.filter(v => v !== 200).sort((a, b) => a - b)).toEqual([201, 202, 203, 204, 205]);
    expect(volumes).toContain(200);
  });
});
