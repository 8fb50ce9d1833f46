import { setTimeout as sleep } from "node:timers/promises";
import { migrate } from "../../../../adapters/sql/migrate";
import { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { SignalNotifier, type Subscriber } from "../../../../runtime/notify/signal-notifier";
import { freshDatabase, waitFor } from "../../../support/stack";
import { WebhookReceiver } from "../../../support/webhook-receiver";

/**
 * Signal deliveries from the record, on the real Postgres: every stored signal reaches its
 * subscriber at least once, signed, in order, through receiver failures, outages, a second
 * notifier node and transactions that commit late.
 */

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const quiet = { info() {}, warn() {}, error() {}, debug() {} };
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function database(): Promise<PostgresClient> {
  const d = await freshDatabase();
  const db = new PostgresClient(d.url, 4);
  cleanups.push(d.drop, () => db.close());
  await migrate(db);
  return db;
}

async function receiver(answer?: (n: number, id: string) => number): Promise<WebhookReceiver> {
  const r = new WebhookReceiver(SECRET, answer);
  await r.start();
  cleanups.push(() => r.stop());
  return r;
}

function notifier(db: PostgresClient, subscriber: Subscriber, owner = "node-1", retryMs = 3_600_000) {
  const n = new SignalNotifier({
    db,
    subscribers: [subscriber],
    secret: SECRET,
    owner,
    retryMs,
    timeoutMs: 1000,
    logger: quiet,
    describe: s => `${s.side} ${s.symbol} #${s.seq}`,
  });
  cleanups.push(() => n.stop());
  return n;
}

/** Stores signals as the results transaction does (symbol, seq), each call one transaction. */
async function store(db: PostgresClient, signals: [string, number, "buy" | "sell"][]): Promise<void> {
  await db.query(
    `INSERT INTO signals (symbol, side, rsi, price, "timestamp", seq)
     SELECT s, d, 25, 100, now(), q FROM unnest($1::text[], $2::bigint[], $3::text[]) AS i(s, q, d)`,
    [signals.map(s => s[0]), signals.map(s => s[1]), signals.map(s => s[2])],
  );
}

const ids = (r: WebhookReceiver) => r.accepted().map(d => d.id);

describe("SignalNotifier on Postgres", () => {
  it("delivers every stored signal in order, signed, under one id per signal, while a third of the answers are 500", async () => {
    const db = await database();
    const hook = await receiver(n => (n % 3 === 0 ? 500 : 200));
    const n = notifier(db, { name: "bot", url: hook.url, from: "start" });
    await store(db, [
      ["AAPL", 3, "buy"],
      ["AAPL", 9, "sell"],
    ]);
    await n.start();
    await store(db, [["MSFT", 4, "buy"]]);
    await store(db, [["AAPL", 15, "buy"]]);
    n.wake();
    await waitFor("four deliveries", () => hook.accepted().length >= 4, 60000, 50);
    expect(ids(hook)).toEqual(["sig_AAPL_3", "sig_AAPL_9", "sig_MSFT_4", "sig_AAPL_15"]);
    expect(hook.received.every(d => d.verified)).toBe(true);
    // The failed attempts carried the id of the signal they retried: one id per signal.
    expect(new Set(hook.received.map(d => d.id)).size).toBe(4);
    expect(hook.received.some(d => d.status === 500)).toBe(true);
    expect(hook.accepted()[0].body).toMatchObject({
      type: "signal.created",
      data: { symbol: "AAPL", seq: 3, side: "buy", message: "buy AAPL #3" },
    });
  });

  it("loses nothing while the receiver is away, and goes on from the record when it is back", async () => {
    const db = await database();
    const hook = await receiver();
    const n = notifier(db, { name: "bot", url: hook.url, from: "start" });
    await n.start();
    await hook.stop();
    await store(db, [["TSLA", 5, "sell"]]);
    await store(db, [["TSLA", 8, "buy"]]);
    n.wake();
    await waitFor("a failed attempt", async () => (await n.overview())[0].attempts > 0, 20000, 50);
    await hook.start();
    await waitFor("both deliveries", () => hook.accepted().length >= 2, 60000, 50);
    expect(ids(hook)).toEqual(["sig_TSLA_5", "sig_TSLA_8"]);
    const [state] = await n.overview();
    expect(state).toMatchObject({ lag: 0, delivered: 2, attempts: 0, nextAttempt: null });
  });

  it("lets two nodes share a subscriber: one delivers, the other takes over when it stops", async () => {
    const db = await database();
    const hook = await receiver();
    const subscriber: Subscriber = { name: "bot", url: hook.url, from: "start" };
    const first = notifier(db, subscriber, "node-1");
    const second = notifier(db, subscriber, "node-2");
    await first.start();
    await second.start();
    await store(db, [["AAPL", 1, "buy"]]);
    first.wake();
    second.wake();
    await waitFor("the first delivery", () => hook.accepted().length >= 1, 20000, 50);
    await first.stop();
    await store(db, [["AAPL", 2, "sell"]]);
    second.wake();
    await waitFor("the second delivery", () => hook.accepted().length >= 2, 60000, 50);
    expect(ids(hook)).toEqual(["sig_AAPL_1", "sig_AAPL_2"]);
  });

  it("never skips a signal whose transaction commits after a later one", async () => {
    const db = await database();
    const hook = await receiver();
    const n = notifier(db, { name: "bot", url: hook.url, from: "start" });
    await n.start();
    let release: () => void = () => undefined;
    const held = new Promise<void>(r => (release = r));
    // A results transaction that inserted its signal and has not committed yet.
    const early = db.transaction(async tx => {
      await tx.query(
        `INSERT INTO signals (symbol, side, rsi, price, "timestamp", seq) VALUES ('EARLY', 'buy', 20, 1, now(), 1)`,
      );
      await held;
    });
    await sleep(200);
    await store(db, [["LATE", 1, "sell"]]);
    n.wake();
    await sleep(1500);
    expect(hook.received).toEqual([]);
    release();
    await early;
    n.wake();
    await waitFor("both deliveries", () => hook.accepted().length >= 2, 20000, 50);
    expect(ids(hook)).toEqual(["sig_EARLY_1", "sig_LATE_1"]);
  });

  it("stops at a 410 until the subscriber is enabled again", async () => {
    const db = await database();
    const hook = await receiver(() => 410);
    const n = notifier(db, { name: "bot", url: hook.url, from: "start" });
    await n.start();
    await store(db, [["AAPL", 1, "buy"]]);
    n.wake();
    await waitFor(
      "the subscriber disabled",
      async () => (await n.overview())[0].disabled !== null,
      20000,
      50,
    );
    expect((await n.overview())[0].disabled?.reason).toMatch(/410 Gone/);
    hook.answerWith(() => 200);
    expect(await n.enable("bot")).toBe(true);
    n.wake();
    await waitFor("the delivery after enabling", () => hook.accepted().length >= 1, 30000, 50);
    expect(ids(hook)).toEqual(["sig_AAPL_1"]);
  });

  it("keeps a delivery that ran out of retries as a dead letter, goes on, and redelivers it on demand under its id", async () => {
    const db = await database();
    const hook = await receiver((_n, id) => (id === "sig_AAPL_1" ? 503 : 200));
    const n = notifier(db, { name: "bot", url: hook.url, from: "start" }, "node-1", 1500);
    await n.start();
    await store(db, [["AAPL", 1, "buy"]]);
    await store(db, [["AAPL", 2, "sell"]]);
    n.wake();
    await waitFor("the next signal delivered", () => hook.accepted().length >= 1, 60000, 50);
    expect(ids(hook)).toEqual(["sig_AAPL_2"]);
    expect((await n.overview())[0].deadLetters).toBe(1);
    hook.answerWith(() => 200);
    expect(await n.redeliver("bot")).toEqual({ redelivered: 1, failed: 0 });
    expect(ids(hook)).toEqual(["sig_AAPL_2", "sig_AAPL_1"]);
    expect((await n.overview())[0].deadLetters).toBe(0);
  });

  it("delivers only the symbols and sides a subscriber asked for, and a new subscriber only what is stored after it", async () => {
    const db = await database();
    await store(db, [["OLD", 1, "buy"]]);
    const hook = await receiver();
    const n = notifier(db, {
      name: "apple-buys",
      url: hook.url,
      symbols: ["AAPL"],
      sides: ["buy"],
      from: "now",
    });
    await n.start();
    await store(db, [
      ["AAPL", 1, "buy"],
      ["AAPL", 2, "sell"],
      ["MSFT", 1, "buy"],
      ["AAPL", 3, "buy"],
    ]);
    n.wake();
    await waitFor("two deliveries", () => hook.accepted().length >= 2, 20000, 50);
    await waitFor("the cursor past the rest", async () => (await n.overview())[0].lag === 0, 20000, 50);
    expect(ids(hook)).toEqual(["sig_AAPL_1", "sig_AAPL_3"]);
  });
});
