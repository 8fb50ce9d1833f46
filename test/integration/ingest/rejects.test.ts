import { topicSize } from "../../support/stack";
import {
  nowSeconds,
  post,
  postJson,
  startIngestNode,
  tick,
  type ErrorBody,
  type IngestNode,
  type PostOptions,
  type Reply,
} from "./helpers";

// The integration project's `testTimeout` in jest.config.js is not applied (Jest reads it only from
// the global config), and a loaded 2-core machine needs more than the default 5 s.
jest.setTimeout(120000);

/**
 * What the course generator could never send gets a 4xx whose JSON body names the field and the
 * reason, and none of it reaches Kafka (docs/generator-contract.md).
 */

const BODY_LIMIT = 16 * 1024;
const MAX_BATCH = 20;

const orderBook = (o: Record<string, unknown> = {}) => ({
  data_type: "order_book",
  timestamp: nowSeconds(),
  stock_symbol: "AAPL",
  order_type: "buy",
  price: 512.5,
  quantity: 10,
  ...o,
});
const sentiment = (o: Record<string, unknown> = {}) => ({
  data_type: "news_sentiment",
  timestamp: nowSeconds(),
  stock_symbol: "AAPL",
  sentiment_score: -0.5,
  sentiment_magnitude: 0.25,
  ...o,
});
const market = (o: Record<string, unknown> = {}) => ({
  data_type: "market_data",
  timestamp: nowSeconds(),
  stock_symbol: "AAPL",
  market_cap: 2.5e12,
  pe_ratio: 28.5,
  ...o,
});
const economic = (o: Record<string, unknown> = {}) => ({
  data_type: "economic_indicator",
  timestamp: nowSeconds(),
  indicator_name: "GDP Growth Rate",
  value: 1.25,
  ...o,
});

const json = (value: unknown) => JSON.stringify(value);
/** A valid tick's text with one value replaced by raw text that JSON.stringify cannot produce. */
const rawTick = (field: string, raw: string) => json(tick({ [field]: "@@" })).replace('"@@"', raw);

interface ExpectedIssue {
  index?: number;
  path: string;
  message: RegExp;
}

interface BadInput {
  name: string;
  body: string | Buffer;
  options?: PostOptions;
  status: 400 | 413 | 415;
  type: string;
  /** Each must match one issue of the answer; for a batch every issue must also be at `index`. */
  issues?: ExpectedIssue[];
  /** Matched against `error` when the failure concerns the request rather than a field. */
  error?: RegExp;
}

const field = (path: string, message: RegExp, index = 0): ExpectedIssue[] => [{ index, path, message }];
const invalid = (name: string, value: unknown, path: string, message: RegExp): BadInput => ({
  name,
  body: json(value),
  status: 400,
  type: "VALIDATION_ERROR",
  issues: field(path, message),
});

const goodBatch = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    tick({ stock_symbol: ["AAPL", "MSFT", "TSLA"][i % 3], volume: 1000 + i }),
  );

const BAD_INPUTS: BadInput[] = [
  // Wrong types.
  invalid(
    "opening_price as a string",
    tick({ opening_price: "1000.5" }),
    "opening_price",
    /must be a number/,
  ),
  invalid("volume as a boolean", tick({ volume: true }), "volume", /must be a number/),
  invalid("stock_symbol as a number", tick({ stock_symbol: 1234 }), "stock_symbol", /must be a string/),
  invalid(
    "timestamp as an ISO date string",
    tick({ timestamp: new Date().toISOString() }),
    "timestamp",
    /must be a number/,
  ),
  invalid("order_book price as a string", orderBook({ price: "512.5" }), "price", /must be a number/),
  invalid(
    "economic_indicator value as an object",
    economic({ value: { v: 1 } }),
    "value",
    /must be a number/,
  ),
  // Missing fields.
  invalid(
    "price tick without stock_symbol",
    tick({ stock_symbol: undefined }),
    "stock_symbol",
    /is required/,
  ),
  invalid("price tick without timestamp", tick({ timestamp: undefined }), "timestamp", /is required/),
  invalid("price tick without volume", tick({ volume: undefined }), "volume", /is required/),
  invalid(
    "news_sentiment without sentiment_magnitude",
    sentiment({ sentiment_magnitude: undefined }),
    "sentiment_magnitude",
    /is required/,
  ),
  invalid(
    "economic_indicator without indicator_name",
    economic({ indicator_name: undefined }),
    "indicator_name",
    /is required/,
  ),
  invalid(
    "economic_indicator with an empty indicator_name",
    economic({ indicator_name: "  " }),
    "indicator_name",
    /must not be empty/,
  ),
  invalid(
    "order_book without stock_symbol",
    orderBook({ stock_symbol: undefined }),
    "stock_symbol",
    /is required/,
  ),
  // NaN and Infinity: as strings they are strings; as bare words they are not JSON at all.
  invalid('volume "NaN" as a string', tick({ volume: "NaN" }), "volume", /must be a number/),
  invalid('high "Infinity" as a string', tick({ high: "Infinity" }), "high", /must be a number/),
  {
    name: "volume NaN as a bare word (invalid JSON)",
    body: rawTick("volume", "NaN"),
    status: 400,
    type: "INVALID_JSON",
    issues: field("(body)", /not valid JSON/),
  },
  {
    name: "high Infinity as a bare word (invalid JSON)",
    body: rawTick("high", "Infinity"),
    status: 400,
    type: "INVALID_JSON",
    issues: field("(body)", /not valid JSON/),
  },
  {
    name: "opening_price 1e400, which parses to Infinity",
    body: rawTick("opening_price", "1e400"),
    status: 400,
    type: "VALIDATION_ERROR",
    issues: field("opening_price", /must be a finite number/),
  },
  // Values out of range.
  invalid("negative volume", tick({ volume: -5 }), "volume", /must not be negative/),
  invalid("fractional volume", tick({ volume: 5000.5 }), "volume", /must be a whole number/),
  invalid(
    "low above min(open, close)",
    tick({ opening_price: 100, closing_price: 105, high: 110, low: 101 }),
    "low",
    /must not be above opening_price or closing_price/,
  ),
  invalid(
    "high below max(open, close)",
    tick({ opening_price: 100, closing_price: 105, high: 104, low: 99 }),
    "high",
    /must not be below opening_price or closing_price/,
  ),
  invalid(
    "zero opening_price",
    tick({ opening_price: 0, low: 0 }),
    "opening_price",
    /^must be at least 0\.000001 \(1e-6\)$/,
  ),
  invalid(
    "negative closing_price",
    tick({ closing_price: -3, low: -4 }),
    "closing_price",
    /^must be at least 0\.000001 \(1e-6\)$/,
  ),
  // Bounds that keep every sum, average and total finite and in its column.
  ...(["opening_price", "closing_price", "high", "low"] as const).map(f =>
    invalid(
      `${f} 1e308`,
      tick({ opening_price: 100, closing_price: 100, high: 100, low: 100, [f]: 1e308 }),
      f,
      /^must be at most 1000000000 \(1e9\)$/,
    ),
  ),
  invalid("low below 0.000001", tick({ low: 0.0000009 }), "low", /^must be at least 0\.000001 \(1e-6\)$/),
  invalid(
    "volume 2^53 - 1",
    tick({ volume: 9007199254740991 }),
    "volume",
    /^must be at most 1000000000000 \(1e12\)$/,
  ),
  invalid(
    "volume one past 1e12",
    tick({ volume: 1e12 + 1 }),
    "volume",
    /^must be at most 1000000000000 \(1e12\)$/,
  ),
  invalid(
    "order_book price 1e10",
    orderBook({ price: 1e10 }),
    "price",
    /^must be at most 1000000000 \(1e9\)$/,
  ),
  invalid(
    "order quantity 2^53 - 1",
    orderBook({ quantity: 9007199254740991 }),
    "quantity",
    /^must be at most 1000000000000 \(1e12\)$/,
  ),
  invalid(
    "market_cap 1e17",
    market({ market_cap: 1e17 }),
    "market_cap",
    /^must be at most 10000000000000000 \(1e16\)$/,
  ),
  invalid(
    "pe_ratio above 1e6",
    market({ pe_ratio: 1000001 }),
    "pe_ratio",
    /^must be at most 1000000 \(1e6\)$/,
  ),
  invalid(
    "pe_ratio below -1e6",
    market({ pe_ratio: -1000001 }),
    "pe_ratio",
    /^must be at least -1000000 \(-1e6\)$/,
  ),
  invalid(
    "sentiment_magnitude above 1e6",
    sentiment({ sentiment_magnitude: 1e7 }),
    "sentiment_magnitude",
    /^must be at most 1000000 \(1e6\)$/,
  ),
  invalid(
    "negative sentiment_magnitude",
    sentiment({ sentiment_magnitude: -0.5 }),
    "sentiment_magnitude",
    /^must not be negative$/,
  ),
  invalid(
    "economic_indicator value above 1e15",
    economic({ value: 2e15 }),
    "value",
    /^must be at most 1000000000000000 \(1e15\)$/,
  ),
  invalid(
    "economic_indicator value below -1e15",
    economic({ value: -2e15 }),
    "value",
    /^must be at least -1000000000000000 \(-1e15\)$/,
  ),
  invalid("timestamp in milliseconds", tick({ timestamp: Date.now() }), "timestamp", /milliseconds/),
  invalid(
    "timestamp before 2000",
    tick({ timestamp: 86400 }),
    "timestamp",
    /between 2000-01-01 and 2100-01-01/,
  ),
  invalid(
    "timestamp after 2100",
    tick({ timestamp: 5_000_000_000 }),
    "timestamp",
    /between 2000-01-01 and 2100-01-01/,
  ),
  invalid("lowercase ticker", tick({ stock_symbol: "aapl" }), "stock_symbol", /upper-case ticker/),
  invalid("garbage ticker", tick({ stock_symbol: "AA PL;DROP" }), "stock_symbol", /upper-case ticker/),
  invalid("empty ticker", tick({ stock_symbol: "" }), "stock_symbol", /upper-case ticker/),
  invalid(
    "unknown data_type",
    tick({ data_type: "dividend" }),
    "data_type",
    /must be one of order_book, news_sentiment, market_data, economic_indicator.*got "dividend"/,
  ),
  invalid("data_type null", tick({ data_type: null }), "data_type", /must be one of .*got null/),
  invalid(
    "sentiment_score above 1",
    sentiment({ sentiment_score: 1.5 }),
    "sentiment_score",
    /between -1 and 1/,
  ),
  invalid(
    "sentiment_score below -1",
    sentiment({ sentiment_score: -1.01 }),
    "sentiment_score",
    /between -1 and 1/,
  ),
  invalid("invalid order_type", orderBook({ order_type: "hold" }), "order_type", /"buy" or "sell"/),
  invalid("order quantity 0", orderBook({ quantity: 0 }), "quantity", /at least 1/),
  invalid("negative market_cap", market({ market_cap: -1 }), "market_cap", /must be greater than 0/),
  {
    name: "a data_type nested thousands deep (its description must not overflow the stack)",
    body: `{"data_type":${"[".repeat(5000)}${"]".repeat(5000)}}`,
    status: 400,
    type: "VALIDATION_ERROR",
    issues: field("data_type", /must be one of .*got an array/),
  },
  {
    name: "a 10,000-character data_type (not echoed back in full)",
    body: json(tick({ data_type: "x".repeat(10000) })),
    status: 400,
    type: "VALIDATION_ERROR",
    issues: field("data_type", /^must be one of .*\(10000 characters\)$/),
  },
  // Batches and body shapes.
  {
    name: "an empty array",
    body: "[]",
    status: 400,
    type: "EMPTY_BATCH",
    issues: field("(body)", /non-empty array/),
  },
  {
    name: "an array with one bad item among good ones",
    body: json([...goodBatch(4), tick({ low: 2000 }), ...goodBatch(3)]),
    status: 400,
    type: "VALIDATION_ERROR",
    issues: field("low", /must not be above/, 4),
  },
  {
    name: "an array with a null item among good ones",
    body: json([...goodBatch(2), null, ...goodBatch(2)]),
    status: 400,
    type: "VALIDATION_ERROR",
    issues: field("(root)", /must be a JSON object, got null/, 2),
  },
  invalid("a JSON null body", null, "(root)", /must be a JSON object, got null/),
  invalid("a JSON number body", 42, "(root)", /must be a JSON object, got number/),
  invalid("a JSON string body", "AAPL", "(root)", /must be a JSON object, got string/),
  invalid("a nested array", [[tick()]], "(root)", /must be a JSON object, got an array/),
  {
    name: "truncated JSON",
    body: json(tick()).slice(0, 40),
    status: 400,
    type: "INVALID_JSON",
    issues: field("(body)", /not valid JSON/),
  },
  {
    name: "an empty body",
    body: "",
    status: 400,
    type: "INVALID_JSON",
    issues: field("(body)", /not valid JSON/),
  },
  {
    name: "a bad NDJSON line",
    body: `${json(tick())}\n{"stock_symbol": "AAPL",\n${json(tick())}\n`,
    options: { contentType: "application/x-ndjson" },
    status: 400,
    type: "INVALID_JSON",
    error: /line 2/,
    issues: field("(line 2)", /not valid JSON/, 1),
  },
  {
    name: "an NDJSON line that is JSON but not a valid message",
    body: `${json(tick())}\n${json(tick())}\n${json(orderBook({ quantity: 0 }))}\n`,
    options: { contentType: "application/x-ndjson" },
    status: 400,
    type: "VALIDATION_ERROR",
    issues: field("quantity", /at least 1/, 2),
  },
  // Transport.
  {
    name: "Content-Type text/plain",
    body: json(tick()),
    options: { contentType: "text/plain" },
    status: 415,
    type: "UNSUPPORTED_MEDIA_TYPE",
    error: /Content-Type must be application\/json.*text\/plain/,
  },
  {
    name: "no Content-Type",
    body: json(tick()),
    options: { contentType: null },
    status: 415,
    type: "UNSUPPORTED_MEDIA_TYPE",
    error: /Content-Type must be application\/json.*got null/,
  },
  {
    name: "Content-Type application/x-www-form-urlencoded",
    body: "stock_symbol=AAPL&volume=5",
    options: { contentType: "application/x-www-form-urlencoded" },
    status: 415,
    type: "UNSUPPORTED_MEDIA_TYPE",
    error: /x-www-form-urlencoded/,
  },
  {
    name: "a body over INGEST_BODY_LIMIT",
    body: json(goodBatch(MAX_BATCH).map(t => ({ ...t, padding: "p".repeat(1000) }))),
    status: 413,
    type: "PAYLOAD_TOO_LARGE",
    error: new RegExp(`limit of ${BODY_LIMIT} bytes \\(INGEST_BODY_LIMIT\\)`),
  },
  {
    name: "a chunked body over INGEST_BODY_LIMIT (no Content-Length to refuse early)",
    body: json(goodBatch(MAX_BATCH).map(t => ({ ...t, padding: "p".repeat(1000) }))),
    options: { chunkBytes: 4096 },
    status: 413,
    type: "PAYLOAD_TOO_LARGE",
    error: /INGEST_BODY_LIMIT/,
  },
  {
    name: "a JSON array over INGEST_MAX_BATCH",
    body: json(goodBatch(MAX_BATCH + 1)),
    status: 413,
    type: "BATCH_TOO_LARGE",
    error: new RegExp(`at most ${MAX_BATCH} messages \\(INGEST_MAX_BATCH\\), got ${MAX_BATCH + 1}`),
  },
  {
    name: "NDJSON over INGEST_MAX_BATCH",
    body: goodBatch(MAX_BATCH + 5)
      .map(t => json(t))
      .join("\n"),
    options: { contentType: "application/x-ndjson" },
    status: 413,
    type: "BATCH_TOO_LARGE",
    error: /INGEST_MAX_BATCH/,
  },
];

function expectErrorBody(reply: Reply, status: number, type: string): ErrorBody {
  expect({ status: reply.status, text: reply.text }).toEqual({ status, text: expect.any(String) });
  expect(reply.headers["content-type"]).toMatch(/^application\/json/);
  const body = reply.json as ErrorBody;
  expect(body).toEqual(expect.objectContaining({ error: expect.any(String), type }));
  expect(body.error.length).toBeGreaterThan(0);
  return body;
}

describe("POST /ingest rejects what the generator could never send", () => {
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_rejects", {
      INGEST_BODY_LIMIT: String(BODY_LIMIT),
      INGEST_MAX_BATCH: String(MAX_BATCH),
    });
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it("starts from an empty topic", async () => {
    expect(await topicSize(ingest.topic)).toBe(0);
  });

  it.each(BAD_INPUTS.map(b => [b.name, b] as const))(
    "answers %s with a 4xx naming the problem",
    async (_, bad) => {
      const reply = await post(ingest.url, bad.body, bad.options);
      const body = expectErrorBody(reply, bad.status, bad.type);
      if (bad.error) expect(body.error).toMatch(bad.error);
      if (bad.issues) {
        expect(body.issues).toEqual(expect.any(Array));
        for (const want of bad.issues) {
          expect(body.issues).toContainEqual({
            index: want.index ?? 0,
            path: want.path,
            message: expect.stringMatching(want.message),
          });
          // Whole-batch rejection still blames only the bad item.
          if (want.index !== undefined) expect(body.issues!.every(i => i.index === want.index)).toBe(true);
        }
      }
      // An answer that echoes a huge input back is its own problem.
      expect(reply.text.length).toBeLessThan(4000);
    },
  );

  it("let none of the rejected requests reach Kafka", async () => {
    expect(await topicSize(ingest.topic)).toBe(0);
  });

  it("still accepts a valid tick afterwards, so the empty topic above means something", async () => {
    const reply = await postJson(ingest.url, tick());
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    expect(await topicSize(ingest.topic)).toBe(1);
  });
});

describe("POST /ingest with INGEST_TOKEN set", () => {
  const TOKEN = "ingest-test-token-0123456789";
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_token", { INGEST_TOKEN: TOKEN });
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it.each([
    ["no Authorization header", {}],
    ["a wrong bearer token", { Authorization: "Bearer not-the-token" }],
    ["the token with one character more", { Authorization: `Bearer ${TOKEN}x` }],
    ["the token under the Basic scheme", { Authorization: `Basic ${TOKEN}` }],
    ["an empty bearer", { Authorization: "Bearer " }],
  ])("answers 401 with a JSON body to %s", async (_, headers: Record<string, string>) => {
    const reply = await postJson(ingest.url, tick(), { headers });
    const body = expectErrorBody(reply, 401, "UNAUTHORIZED");
    expect(body.error).toMatch(/bearer token/);
    expect(reply.headers["www-authenticate"]).toMatch(/^Bearer/);
  });

  it("checks the token before the body, so an unauthorized invalid body is still a 401", async () => {
    const reply = await post(ingest.url, "{not json", { contentType: "text/plain" });
    expectErrorBody(reply, 401, "UNAUTHORIZED");
  });

  it("let none of the unauthorized requests reach Kafka, and accepts the right token", async () => {
    expect(await topicSize(ingest.topic)).toBe(0);
    const reply = await postJson(ingest.url, tick(), { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    expect(await topicSize(ingest.topic)).toBe(1);
  });
});

describe("POST /ingest with INGEST_RATE_LIMIT set", () => {
  const LIMIT = 5;
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_rate", { INGEST_RATE_LIMIT: String(LIMIT) });
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it("answers 429 with a JSON body past the limit, produces only what it answered 200, and lets the next window through", async () => {
    const started = performance.now();
    const replies = await burstUntilLimited(i => postJson(ingest.url, tick({ volume: 100 + i })), LIMIT);
    const elapsedMs = performance.now() - started;
    const statuses = replies.map(r => r.status);
    expect(statuses.every(s => s === 200 || s === 429)).toBe(true);
    const limited = replies.filter(r => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    for (const r of limited) {
      const body = expectErrorBody(r, 429, "RATE_LIMIT_EXCEEDED");
      expect(body.error).toMatch(/more than 5 requests in one second .*INGEST_RATE_LIMIT/);
      expect(r.headers["retry-after"]).toBe("1");
    }
    const accepted = statuses.filter(s => s === 200).length;
    // The limiter counts per fixed 1 s window, so a burst gets one allowance per window it touches.
    expect(accepted).toBeLessThanOrEqual((Math.ceil(elapsedMs / 1000) + 1) * LIMIT);
    expect(await topicSize(ingest.topic)).toBe(accepted);

    const later = await waitForStatus(ingest.url, 200);
    expect(later.json).toEqual({ accepted: 1 });
    expect(await topicSize(ingest.topic)).toBe(accepted + 1);
  });
});

describe("the rate limit and X-Forwarded-For", () => {
  const LIMIT = 5;
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_xff", { INGEST_RATE_LIMIT: String(LIMIT) });
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it("does not let a client escape the limit by writing its own X-Forwarded-For", async () => {
    const started = performance.now();
    const replies = await burstUntilLimited(
      i =>
        postJson(ingest.url, tick({ volume: 100 + i }), {
          headers: { "X-Forwarded-For": `10.0.0.${i % 250}` },
        }),
      LIMIT,
    );
    const elapsedMs = performance.now() - started;
    const accepted = replies.filter(r => r.status === 200).length;
    expect(replies.filter(r => r.status === 429).length).toBeGreaterThan(0);
    expect(accepted).toBeLessThanOrEqual((Math.ceil(elapsedMs / 1000) + 1) * LIMIT);
  });
});

describe("GET /ingest", () => {
  let ingest: IngestNode;

  beforeAll(async () => {
    ingest = await startIngestNode("ingest_get");
  });

  afterAll(async () => {
    await ingest?.stop();
  });

  it("answers 405 with a JSON body that says to POST", async () => {
    const res = await fetch(ingest.url);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect(await res.json()).toEqual({
      error: "send messages with POST /ingest",
      type: "METHOD_NOT_ALLOWED",
    });
  });
});

/**
 * Bursts of 6 x `limit` concurrent requests until one of them is refused with 429. One burst is
 * normally enough, but a loaded machine may spread a burst over several 1 s windows, each within
 * the limit; the limit can only be seen to act when more than `limit` requests land in one window.
 * The callers' bound (accepted <= allowance of every window touched) holds across all bursts.
 */
async function burstUntilLimited(send: (i: number) => Promise<Reply>, limit: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  const deadline = Date.now() + 60000;
  do {
    const offset = replies.length;
    replies.push(...(await Promise.all(Array.from({ length: 6 * limit }, (_, i) => send(offset + i)))));
  } while (!replies.some(r => r.status === 429) && Date.now() < deadline);
  return replies;
}

/** Posts a valid tick every 200 ms until the answer has `status` (a rate-limit window has passed). */
async function waitForStatus(url: string, status: number, timeoutMs = 30000): Promise<Reply> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await postJson(url, tick());
    if (reply.status === status || Date.now() > deadline) {
      expect(reply.status).toBe(status);
      return reply;
    }
    await new Promise(r => setTimeout(r, 200));
  }
}
