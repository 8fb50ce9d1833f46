import Redis from "ioredis";
import { RedisSnapshotStore } from "../../../../adapters/snapshots/redis-snapshots";
import { UnavailableError } from "../../../../domain/errors";
import { freePort } from "../../../../lib/net";
import { snapshotStoreContract } from "../../../support/snapshot-store-contract";
import { STACK, uniqueName } from "../../../support/stack";

/** The snapshot cache on the real Redis; every store gets a prefix of its own, deleted after. */
const prefixes: string[] = [];

function store(prefix = uniqueName("cache")): RedisSnapshotStore {
  prefixes.push(prefix);
  return new RedisSnapshotStore(STACK.redisUrl, prefix);
}

afterAll(async () => {
  const redis = new Redis(STACK.redisUrl);
  for (const prefix of prefixes) {
    const keys = await redis.keys(`{${prefix}:*}:actors`);
    if (keys.length > 0) await redis.del(...keys);
  }
  await redis.quit();
});

describe("RedisSnapshotStore", () => {
  snapshotStoreContract(() => store());

  it("keeps a partition in one hash under {prefix:partition}:actors, a Redis Cluster hash tag", async () => {
    const prefix = uniqueName("layout");
    const s = store(prefix);
    const redis = new Redis(STACK.redisUrl);
    try {
      await s.save(7, [
        { symbol: "AAPL", state: "a" },
        { symbol: "MSFT", state: "m" },
      ]);
      expect(await redis.keys(`{${prefix}:*`)).toEqual([`{${prefix}:7}:actors`]);
      expect(await redis.hgetall(`{${prefix}:7}:actors`)).toEqual({ AAPL: "a", MSFT: "m" });
    } finally {
      await redis.quit();
      await s.close();
    }
  });

  it("keeps the caches of two prefixes (two clusters on one Redis) apart", async () => {
    const a = store();
    const b = store();
    try {
      await a.save(0, [{ symbol: "AAPL", state: "a" }]);
      await expect(b.load(0, ["AAPL"])).resolves.toEqual([null]);
      await expect(b.symbols(0)).resolves.toEqual([]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("writes a partition of more symbols than one command carries", async () => {
    const s = store();
    try {
      const entries = Array.from({ length: 4500 }, (_, i) => ({ symbol: `S${i}`, state: String(i) }));
      await s.save(1, entries);
      await expect(s.symbols(1)).resolves.toHaveLength(4500);
      await expect(s.load(1, ["S0", "S1999", "S2000", "S4499"])).resolves.toEqual([
        "0",
        "1999",
        "2000",
        "4499",
      ]);
    } finally {
      await s.close();
    }
  });

  it("fails fast with a retriable error when Redis does not answer, and closes without waiting", async () => {
    const port = await freePort();
    const errors: Error[] = [];
    const away = new RedisSnapshotStore(
      `redis://127.0.0.1:${port}`,
      uniqueName("away"),
      e => errors.push(e),
      500,
    );
    try {
      for (const call of [
        () => away.load(0, ["AAPL"]),
        () => away.save(0, [{ symbol: "A", state: "s" }]),
        () => away.ping(),
      ]) {
        const failure = await call().then(
          () => null,
          (err: unknown) => err,
        );
        expect(failure).toBeInstanceOf(UnavailableError);
        expect(failure).toMatchObject({ retriable: true });
        expect((failure as Error).message).toMatch(/^Redis (load|save|ping): /);
      }
      expect(errors.length).toBeGreaterThan(0);
    } finally {
      await away.close();
    }
  });
});
