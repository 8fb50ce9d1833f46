import { COURSE_SYMBOLS } from "../../../generator/models";
import { runGenerator } from "../../../generator/run";
import { partitionForKey } from "../../../lib/partitioner";
import { STACK, topicSize } from "../../support/stack";
import { readAll, startIngestNode, type IngestNode } from "./helpers";

// The integration project's `testTimeout` in jest.config.js is not applied (Jest reads it only from
// the global config), and a loaded 2-core machine needs more than the default 5 s.
jest.setTimeout(120000);

/** Our generator, the course script's stand-in, against the real gateway at a higher rate. */
describe("the generator against POST /ingest (real Kafka)", () => {
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_generator");
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it("delivers 400 messages of both streams at 200/s with no failed send, each keyed by its symbol", async () => {
    const summary = await runGenerator({
      url: ingest.url,
      rate: 200,
      count: 400,
      quiet: true,
      // The generator's default 10 s per request is a hope on a loaded machine, not the contract.
      timeoutMs: 60000,
      seed: `ingest-generator-${Date.now()}`,
    });
    expect(summary).toEqual(
      expect.objectContaining({
        messages: 400,
        delivered: 400,
        ok: 400,
        failed: 0,
        failures: {},
        stoppedBy: "count",
      }),
    );

    expect(await topicSize(ingest.topic)).toBe(400);
    const records = await readAll(STACK.kafkaBrokers, ingest.topic);
    expect(records).toHaveLength(400);
    const keys = new Set<string>([...COURSE_SYMBOLS, "GDP Growth Rate"]);
    let prices = 0;
    for (const r of records) {
      const value = JSON.parse(r.value) as {
        data_type?: string;
        stock_symbol?: string;
        indicator_name?: string;
      };
      expect(keys.has(r.key ?? "")).toBe(true);
      expect(r.key).toBe(value.stock_symbol ?? value.indicator_name);
      expect(r.partition).toBe(partitionForKey(r.key!, ingest.partitions));
      if (value.data_type === undefined) prices++;
    }
    // The paced schedule alternates the two streams message by message.
    expect(prices).toBe(200);
  });

  it("delivers the walk model in 100-message JSON arrays with no failed send", async () => {
    const before = await topicSize(ingest.topic);
    const summary = await runGenerator({
      url: ingest.url,
      model: "walk",
      rate: 2000,
      batch: 100,
      count: 2000,
      quiet: true,
      timeoutMs: 60000,
      seed: `ingest-generator-batch-${Date.now()}`,
    });
    expect(summary).toEqual(expect.objectContaining({ delivered: 2000, requests: 20, ok: 20, failed: 0 }));
    expect(await topicSize(ingest.topic)).toBe(before + 2000);
  });
});
