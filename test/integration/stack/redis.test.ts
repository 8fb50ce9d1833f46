import Redis from "ioredis";
import { STACK, uniqueName } from "../../support/stack";

/** The server is there; the snapshot cache on it: test/integration/adapters/snapshots/redis-snapshots.test.ts. */
describe("Redis (real)", () => {
  it("round-trips a value", async () => {
    const redis = new Redis(STACK.redisUrl);
    const key = uniqueName("smoke");
    await redis.set(key, "value", "EX", 60);
    await expect(redis.get(key)).resolves.toBe("value");
    await redis.del(key);
    await redis.quit();
  });
});
