import Redis from "ioredis";
import { RedisSnapshotStore } from "../../../adapters/snapshots/redis-snapshots";
import { FencedError } from "../../../domain/errors";
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

  describe("fenced snapshot store", () => {
    let store: RedisSnapshotStore;
    beforeEach(() => {
      store = new RedisSnapshotStore(STACK.redisUrl, uniqueName("fence"));
    });
    afterEach(() => store.close());

    it("stores and loads snapshots under the current epoch", async () => {
      const epoch = await store.claim(3);
      await store.save(3, epoch, [
        { symbol: "AAPL", state: '{"seq":1}' },
        { symbol: "MSFT", state: '{"seq":2}' },
      ]);
      await expect(store.load(3, ["MSFT", "NOPE", "AAPL"])).resolves.toEqual([
        '{"seq":2}',
        null,
        '{"seq":1}',
      ]);
      await expect(store.symbols(3)).resolves.toEqual(["AAPL", "MSFT"]);
    });

    it("refuses a snapshot write with a stale epoch and keeps the new owner's state", async () => {
      const zombie = await store.claim(5);
      await store.save(5, zombie, [{ symbol: "TSLA", state: "old-owner" }]);
      const owner = await store.claim(5);
      expect(owner).toBe(zombie + 1);
      await store.save(5, owner, [{ symbol: "TSLA", state: "new-owner" }]);

      await expect(store.save(5, zombie, [{ symbol: "TSLA", state: "zombie-write" }])).rejects.toBeInstanceOf(
        FencedError,
      );
      await expect(store.load(5, ["TSLA"])).resolves.toEqual(["new-owner"]);
    });

    it("fences every chunk of a large write", async () => {
      const epoch = await store.claim(1);
      const entries = Array.from({ length: 4500 }, (_, i) => ({ symbol: `S${i}`, state: String(i) }));
      await store.save(1, epoch, entries);
      await expect(store.symbols(1)).resolves.toHaveLength(4500);
      await store.claim(1);
      await expect(store.save(1, epoch, entries)).rejects.toBeInstanceOf(FencedError);
    });
  });
});
