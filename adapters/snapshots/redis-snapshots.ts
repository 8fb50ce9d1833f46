import Redis from "ioredis";
import { FencedError, UnavailableError } from "../../domain/errors";
import type { SnapshotEntry, SnapshotStore } from "./types";

/**
 * Compare-and-set of a batch of snapshots against the partition's epoch, atomically: Redis runs
 * the script alone, so no claim can slip between the check and the writes.
 * KEYS[1] epoch key, KEYS[2] the partition's hash of actor states; ARGV[1] the writer's epoch,
 * then symbol/state pairs.
 */
const FENCED_SAVE = `
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[2], unpack(ARGV, 2)) end
return 1`;

type FencedRedis = Redis & {
  fencedSave(epochKey: string, statesKey: string, epoch: string, ...pairs: string[]): Promise<number>;
};

/** Lua's unpack has a stack limit; batches larger than this are written in several calls. */
const MAX_PAIRS_PER_CALL = 2000;

/**
 * Snapshots in Redis: per partition one epoch counter and one hash (symbol -> state). Both keys
 * share a hash tag ({<prefix>:<partition>}), so the layout also works on Redis Cluster.
 */
export class RedisSnapshotStore implements SnapshotStore {
  readonly kind = "redis";
  private readonly redis: FencedRedis;

  constructor(
    url: string,
    private readonly prefix: string,
    onError?: (err: Error) => void,
  ) {
    const redis = new Redis(url, {
      lazyConnect: false,
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
      retryStrategy: times => Math.min(times * 200, 2000),
    });
    redis.on("error", err => onError?.(err));
    redis.defineCommand("fencedSave", { numberOfKeys: 2, lua: FENCED_SAVE });
    this.redis = redis as FencedRedis;
  }

  private keys(partition: number): [string, string] {
    const tag = `{${this.prefix}:${partition}}`;
    return [`${tag}:epoch`, `${tag}:actors`];
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FencedError) throw err;
      throw new UnavailableError(`Redis ${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  claim(partition: number): Promise<number> {
    return this.call("claim", () => this.redis.incr(this.keys(partition)[0]));
  }

  save(partition: number, epoch: number, entries: SnapshotEntry[]): Promise<void> {
    const [epochKey, statesKey] = this.keys(partition);
    return this.call("save", async () => {
      // Chunks keep the fencing: each chunk is checked against the epoch on its own, and a
      // batch is only reported saved when every chunk was.
      for (let i = 0; i === 0 || i < entries.length; i += MAX_PAIRS_PER_CALL) {
        const pairs: string[] = [];
        for (const e of entries.slice(i, i + MAX_PAIRS_PER_CALL)) pairs.push(e.symbol, e.state);
        const ok = await this.redis.fencedSave(epochKey, statesKey, String(epoch), ...pairs);
        if (ok !== 1) throw new FencedError(partition, epoch);
      }
    });
  }

  load(partition: number, symbols: string[]): Promise<(string | null)[]> {
    if (symbols.length === 0) return Promise.resolve([]);
    return this.call("load", () => this.redis.hmget(this.keys(partition)[1], ...symbols));
  }

  symbols(partition: number): Promise<string[]> {
    return this.call("symbols", async () => (await this.redis.hkeys(this.keys(partition)[1])).sort());
  }

  epoch(partition: number): Promise<number> {
    return this.call("epoch", async () => Number((await this.redis.get(this.keys(partition)[0])) ?? 0));
  }

  async ping(): Promise<void> {
    await this.call("ping", () => this.redis.ping());
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
