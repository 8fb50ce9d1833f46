import Redis from "ioredis";
import { UnavailableError } from "../../domain/errors";
import type { SnapshotEntry, SnapshotStore } from "./types";

/** Entries per HSET call: bounds the size of one command for partitions of many symbols. */
const MAX_PAIRS_PER_CALL = 2000;

/**
 * The state cache in Redis: per partition one hash (symbol -> state) under the key
 * `{<prefix>:<partition>}:actors` (a hash tag, so the layout also works on Redis Cluster).
 * Commands time out after `commandTimeoutMs`: the actors never wait long for a cache.
 */
export class RedisSnapshotStore implements SnapshotStore {
  readonly kind = "redis";
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly prefix: string,
    onError?: (err: Error) => void,
    commandTimeoutMs = 2000,
  ) {
    const redis = new Redis(url, {
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      commandTimeout: commandTimeoutMs,
      retryStrategy: times => Math.min(times * 200, 2000),
    });
    redis.on("error", err => onError?.(err));
    this.redis = redis;
  }

  private key(partition: number): string {
    return `{${this.prefix}:${partition}}:actors`;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new UnavailableError(`Redis ${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  save(partition: number, entries: SnapshotEntry[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    const key = this.key(partition);
    return this.call("save", async () => {
      for (let i = 0; i < entries.length; i += MAX_PAIRS_PER_CALL) {
        const pairs: string[] = [];
        for (const e of entries.slice(i, i + MAX_PAIRS_PER_CALL)) pairs.push(e.symbol, e.state);
        await this.redis.hset(key, ...pairs);
      }
    });
  }

  load(partition: number, symbols: string[]): Promise<(string | null)[]> {
    if (symbols.length === 0) return Promise.resolve([]);
    return this.call("load", () => this.redis.hmget(this.key(partition), ...symbols));
  }

  symbols(partition: number): Promise<string[]> {
    return this.call("symbols", async () => (await this.redis.hkeys(this.key(partition))).sort());
  }

  async ping(): Promise<void> {
    await this.call("ping", () => this.redis.ping());
  }

  async close(): Promise<void> {
    // QUIT would wait in the offline queue of a client that is not connected: that one just stops.
    if (this.redis.status === "ready") await this.redis.quit().catch(() => this.redis.disconnect());
    else this.redis.disconnect();
  }
}
