import Redis from "ioredis";
import { RedisSnapshotStore } from "../../../adapters/snapshots/redis-snapshots";
import { UnavailableError } from "../../../domain/errors";
import { freePort } from "../../../lib/net";
import { STACK, uniqueName } from "../../support/stack";

describe("Redis (real)", () => {
  it("round-trips a value", async () => {
    const redis = new Redis(STACK.redisUrl);
    const key = uniqueName("smoke");
    await redis.set(key, "value", "EX", 60);
    await expect(redis.get(key)).resolves.toBe("value");
    await redis.del(key);
    await redis.quit();
  });

  describe("snapshot cache", () => {
    let store: RedisSnapshotStore;
    beforeEach(() => {
      store = new RedisSnapshotStore(STACK.redisUrl, uniqueName("cache"));
    });
    afterEach(() => store.close());

    it("stores and loads states per partition", async () => {
      await store.save(3, [
        { symbol: "AAPL", state: '{"seq":1}' },
        { symbol: "MSFT", state: '{"seq":2}' },
      ]);
      await store.save(4, [{ symbol: "AAPL", state: "other partition" }]);
      await expect(store.load(3, ["MSFT", "NOPE", "AAPL"])).resolves.toEqual([
        '{"seq":2}',
        null,
        '{"seq":1}',
      ]);
      await expect(store.symbols(3)).resolves.toEqual(["AAPL", "MSFT"]);
    });

    it("writes a partition of more symbols than one command carries", async () => {
      const entries = Array.from({ length: 4500 }, (_, i) => ({ symbol: `S${i}`, state: String(i) }));
      await store.save(1, entries);
      await expect(store.symbols(1)).resolves.toHaveLength(4500);
      await expect(store.load(1, ["S0", "S4499"])).resolves.toEqual(["0", "4499"]);
    });

    it("fails fast with a retriable error when Redis does not answer", async () => {
      const port = await freePort();
      const away = new RedisSnapshotStore(
        `redis://127.0.0.1:${port}`,
        uniqueName("away"),
        () => undefined,
        500,
      );
      try {
        const failure = await away.load(0, ["AAPL"]).then(
          () => null,
          (err: unknown) => err,
        );
        expect(failure).toBeInstanceOf(UnavailableError);
        expect(failure).toMatchObject({ retriable: true });
      } finally {
        await away.close();
      }
    });
  });
});
