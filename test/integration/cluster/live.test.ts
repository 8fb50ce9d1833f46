import { WebSocket } from "ws";
import type { Signal, TickResult } from "../../../domain/symbol-actor";
import { createNode, type StockNode } from "../../../app/node";
import { gatewayPort, waitUntilReady } from "../../support/ports";
import { deleteTopic, freshDatabase, STACK, testConfig, uniqueName, waitFor } from "../../support/stack";
import { WebhookReceiver } from "../../support/webhook-receiver";
import { getJson, makeTicks, postJson } from "./cluster-harness";

interface LiveMessage {
  type: string;
  ticks?: TickResult[];
  signal?: Signal;
  message?: string;
}

/**
 * The live outputs of one production-like node (real Kafka, Postgres and Redis): WebSocket
 * clients get coalesced ticks and every signal, and the notifier's webhook gets each signal
 * the signals table holds, signed, under one webhook-id each.
 */
describe("live updates: WebSocket and the notifier's webhook", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let node: StockNode;
  let base = "";
  let topic = "";
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const webhook = new WebhookReceiver(secret, () => 204);
  const ticks = makeTicks(400, 2, "live");
  const [first, second] = [...new Set(ticks.map(t => t.stock_symbol))].sort();

  beforeAll(async () => {
    db = await freshDatabase();
    // Both ports are the OS's pick as the servers listen: nothing can take them in between.
    await webhook.start();
    topic = uniqueName("live");
    node = createNode(
      testConfig({
        PORT: "0",
        KAFKA_ACK_TIMEOUT_MS: "30000",
        KAFKA_BROKERS: STACK.kafkaBrokers,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: uniqueName("live_group"),
        KAFKA_PARTITIONS: "4",
        DATABASE_URL: db.url,
        REDIS_URL: STACK.redisUrl,
        RSI_PERIOD: "3",
        NOTIFIER_WEBHOOK_URL: webhook.url,
        NOTIFIER_WEBHOOK_SECRET: secret,
      }),
    );
    await node.broker.start();
    base = `http://127.0.0.1:${gatewayPort(node)}`;
    // Its services may still be starting when broker.start() resolves (503 until then).
    await waitUntilReady(base);
  }, 180000);

  afterAll(async () => {
    await node?.broker.stop();
    await webhook.stop();
    await deleteTopic(topic);
    await db?.drop();
  });

  it("pushes ticks of the subscribed symbols and every signal, and delivers each signal to the webhook, signed", async () => {
    const all: LiveMessage[] = [];
    const only: LiveMessage[] = [];
    const connect = (path: string, into: LiveMessage[]) =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`${base.replace("http", "ws")}${path}`);
        ws.on("message", data => into.push(JSON.parse(data.toString()) as LiveMessage));
        ws.on("open", () => resolve(ws));
        ws.on("error", reject);
      });
    const sockets = [await connect("/ws", all), await connect(`/ws?symbols=${first}`, only)];
    try {
      for (let i = 0; i < ticks.length; i += 50) {
        expect((await postJson(`${base}/ingest`, ticks.slice(i, i + 50))).status).toBe(200);
      }
      const perSymbol = (symbol: string) => ticks.filter(t => t.stock_symbol === symbol).length;
      const lastSeq = (messages: LiveMessage[], symbol: string) =>
        Math.max(
          0,
          ...messages
            .flatMap(m => m.ticks ?? [])
            .filter(t => t.symbol === symbol)
            .map(t => t.seq),
        );
      await waitFor(
        "the last tick of both symbols on the WebSocket",
        () => lastSeq(all, first) === perSymbol(first) && lastSeq(all, second) === perSymbol(second),
        90000,
      );
      await waitFor(
        `the last tick of ${first} on the filtered WebSocket`,
        () => lastSeq(only, first) === perSymbol(first),
        60000,
      );

      const stored = (await getJson<Signal[]>(`${base}/api/signals?limit=10000`)).body;
      expect(stored.length).toBeGreaterThan(0);
      const key = (s: { symbol: string; seq: number; side: string }) => `${s.symbol}#${s.seq}#${s.side}`;
      const storedKeys = stored.map(key).sort();

      await waitFor(
        "every signal on the WebSocket",
        () => all.filter(m => m.type === "signal").length >= stored.length,
        60000,
      );
      expect(
        all
          .filter(m => m.type === "signal")
          .map(m => key(m.signal!))
          .sort(),
      ).toEqual(storedKeys);
      await waitFor("every signal at the webhook", () => webhook.accepted().length >= stored.length, 60000);
      const posted = webhook.accepted();
      expect(posted.map(d => key(d.body.data)).sort()).toEqual(storedKeys);
      expect(posted.every(d => d.verified && d.id === `sig_${d.body.data.symbol}_${d.body.data.seq}`)).toBe(
        true,
      );
      expect(posted.every(d => d.body.data.message.startsWith(d.body.data.side.toUpperCase()))).toBe(true);

      // The filtered client saw only its symbol.
      expect(only.flatMap(m => m.ticks ?? []).every(t => t.symbol === first)).toBe(true);
      expect(only.filter(m => m.type === "signal").every(m => m.signal!.symbol === first)).toBe(true);
    } finally {
      for (const ws of sockets) ws.close();
    }
  }, 300000);
});
