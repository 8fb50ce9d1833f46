import Redis from "ioredis";
import type { LogBatch } from "../../../adapters/log/types";
import { RedisSnapshotStore } from "../../../adapters/snapshots/redis-snapshots";
import { migrate } from "../../../adapters/sql/migrate";
import type { PostgresClient } from "../../../adapters/sql/postgres-client";
import { messageKey } from "../../../domain/messages";
import { UnavailableError } from "../../../domain/errors";
import { ActorHost } from "../../../runtime/host/actor-host";
import { ResultsStore } from "../../../runtime/store/results-store";
import { freshDatabase, STACK, uniqueName } from "../../support/stack";
import {
  deleteSnapshots,
  expectedTickRows,
  generateMessages,
  openDatabase,
  place,
  readSnapshots,
  readTicks,
  replay,
  settingsOf,
  SMALL_PERIODS,
  snapshotPrefix,
  type Placed,
} from "./harness";

/**
 * Two hosts that both believe they own partition 0, as after a long pause of the first one:
 * Kafka gave the partition to the second, which claimed it in Postgres. The first must neither
 * overwrite the second's snapshots nor commit, until the group hands it the partition again;
 * and whatever it left half done in Postgres must not hold the second back for long.
 */

const settings = settingsOf(SMALL_PERIODS);
const quiet = { info() {}, warn() {}, error() {}, debug() {} };
const cleanups: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 60000);

interface Partition0 {
  db: PostgresClient;
  databaseUrl: string;
  scope: { groupId: string; topic: string; partitions: number };
  placed: Placed[];
  host(commits: [number, number][]): ActorHost;
  batch(from: number, to: number): LogBatch;
}

/** A fresh database and snapshot prefix, and 80 messages of three symbols, all in partition 0. */
async function partition0(seed: number): Promise<Partition0> {
  const database = await freshDatabase();
  cleanups.push(database.drop);
  const db = openDatabase(database.url);
  cleanups.push(() => db.close());
  await migrate(db);
  const scope = { groupId: uniqueName("fence_group"), topic: uniqueName("fence_topic"), partitions: 1 };
  cleanups.push(() => deleteSnapshots(scope));
  const placed = place(generateMessages({ seed, symbols: ["AAPL", "MSFT", "TSLA"], ticks: 80 }), 1);
  return {
    db,
    databaseUrl: database.url,
    scope,
    placed,
    host(commits) {
      const store = new RedisSnapshotStore(STACK.redisUrl, `${scope.groupId}:${scope.topic}`);
      cleanups.push(() => store.close());
      return new ActorHost({
        settings,
        results: new ResultsStore(db),
        snapshots: store,
        commit: async (partition, next) => void commits.push([partition, next]),
        partitionCount: 1,
        idleMs: 60000,
        retryMaxBackoffMs: 50,
        logger: quiet,
      });
    },
    batch(from, to) {
      return {
        partition: 0,
        messages: placed.slice(from, to).map(p => ({
          partition: 0,
          offset: p.offset,
          key: messageKey(p.message),
          value: Buffer.from(JSON.stringify(p.message)),
          timestamp: Date.now(),
        })),
        highWatermark: placed.length,
        heartbeat: async () => undefined,
        isActive: () => true,
      };
    },
  };
}

async function expectUninterrupted(p: Partition0): Promise<void> {
  const all = replay(p.placed, settings);
  const final = await readSnapshots(p.scope);
  const { rows } = await p.db.query<{ symbol: string; state: string }>(
    "SELECT symbol, state FROM actor_state",
  );
  const recorded = new Map(rows.map(r => [r.symbol, JSON.parse(r.state) as unknown]));
  for (const [symbol, actor] of all.actors) {
    expect(final.get(symbol)).toEqual(actor.snapshot());
    expect(recorded.get(symbol)).toEqual(actor.snapshot());
  }
  expect(await readTicks(p.db)).toEqual(expectedTickRows(p.placed, all));
}

describe("fencing of a partition that moved to another node", () => {
  it("keeps a host that lost its partition from writing snapshots or committing until it is assigned again", async () => {
    const p = await partition0(5);
    const { batch, scope, placed } = p;
    const zombieCommits: [number, number][] = [];
    const ownerCommits: [number, number][] = [];
    const zombie = p.host(zombieCommits);
    const owner = p.host(ownerCommits);

    zombie.onAssignment([0], 1);
    await expect(zombie.handleBatch(batch(0, 20), 1)).resolves.toBe(20);
    expect(zombieCommits).toEqual([[0, 20]]);

    // The group moved the partition: the new owner claims it, restores and goes on from offset 20.
    owner.onAssignment([0], 1);
    await expect(owner.handleBatch(batch(20, 40), 1)).resolves.toBe(20);
    expect(ownerCommits).toEqual([[0, 40]]);
    const ownerState = await readSnapshots(scope);
    const upTo40 = replay(placed.slice(0, 40), settings);
    for (const [symbol, actor] of upTo40.actors) expect(ownerState.get(symbol)).toEqual(actor.snapshot());

    // The zombie wakes up with the batch it had fetched, and then with the next one.
    await expect(zombie.handleBatch(batch(20, 40), 1)).resolves.toBe(0);
    await expect(zombie.handleBatch(batch(40, 60), 1)).resolves.toBe(0);
    expect(zombieCommits).toEqual([[0, 20]]);
    expect(zombie.actorCount()).toBe(0);
    expect(await readSnapshots(scope)).toEqual(ownerState);

    // The owner is unaffected and goes on.
    await expect(owner.handleBatch(batch(40, 60), 1)).resolves.toBe(20);
    expect(ownerCommits).toEqual([
      [0, 40],
      [0, 60],
    ]);

    // A later rebalance gives the partition back to the first host: it claims it afresh and
    // continues from the other's snapshots; the other is now the one fenced off.
    zombie.onAssignment([0], 2);
    await expect(zombie.handleBatch(batch(60, 80), 2)).resolves.toBe(20);
    expect(zombieCommits).toEqual([
      [0, 20],
      [0, 80],
    ]);
    await expect(owner.handleBatch(batch(60, 80), 1)).resolves.toBe(0);
    expect(ownerCommits).toHaveLength(2);

    await expectUninterrupted(p);
  }, 120000);

  it("lets the new owner through once a frozen host's open transaction times out", async () => {
    const p = await partition0(6);
    const ownerCommits: [number, number][] = [];
    const owner = p.host(ownerCommits);
    owner.onAssignment([0], 1);
    await expect(owner.handleBatch(p.batch(0, 40), 1)).resolves.toBe(40);

    // A host froze inside its transaction, right after inserting the next tick of AAPL: the
    // uncommitted row locks the key that the owner is about to insert.
    const next = replay(p.placed.slice(0, 40), settings).actors.get("AAPL")!.seq + 1;
    const frozenDb = openDatabase(p.databaseUrl);
    cleanups.push(() => frozenDb.close());
    let wake!: () => void;
    let inserted!: () => void;
    const holdsTheKey = new Promise<void>(resolve => (inserted = resolve));
    const frozen = frozenDb.transaction(async tx => {
      await tx.query(
        `INSERT INTO ticks (symbol, seq, "timestamp", opening_price, closing_price, high, low, volume,
                            kafka_partition, kafka_offset, log_timestamp)
         VALUES ('AAPL', $1, now(), 1, 1, 1, 1, 1, 0, 0, now())`,
        [next],
      );
      inserted();
      await new Promise<void>(resolve => (wake = resolve));
      await tx.query("SELECT 1");
    });
    await holdsTheKey;

    // The server ends the idle transaction; the owner's insert goes through with the real values.
    await expect(owner.handleBatch(p.batch(40, 80), 1)).resolves.toBe(40);
    expect(ownerCommits).toEqual([
      [0, 40],
      [0, 80],
    ]);
    await expectUninterrupted(p);

    // Woken up, the frozen host learns that its connection is gone: a retriable outage, not a bug.
    wake();
    await expect(frozen).rejects.toBeInstanceOf(UnavailableError);
  }, 120000);
});

describe("a snapshot cache that lost or rolled back its data", () => {
  it("restores from Postgres' record when Redis comes back empty, and goes on exactly", async () => {
    const p = await partition0(7);
    const commits: [number, number][] = [];
    const first = p.host(commits);
    first.onAssignment([0], 1);
    await expect(first.handleBatch(p.batch(0, 40), 1)).resolves.toBe(40);

    // Redis restarts without persistence: its states are gone, Kafka's offsets are not.
    await deleteSnapshots(p.scope);
    const restarted = p.host(commits);
    restarted.onAssignment([0], 1);
    await expect(restarted.handleBatch(p.batch(40, 80), 1)).resolves.toBe(40);
    expect(commits).toEqual([
      [0, 40],
      [0, 80],
    ]);
    await expectUninterrupted(p);
  }, 120000);

  it("ignores an older state in Redis (a restored RDB file, a failover) and takes the recorded one", async () => {
    const p = await partition0(8);
    const commits: [number, number][] = [];
    const first = p.host(commits);
    first.onAssignment([0], 1);
    await expect(first.handleBatch(p.batch(0, 20), 1)).resolves.toBe(20);
    const older = await readSnapshots(p.scope);
    await expect(first.handleBatch(p.batch(20, 50), 1)).resolves.toBe(30);

    // Redis rolls back to its state after offset 20, while Kafka and Postgres are at offset 50.
    await deleteSnapshots(p.scope);
    const redis = new Redis(STACK.redisUrl);
    cleanups.push(() => redis.quit());
    for (const [symbol, snapshot] of older)
      await redis.hset(`{${snapshotPrefix(p.scope)}:0}:actors`, symbol, JSON.stringify(snapshot));

    const restarted = p.host(commits);
    restarted.onAssignment([0], 2);
    // The consumer resumes at the committed offset 50: the actors must stand there too.
    await expect(restarted.handleBatch(p.batch(50, 80), 2)).resolves.toBe(30);
    expect(commits.at(-1)).toEqual([0, 80]);
    await expectUninterrupted(p);
  }, 120000);
});
