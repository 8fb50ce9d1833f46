import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Redis from "ioredis";
import { Kafka, logLevel, Partitioners, type Admin, type Producer } from "kafkajs";
import pg from "pg";
import { migrate } from "../../adapters/sql/migrate";
import { PostgresClient } from "../../adapters/sql/postgres-client";
import type { PriceTick } from "../../domain/messages";

/** This checkout. */
export const ROOT = path.resolve(__dirname, "../..");

/** A name no other run uses: the benches share the servers with tests and with each other. */
export const unique = (prefix: string) =>
  `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;

/** The local stack's servers (`npm run stack:up`), unless the environment points elsewhere. */
export interface Servers {
  brokers: string;
  /** An admin URL: runs create databases of their own and drop them afterwards. */
  postgresUrl: string;
  redisUrl: string;
}

export function serversFromEnv(): Servers {
  return {
    brokers: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
    postgresUrl: process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
    redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  };
}

/** What a run creates on the servers (topics, databases, Redis keys), removed in reverse order by `close`. */
export class BenchStack {
  readonly kafka: Kafka;
  private admin: Admin | null = null;
  private readonly cleanups: (() => Promise<unknown>)[] = [];

  constructor(
    readonly servers: Servers,
    readonly partitions: number,
    clientId: string,
  ) {
    this.kafka = new Kafka({ clientId, brokers: servers.brokers.split(","), logLevel: logLevel.NOTHING });
  }

  async connectedAdmin(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  /** Runs `cleanup` when the run ends, before what was created earlier is removed. */
  atEnd(cleanup: () => Promise<unknown>): void {
    this.cleanups.push(cleanup);
  }

  async topic(prefix: string): Promise<string> {
    const topic = unique(prefix);
    const admin = await this.connectedAdmin();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: this.partitions, replicationFactor: 1 }],
    });
    this.atEnd(() => admin.deleteTopics({ topics: [topic] }));
    return topic;
  }

  /** A fresh database, with the migrations applied when `migrated`; returns its URL. */
  async database(prefix: string, migrated = false): Promise<string> {
    const name = unique(prefix).toLowerCase();
    await sqlOnce(this.servers.postgresUrl, `CREATE DATABASE ${name}`);
    this.atEnd(() => sqlOnce(this.servers.postgresUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    const url = this.servers.postgresUrl.replace(/\/[^/]*$/, `/${name}`);
    if (migrated) {
      const db = new PostgresClient(url, 1);
      await migrate(db).finally(() => db.close());
    }
    return url;
  }

  /** The keys a RedisSnapshotStore with `prefix` keeps, one hash per partition. */
  cacheKeys(prefix: string): string[] {
    return Array.from({ length: this.partitions }, (_, p) => `{${prefix}:${p}}:actors`);
  }

  async dropKeys(keys: string[]): Promise<void> {
    const redis = new Redis(this.servers.redisUrl);
    await redis.del(...keys).finally(() => redis.quit());
  }

  /** The topic's end offsets minus the group's committed offsets, summed: 0 once all is committed. */
  async uncommitted(topic: string, groupId: string): Promise<number> {
    const admin = await this.connectedAdmin();
    const [ends, groups] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    // A partition with nothing committed reports -1.
    const committed = new Map((groups[0]?.partitions ?? []).map(p => [p.partition, Number(p.offset)]));
    return ends.reduce((n, e) => n + Number(e.high) - Math.max(committed.get(e.partition) ?? 0, 0), 0);
  }

  /**
   * Resolves once the group has committed every message of the topic. `check(since)` may fail it
   * meanwhile; `since` is when the group last committed anything (Date.now()).
   */
  async untilCommitted(topic: string, groupId: string, check: (since: number) => void): Promise<void> {
    let since = Date.now();
    for (let left = await this.uncommitted(topic, groupId); left > 0;) {
      check(since);
      await sleep(20);
      const now = await this.uncommitted(topic, groupId);
      if (now !== left) since = Date.now();
      left = now;
    }
  }

  /** A connected producer with the gateway's settings: idempotent, acks=all, one request in flight. */
  async producer(): Promise<Producer> {
    const producer = this.kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    return producer;
  }

  /** Sends the ticks in order, keyed by symbol, in acknowledged sends of 1,000. */
  async send(topic: string, ticks: readonly PriceTick[]): Promise<void> {
    const producer = await this.producer();
    try {
      for (let sent = 0; sent < ticks.length; sent += 1000) {
        await producer.send({ topic, acks: -1, messages: keyedBySymbol(ticks.slice(sent, sent + 1000)) });
      }
    } finally {
      await producer.disconnect();
    }
  }

  /** The servers' versions, for a bench's header. */
  async serversLine(): Promise<string> {
    const [postgres] = await sqlOnce<{ server_version: string }>(
      this.servers.postgresUrl,
      "SHOW server_version",
    );
    const redis = new Redis(this.servers.redisUrl);
    const info = await redis.info("server").finally(() => redis.quit());
    // The local stack's broker (stack/stack.sh) names its version in its jar.
    const libs = path.join(ROOT, ".stack/kafka/libs");
    const jar = fs.existsSync(libs)
      ? fs.readdirSync(libs).find(f => /^kafka-server-[\d.]+\.jar$/.test(f))
      : undefined;
    const kafka = jar?.replace(/^kafka-server-|\.jar$/g, "") ?? "?";
    return `Kafka ${kafka} (KRaft, 1 broker), Postgres ${postgres.server_version}, Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? "?"}; loopback`;
  }

  async close(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}

/** Kafka messages of price ticks, keyed by symbol (so each symbol's stay on one partition, in order). */
export const keyedBySymbol = (ticks: readonly PriceTick[]) =>
  ticks.map(t => ({ key: t.stock_symbol, value: JSON.stringify(t) }));

/** One statement on a connection of its own. */
async function sqlOnce<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Fails unless the database at `databaseUrl` holds `count` tick rows. */
export async function expectTicks(databaseUrl: string, count: number, what: string): Promise<void> {
  const [{ n }] = await sqlOnce<{ n: string }>(databaseUrl, "SELECT count(*) AS n FROM ticks");
  if (Number(n) !== count) throw new Error(`${what}: expected ${count} rows, found ${n}`);
}
