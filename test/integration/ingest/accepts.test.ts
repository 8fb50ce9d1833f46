import {
  COURSE_SYMBOLS,
  createMessageSource,
  economicIndicator,
  marketData,
  newsSentiment,
  orderBook,
  type PriceModel,
} from "../../../generator/models";
import { createRandom } from "../../../generator/random";
import { partitionForKey } from "../../../lib/partitioner";
import { STACK, topicSize } from "../../support/stack";
import {
  canonical,
  expectedKey,
  nowSeconds,
  post,
  postJson,
  readAll,
  startIngestNode,
  tick,
  type ErrorBody,
  type IngestNode,
} from "./helpers";

// The integration project's `testTimeout` in jest.config.js is not applied (Jest reads it only from
// the global config), and a loaded 2-core machine needs more than the default 5 s.
jest.setTimeout(60000);

/**
 * Everything the course generator can send (docs/generator-contract.md) is answered 200 and
 * is in Kafka, keyed and partitioned as the actors expect, before the 200 leaves.
 */
describe("POST /ingest accepts what the generator sends (real Kafka)", () => {
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_accepts");
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  /**
   * Each sent message must be in the topic exactly once, unchanged (extra fields aside), under its
   * key, in the partition the producer's partitioner gives for that key.
   */
  async function expectStored(sent: Record<string, unknown>[]): Promise<void> {
    const records = await readAll(STACK.kafkaBrokers, ingest.topic);
    const byValue = new Map<string, typeof records>();
    for (const r of records) {
      const key = canonical(JSON.parse(r.value));
      byValue.set(key, [...(byValue.get(key) ?? []), r]);
    }
    for (const message of sent) {
      const found = byValue.get(canonical(message)) ?? [];
      expect({ message, copies: found.length }).toEqual({ message, copies: 1 });
      const key = expectedKey(message);
      expect(found[0].key).toBe(key);
      expect(found[0].partition).toBe(partitionForKey(key, ingest.partitions));
    }
  }

  function generatorMessages(model: PriceModel, perStream: number): Record<string, unknown>[] {
    const source = createMessageSource({ model, seed: `ingest-accepts-${model}-${Date.now()}` });
    const out: Record<string, unknown>[] = [];
    for (let i = 0; i < perStream; i++) out.push({ ...source.nextPrice() }, { ...source.nextAdditional() });
    // The additional stream picks a type at random; these make sure each of the four is there.
    const rng = createRandom(`ingest-accepts-types-${model}-${Date.now()}`);
    const t = nowSeconds();
    out.push(
      { ...orderBook(rng, "MSFT", t) },
      { ...newsSentiment(rng, "TSLA", t) },
      { ...marketData(rng, "GOOGL", t) },
      { ...economicIndicator(rng, t) },
    );
    return out;
  }

  it.each<PriceModel>(["iid", "walk"])(
    "answers 200 {accepted: 1} to each message of the %s model posted alone, and stores each under its key",
    async model => {
      const messages = generatorMessages(model, 20);
      expect(new Set(messages.map(m => m.data_type ?? "price"))).toEqual(
        new Set(["price", "order_book", "news_sentiment", "market_data", "economic_indicator"]),
      );
      for (const message of messages) {
        const reply = await postJson(ingest.url, message);
        expect({ status: reply.status, body: reply.json, message }).toEqual({
          status: 200,
          body: { accepted: 1 },
          message,
        });
        expect(reply.headers["content-type"]).toMatch(/^application\/json/);
      }
      await expectStored(messages);
    },
  );

  it("accepts economic_indicator without a stock_symbol, keyed by its indicator_name", async () => {
    const message = {
      data_type: "economic_indicator",
      timestamp: nowSeconds(),
      indicator_name: "GDP Growth Rate",
      value: -2.375,
    };
    expect(message).not.toHaveProperty("stock_symbol");
    const reply = await postJson(ingest.url, message);
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    await expectStored([message]);
  });

  it("accepts a negative sentiment_score (the contract's -1..1)", async () => {
    const messages = [-1, -0.731, 0, 1].map(score => ({
      data_type: "news_sentiment",
      timestamp: nowSeconds(),
      stock_symbol: "AMZN",
      sentiment_score: score,
      sentiment_magnitude: 0.5 + score / 10,
    }));
    for (const m of messages) expect((await postJson(ingest.url, m)).status).toBe(200);
    await expectStored(messages);
  });

  it("accepts a JSON array and answers with the number of messages in it", async () => {
    const messages = generatorMessages("iid", 15);
    const reply = await postJson(ingest.url, messages);
    expect([reply.status, reply.json]).toEqual([200, { accepted: messages.length }]);
    await expectStored(messages);
  });

  it("accepts NDJSON, one message per line, blank lines and a trailing newline allowed", async () => {
    const messages = generatorMessages("walk", 10);
    const halves = [messages.slice(0, 12), messages.slice(12)];
    const types = ["application/x-ndjson", "application/ndjson"];
    for (const [i, half] of halves.entries()) {
      const body = `${half.map(m => JSON.stringify(m)).join("\n")}\n\n`;
      const reply = await post(ingest.url, body, { contentType: types[i] });
      expect([reply.status, reply.json]).toEqual([200, { accepted: half.length }]);
    }
    await expectStored(messages);
  });

  it("accepts Content-Type with parameters and +json types", async () => {
    const a = tick({ stock_symbol: "MSFT", volume: 11 });
    const b = tick({ stock_symbol: "MSFT", volume: 12 });
    expect((await postJson(ingest.url, a, { contentType: "application/json; charset=utf-8" })).status).toBe(
      200,
    );
    expect((await postJson(ingest.url, b, { contentType: "application/vnd.stock+json" })).status).toBe(200);
    await expectStored([a, b]);
  });

  it.each(["BRK.B", "BF-B", "0700.HK"])("accepts the ticker %s", async symbol => {
    const message = tick({ stock_symbol: symbol });
    const reply = await postJson(ingest.url, message);
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    await expectStored([message]);
  });

  it("strips unknown extra fields instead of forwarding them to Kafka", async () => {
    const clean = tick({ stock_symbol: "TSLA", volume: 4321 });
    const withExtras = { ...clean, exchange: "NASDAQ", note: { nested: [1, 2] }, __debug: true };
    const reply = await postJson(ingest.url, withExtras);
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    await expectStored([clean]);
    const records = await readAll(STACK.kafkaBrokers, ingest.topic);
    expect(records.filter(r => r.value.includes("NASDAQ") || r.value.includes("__debug"))).toEqual([]);
  });

  it("produces nothing for a batch with one invalid item and points at that item", async () => {
    const before = await topicSize(ingest.topic);
    const batch = Array.from({ length: 10 }, (_, i) =>
      tick({ stock_symbol: COURSE_SYMBOLS[i % 5], volume: 700 + i }),
    );
    batch[6] = tick({ volume: -1 });
    const reply = await postJson(ingest.url, batch);
    expect(reply.status).toBe(400);
    const body = reply.json as ErrorBody;
    expect(body.type).toBe("VALIDATION_ERROR");
    expect(body.issues).toEqual([{ index: 6, path: "volume", message: "must not be negative" }]);
    expect(await topicSize(ingest.topic)).toBe(before);
  });

  it("accepts INGEST_MAX_BATCH ticks of one symbol, more than Kafka takes in one record batch, in order", async () => {
    // 10,000 ticks of one symbol are about 1.5 MB for one partition; Kafka refuses a record batch
    // over 1 MiB (MESSAGE_TOO_LARGE), which used to come back as a 503 that no retry could cure.
    const before = await readAll(STACK.kafkaBrokers, ingest.topic);
    const start = nowSeconds();
    const batch = Array.from({ length: 10000 }, (_, i) =>
      tick({ stock_symbol: "NVDA", volume: 100000 + i, timestamp: start + i / 10000 }),
    );
    const reply = await postJson(ingest.url, batch);
    expect([reply.status, reply.json]).toEqual([200, { accepted: batch.length }]);
    const seen = new Set(before.map(r => `${r.partition}:${r.offset}`));
    const landed = (await readAll(STACK.kafkaBrokers, ingest.topic))
      .filter(r => !seen.has(`${r.partition}:${r.offset}`))
      .sort((a, b) => a.offset - b.offset);
    expect(landed.map(r => r.key)).toEqual(batch.map(() => "NVDA"));
    expect(new Set(landed.map(r => r.partition))).toEqual(
      new Set([partitionForKey("NVDA", ingest.partitions)]),
    );
    expect(landed.map(r => (JSON.parse(r.value) as { volume: number }).volume)).toEqual(
      batch.map(t => t.volume),
    );
  });

  it("lands a valid batch of N as exactly N messages", async () => {
    const before = await topicSize(ingest.topic);
    const batch = generatorMessages("iid", 250);
    const reply = await postJson(ingest.url, batch);
    expect([reply.status, reply.json]).toEqual([200, { accepted: batch.length }]);
    // The 200 comes after Kafka acked, so the high watermarks already include the batch.
    expect(await topicSize(ingest.topic)).toBe(before + batch.length);
    await expectStored(batch);
  });
});
