import { KafkaLog } from "../../../adapters/log/kafka-log";
import { messageKey, type PriceTick } from "../../../domain/messages";
import { SymbolActor } from "../../../domain/symbol-actor";
import { IDEMPOTENCY_INDEX_HEADER, IDEMPOTENCY_KEY_HEADER } from "../../../runtime/apply-chunk";
import { freshDatabase, STACK, topicSize, uniqueName } from "../../support/stack";
import { openDatabase, settingsOf, waitUntilCommitted } from "../actors/harness";
import { post, startIngestNode, tick, type ErrorBody, type IngestNode } from "./helpers";

/**
 * POST /ingest with an Idempotency-Key, on real Kafka, Postgres and actors: a repeat of a
 * request is answered like the first and applied once, also when the first attempt reached
 * Kafka but its answer was lost; the same key with another body is refused with 422.
 */

const SYMBOLS = ["AAPL", "MSFT", "TSLA"];
let node: IngestNode;
let db: ReturnType<typeof openDatabase>;
let groupId: string;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const database = await freshDatabase();
  cleanups.push(database.drop);
  db = openDatabase(database.url);
  cleanups.push(() => db.close());
  groupId = uniqueName("idempotency_group");
  node = await startIngestNode("idempotency", {
    SERVICES: "gateway,ingest,actors",
    DATABASE_URL: database.url,
    REDIS_URL: STACK.redisUrl,
    KAFKA_GROUP_ID: groupId,
    METRICS_PORT: "0",
    DEMO_FEED: "0",
  });
  cleanups.push(() => node.stop());
}, 120000);

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 60000);

let clock = 1_764_151_200;
/** `n` ticks per symbol, symbols taking turns, each at a later time. */
function ticks(n: number): PriceTick[] {
  const out: PriceTick[] = [];
  for (let i = 0; i < n; i++)
    for (const symbol of SYMBOLS) {
      const price = 100 + Math.sin(clock) * 5;
      out.push(
        tick({
          stock_symbol: symbol,
          opening_price: price,
          closing_price: price + 0.5,
          high: price + 1,
          low: price - 1,
          timestamp: clock++,
        }) as unknown as PriceTick,
      );
    }
  return out;
}

const send = (body: unknown, key?: string) =>
  post(node.url, JSON.stringify(body), {
    headers: key === undefined ? {} : { "idempotency-key": key },
  });

describe("POST /ingest with an Idempotency-Key", () => {
  const applied: PriceTick[] = [];

  it("answers a repeat like the first and sends nothing again", async () => {
    const body = ticks(4);
    const first = await send(body, "order-1");
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ accepted: body.length });
    const inKafka = await topicSize(node.topic);
    const again = await send(body, "order-1");
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ accepted: body.length });
    expect(await topicSize(node.topic)).toBe(inKafka);
    applied.push(...body);
  }, 60000);

  it("refuses the same key with another body (422), naming the header", async () => {
    const before = await topicSize(node.topic);
    const reply = await send(ticks(1), "order-1");
    expect(reply.status).toBe(422);
    const error = reply.json as ErrorBody;
    expect(error.type).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(error.issues?.[0]?.path).toBe("(header) Idempotency-Key");
    expect(await topicSize(node.topic)).toBe(before);
  }, 60000);

  it("refuses a malformed key with 400", async () => {
    const reply = await send(ticks(1), "has spaces in it");
    expect(reply.status).toBe(400);
    expect(reply.text).toMatch(/Idempotency-Key/);
  }, 60000);

  it("applies once a request whose first attempt reached Kafka although its answer was lost", async () => {
    const body = ticks(5);
    // The first attempt: its messages are in Kafka with the key, but no answer came back
    // (the gateway died before recording the key), so the client sends it again.
    const log = new KafkaLog({
      brokers: STACK.kafkaBrokers.split(","),
      clientId: "idempotency-test",
      topic: node.topic,
      partitions: node.partitions,
    });
    cleanups.push(() => log.close());
    const producer = await log.createProducer();
    await producer.send(
      body.map((m, i) => ({
        key: messageKey(m),
        value: JSON.stringify(m),
        headers: { [IDEMPOTENCY_KEY_HEADER]: "order-2", [IDEMPOTENCY_INDEX_HEADER]: String(i) },
      })),
    );
    await producer.close();
    const retry = await send(body, "order-2");
    expect(retry.status).toBe(200);
    expect(retry.json).toEqual({ accepted: body.length });
    applied.push(...body);

    await waitUntilCommitted(node.topic, groupId, 90000);
    // One actor per symbol fed each tick once computes what must be stored.
    const settings = settingsOf({});
    const want: { symbol: string; seq: number; close: number; sma: number | null; rsi: number | null }[] = [];
    const actors = new Map<string, SymbolActor>();
    applied.forEach((m, offset) => {
      let actor = actors.get(m.stock_symbol);
      if (!actor) actors.set(m.stock_symbol, (actor = new SymbolActor(m.stock_symbol, settings)));
      const out = actor.apply(m, offset);
      if (out?.kind === "tick")
        want.push({
          symbol: m.stock_symbol,
          seq: out.tick.seq,
          close: out.tick.close,
          sma: out.tick.sma,
          rsi: out.tick.rsi,
        });
    });
    want.sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : a.seq - b.seq));
    const { rows } = await db.query<(typeof want)[number]>(
      `SELECT symbol, seq, closing_price AS close, moving_average AS sma, relative_strength_index AS rsi
       FROM ticks ORDER BY symbol COLLATE "C", seq`,
    );
    expect(rows).toEqual(want);
    // Kafka holds the second request twice; the actors skipped the copy.
    expect(await topicSize(node.topic)).toBe(4 * SYMBOLS.length + 2 * body.length);
  }, 120000);

  it("applies in full a new request under a key whose TTL ran out, and its retry once", async () => {
    const before = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ticks")).rows[0].n;
    const first = ticks(3);
    expect((await send(first, "order-3")).status).toBe(200);
    // A day later (the row aged by hand): the key is handed out anew, to a smaller request.
    await db.query(
      "UPDATE idempotency_keys SET created_at = now() - interval '30 days' WHERE key = 'order-3'",
    );
    const second = ticks(1);
    expect((await send(second, "order-3")).status).toBe(200);
    // Its answer was lost before the key was completed: the retry is sent to Kafka again.
    await db.query("UPDATE idempotency_keys SET completed_at = NULL WHERE key = 'order-3'");
    const inKafka = await topicSize(node.topic);
    expect((await send(second, "order-3")).status).toBe(200);
    expect(await topicSize(node.topic)).toBe(inKafka + second.length);

    await waitUntilCommitted(node.topic, groupId, 90000);
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ticks");
    // The new use's messages, indexes 0..2 below the first use's, are all applied; its copy is not.
    expect(rows[0].n - before).toBe(first.length + second.length);
    const uses = await db.query<{ use_id: string }>(
      "SELECT DISTINCT use_id FROM idempotency_marks WHERE key = 'order-3'",
    );
    expect(uses.rows).toHaveLength(1);
  }, 120000);
});
