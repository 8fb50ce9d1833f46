import { TcpProxy } from "../../support/tcp-proxy";
import { createTopic, deleteTopic, freshDatabase, STACK, waitFor, withAdmin } from "../../support/stack";
import {
  actorsEnv,
  committedOffsets,
  deleteSnapshots,
  endOffsets,
  expectedTickRows,
  generateMessages,
  newScenario,
  openDatabase,
  place,
  produceAll,
  readSnapshots,
  readTicks,
  replay,
  settingsOf,
  startActorsNode,
  SYMBOLS,
  waitUntilCommitted,
  type TestScenario,
} from "./harness";

/**
 * A dependency of the actors goes away for a while (the TCP path to it is cut, the server itself
 * stays up for the other tests): the partition loops must hold their position, commit nothing
 * they could not store, and pick up by themselves once the path is back.
 */

const PARTITIONS = 3;
/** The outage lasts at least this long, and until the loops have been seen to run into it. */
const OUTAGE_MS = 5000;

const cleanups: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 60000);

interface Outage {
  scenario: TestScenario;
  db: ReturnType<typeof openDatabase>;
  proxy: TcpProxy;
  stop(): Promise<void>;
  /** The node's `stock_snapshot_cache_up` gauge. */
  cacheUp(): unknown;
}

/** A fresh scenario whose Postgres (or Redis) the actors reach only through a proxy the test can cut. */
async function setUp(through: "postgres" | "redis"): Promise<Outage> {
  const database = await freshDatabase();
  cleanups.push(database.drop);
  const db = openDatabase(database.url);
  cleanups.push(() => db.close());
  const target = new URL(through === "postgres" ? database.url : STACK.redisUrl);
  const proxy = new TcpProxy(target.hostname, Number(target.port));
  const port = await proxy.start();
  cleanups.push(() => proxy.stop());
  const proxied = new URL(target);
  proxied.port = String(port);
  const scenario = newScenario(`actors_${through}_outage`, PARTITIONS, database.url);
  await createTopic(scenario.topic, PARTITIONS);
  cleanups.push(
    () => deleteTopic(scenario.topic),
    () => deleteSnapshots(scenario),
  );
  const node = await startActorsNode(
    actorsEnv(scenario, {
      RETRY_MAX_BACKOFF_MS: "500",
      ...(through === "postgres" ? { DATABASE_URL: proxied.toString() } : { REDIS_URL: proxied.toString() }),
    }),
  );
  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= node.broker.stop());
  cleanups.push(stop);
  const cacheUp = () => node.broker.metrics.getMetric("stock.snapshot.cache.up")?.get()?.value;
  return { scenario, db, proxy, stop, cacheUp };
}

async function groupMembers(groupId: string): Promise<number> {
  const { groups } = await withAdmin(admin => admin.describeGroups([groupId]));
  return groups[0].members.length;
}

async function storedPerPartition(db: Outage["db"]): Promise<number[]> {
  const { rows } = await db.query<{ p: number; n: number }>(
    "SELECT kafka_partition AS p, count(*)::int AS n FROM ticks GROUP BY 1",
  );
  const out = Array<number>(PARTITIONS).fill(0);
  for (const r of rows) out[r.p] = r.n;
  return out;
}

/** Postgres: the partitions hold still until it is back. Redis, a cache: they go on without it. */
async function runOutage(through: "postgres" | "redis", seed: number): Promise<void> {
  const { scenario, db, proxy, stop, cacheUp } = await setUp(through);
  const messages = generateMessages({ seed, symbols: SYMBOLS, ticks: 4000 });
  const placed = place(messages, PARTITIONS);
  const [first, second] = [messages.slice(0, 2000), messages.slice(2000)];

  await produceAll(scenario.topic, first);
  const before = await waitUntilCommitted(scenario.topic, scenario.groupId, 90000);

  await proxy.cut();
  await produceAll(scenario.topic, second);
  const ends = await endOffsets(scenario.topic);
  expect(ends.some((end, p) => end > Math.max(before[p], 0))).toBe(true);

  if (through === "postgres") {
    // A fixed wait alone would hope that the loops reached Postgres by then: wait until they did
    // (each attempt is a connection the proxy refused).
    await Promise.all([
      new Promise(resolve => setTimeout(resolve, OUTAGE_MS)),
      waitFor("the partition loops to run into the outage", async () => proxy.refused >= 3, 60000, 100),
    ]);
    // Held in place: nothing committed, nothing stored past the commit.
    const during = await committedOffsets(scenario.topic, scenario.groupId);
    expect(during).toEqual(before);
    expect(await storedPerPartition(db)).toEqual(before.map(c => Math.max(c, 0)));
    // Still a live member of the group, not crashed out of it.
    expect(await groupMembers(scenario.groupId)).toBe(1);
    await proxy.restore();
    await waitUntilCommitted(scenario.topic, scenario.groupId, 120000);
  } else {
    // Every tick is stored and committed while the cache is away, and the node says it is away.
    await waitUntilCommitted(scenario.topic, scenario.groupId, 120000);
    expect(cacheUp()).toBe(0);
    expect(await groupMembers(scenario.groupId)).toBe(1);
    await proxy.restore();
  }

  const expected = replay(placed, settingsOf({}));
  expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
  const { rows } = await db.query<{ symbol: string; state: string }>("SELECT symbol, state FROM actor_state");
  const recorded = new Map(rows.map(r => [r.symbol, JSON.parse(r.state) as unknown]));
  for (const [symbol, actor] of expected.actors) expect(recorded.get(symbol)).toEqual(actor.snapshot());
  if (through === "postgres") {
    const snapshots = await readSnapshots(scenario);
    for (const [symbol, actor] of expected.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
  }
  await stop();
}

describe("dependency outages", () => {
  it("holds its offsets while Postgres is unreachable and resumes on its own, each row stored once", async () => {
    await runOutage("postgres", 41);
  }, 360000);

  it("goes on without its snapshot cache while Redis is unreachable, each row stored once", async () => {
    await runOutage("redis", 43);
  }, 360000);
});
