import { setTimeout as sleep } from "node:timers/promises";
import { migrate } from "../../../../adapters/sql/migrate";
import { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { DeliveryStore } from "../../../../runtime/notify/delivery-store";
import { freshDatabase } from "../../../support/stack";

/** The SQL of signal deliveries on the real Postgres: cursors, leases, retries, the horizon. */

let db: PostgresClient;
let drop: () => Promise<void>;
let store: DeliveryStore;

beforeEach(async () => {
  const d = await freshDatabase();
  drop = d.drop;
  db = new PostgresClient(d.url, 4);
  await migrate(db);
  store = new DeliveryStore(db);
});
afterEach(async () => {
  await db.close();
  await drop();
});

const insert = (symbol: string, seq: number) =>
  db.query(
    `INSERT INTO signals (symbol, side, rsi, price, "timestamp", seq) VALUES ($1, 'buy', 20, 10, now(), $2)`,
    [symbol, seq],
  );
const start = { tx: "0", id: 0 };

describe("DeliveryStore", () => {
  it("starts a new subscriber after the stored signals, or at the first, and keeps a known one's cursor", async () => {
    await insert("A", 1);
    await store.register("late", "http://a.test/", "now");
    await store.register("early", "http://b.test/", "start");
    await insert("A", 2);
    const late = await store.lease("late", "n1", 30);
    const early = await store.lease("early", "n1", 30);
    expect((await store.signalsAfter(late!.cursor, 10)).map(s => s.seq)).toEqual([2]);
    expect((await store.signalsAfter(early!.cursor, 10)).map(s => s.seq)).toEqual([1, 2]);
    await store.register("late", "http://moved.test/", "start");
    expect(await store.lease("late", "n1", 30)).toMatchObject({
      url: "http://moved.test/",
      cursor: late!.cursor,
    });
  });

  it("gives a subscriber's lease to one node at a time, and to another once it ran out", async () => {
    await store.register("bot", "http://a.test/", "start");
    expect(await store.lease("bot", "n1", 1)).not.toBeNull();
    expect(await store.lease("bot", "n2", 1)).toBeNull();
    await sleep(1100);
    expect(await store.lease("bot", "n2", 30)).not.toBeNull();
    // The old holder can no longer move the cursor.
    await insert("A", 1);
    const [signal] = await store.signalsAfter(start, 1);
    expect(await store.advance("bot", "n1", { tx: signal.tx, id: signal.id }, 1)).toBe(false);
    expect(await store.advance("bot", "n2", { tx: signal.tx, id: signal.id }, 1)).toBe(true);
    expect(await store.lease("bot", "n2", 30)).toMatchObject({
      delivered: 1,
      cursor: { tx: signal.tx, id: signal.id },
    });
  });

  it("never moves a cursor back", async () => {
    await store.register("bot", "http://a.test/", "start");
    await insert("A", 1);
    await insert("A", 2);
    const [one, two] = await store.signalsAfter(start, 10);
    await store.lease("bot", "n1", 30);
    expect(await store.advance("bot", "n1", { tx: two.tx, id: two.id }, 1)).toBe(true);
    expect(await store.advance("bot", "n1", { tx: one.tx, id: one.id }, 1)).toBe(false);
  });

  it("counts failed attempts at a signal by Postgres' clock, and clears them when the cursor moves", async () => {
    await store.register("bot", "http://a.test/", "start");
    await store.lease("bot", "n1", 30);
    expect(await store.failed("bot", "n1", "answered 500", 60000)).toMatchObject({ attempts: 1 });
    await sleep(200);
    const second = await store.failed("bot", "n1", "answered 503", 60000);
    expect(second?.attempts).toBe(2);
    expect(second?.failingFor).toBeGreaterThanOrEqual(150);
    const state = await store.lease("bot", "n1", 30);
    expect(state).toMatchObject({ attempts: 2, lastError: "answered 503" });
    expect(state!.waitMs).toBeGreaterThan(50000);
    await insert("A", 1);
    const [s] = await store.signalsAfter(start, 1);
    await store.advance("bot", "n1", { tx: s.tx, id: s.id }, 1);
    expect(await store.lease("bot", "n1", 30)).toMatchObject({ attempts: 0, waitMs: 0, nextAttemptAt: null });
  });

  it("reads no signal past one whose transaction is still open", async () => {
    let commit: () => void = () => undefined;
    const open = db.transaction(async tx => {
      await tx.query(
        `INSERT INTO signals (symbol, side, rsi, price, "timestamp", seq) VALUES ('E', 'buy', 20, 10, now(), 1)`,
      );
      await new Promise<void>(r => (commit = r));
    });
    await sleep(100);
    await insert("L", 1);
    expect(await store.signalsAfter(start, 10)).toEqual([]);
    commit();
    await open;
    expect((await store.signalsAfter(start, 10)).map(s => s.symbol)).toEqual(["E", "L"]);
  });
});
