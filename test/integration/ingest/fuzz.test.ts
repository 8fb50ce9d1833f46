import fc from "fast-check";
import { post, postJson, startIngestNode, tick, type IngestNode, type Reply } from "./helpers";

// The integration project's `testTimeout` in jest.config.js is not applied (Jest reads it only from
// the global config), and a loaded 2-core machine needs more than the default 5 s.
jest.setTimeout(120000);

/**
 * The law for any input: the gateway answers promptly with a JSON body and a status below 500
 * (4xx for what it refuses, 200 for the rare arbitrary value that is a valid message), and it keeps
 * serving. A 5xx here means some input reaches code that throws.
 */
describe("POST /ingest on arbitrary input (fast-check)", () => {
  let ingest: IngestNode;
  const NUM_RUNS = 300;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_fuzz", { INGEST_BODY_LIMIT: "256kb", INGEST_MAX_BATCH: "500" });
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  function expectHandled(reply: Reply): boolean {
    if (reply.status >= 500 || reply.status < 200 || reply.json === undefined) {
      throw new Error(`answered ${reply.status}: ${reply.text.slice(0, 500)}`);
    }
    if (reply.status !== 200 && typeof (reply.json as { error?: unknown }).error !== "string") {
      throw new Error(`a ${reply.status} without an error message: ${reply.text.slice(0, 500)}`);
    }
    return true;
  }

  const contentTypes = fc.constantFrom(
    "application/json",
    "application/x-ndjson",
    "application/json; charset=utf-8",
  );

  it("answers any JSON value with a JSON body and no 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.json(), contentTypes, async (body, contentType) =>
        expectHandled(await post(ingest.url, body, { contentType })),
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers any JavaScript value, serialized, with a JSON body and no 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.anything({ withBoxedValues: true, withNullPrototype: true }), async value =>
        expectHandled(await post(ingest.url, JSON.stringify(value) ?? "")),
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers objects with the message fields holding arbitrary values with a JSON body and no 5xx", async () => {
    const tickLike = tick();
    const anyValue = fc.oneof(
      fc.anything(),
      fc.double(),
      fc.integer(),
      fc.string(),
      fc.constantFrom(
        ...Object.values(tickLike),
        "AAPL",
        "brk.b",
        "BRK.B",
        "buy",
        "sell",
        null,
        true,
        [],
        {},
      ),
      fc.constantFrom("order_book", "news_sentiment", "market_data", "economic_indicator", "price", ""),
      fc.double({ min: 9e8, max: 5e12, noNaN: true }),
    );
    const keys = [
      ...Object.keys(tickLike),
      "data_type",
      "order_type",
      "price",
      "quantity",
      "sentiment_score",
      "sentiment_magnitude",
      "market_cap",
      "pe_ratio",
      "indicator_name",
      "value",
      "__proto__",
      "constructor",
    ];
    const message = fc.dictionary(fc.constantFrom(...keys), anyValue, { maxKeys: keys.length });
    const body = fc.oneof(
      message,
      fc.array(message, { maxLength: 5 }),
      message.map(m => ({ ...tickLike, ...m })),
    );
    await fc.assert(
      fc.asyncProperty(body, async value => expectHandled(await postJson(ingest.url, value))),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers arbitrary text and bytes with a JSON body and no 5xx", async () => {
    const raw = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 300 }),
      fc.string({ unit: "binary", maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map(bytes => Buffer.from(bytes)),
      fc.string({ maxLength: 50 }).map(s => `{"stock_symbol":"AAPL",${s}`),
      fc.array(fc.json(), { maxLength: 5 }).map(lines => lines.join("\n")),
    );
    await fc.assert(
      fc.asyncProperty(raw, fc.oneof(contentTypes, fc.constant("text/plain")), async (body, contentType) =>
        expectHandled(await post(ingest.url, body, { contentType })),
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("answers values nested thousands deep in any field with a JSON body and no 5xx", async () => {
    const deep = fc.record({
      key: fc.constantFrom(
        "data_type",
        "stock_symbol",
        "volume",
        "timestamp",
        "order_type",
        "indicator_name",
      ),
      depth: fc.integer({ min: 1, max: 20000 }),
      asObject: fc.boolean(),
      base: fc.constantFrom({}, tick(), { data_type: "order_book" }),
    });
    await fc.assert(
      fc.asyncProperty(deep, async ({ key, depth, asObject, base }) => {
        const nested = asObject
          ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`
          : `${"[".repeat(depth)}${"]".repeat(depth)}`;
        const head = JSON.stringify({ ...base, [key]: "@@" }).replace('"@@"', nested);
        return expectHandled(await post(ingest.url, head));
      }),
      { numRuns: 60 },
    );
  });

  it("is still alive and accepting afterwards", async () => {
    const reply = await postJson(ingest.url, tick());
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
  });
});
