import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { Kafka, logLevel, type Admin } from "kafkajs";
import pg from "pg";
import { loadConfig, type Config } from "../../lib/config";

/** Where the integration tier finds the servers `npm run stack:up` starts (overridable like the app). */
export const STACK = {
  kafkaBrokers: process.env.TEST_KAFKA_BROKERS ?? "127.0.0.1:9092",
  postgresAdminUrl: process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
  natsUrl: process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222",
};

export const ROOT = path.resolve(__dirname, "../..");

/** A name no other test run uses: topics, groups, databases, namespaces. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
}

/** A client of the local broker, or of `brokers` (a comma-separated list). */
export function kafkaClient(clientId = "test", brokers = STACK.kafkaBrokers): Kafka {
  return new Kafka({ clientId, brokers: brokers.split(","), logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(fn: (admin: Admin) => Promise<T>, brokers?: string): Promise<T> {
  const admin = kafkaClient("test-admin", brokers).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

export async function createTopic(topic: string, partitions: number): Promise<void> {
  await withAdmin(admin =>
    admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    }),
  );
}

export async function deleteTopic(topic: string): Promise<void> {
  await withAdmin(admin => admin.deleteTopics({ topics: [topic] })).catch(() => undefined);
}

/** Total messages in a topic (sum of high watermarks), on the local broker or on `brokers`. */
export async function topicSize(topic: string, brokers?: string): Promise<number> {
  return withAdmin(
    async admin => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0),
    brokers,
  );
}

export interface ConsumedRecord {
  partition: number;
  offset: number;
  key: string | null;
  value: string;
}

/**
 * Reads a topic (on the local broker, or on `brokers`) from the beginning until `count` messages
 * arrived (or the timeout passed).
 */
export async function readTopic(
  topic: string,
  count: number,
  timeoutMs = 20000,
  brokers?: string,
): Promise<ConsumedRecord[]> {
  const consumer = kafkaClient("test-reader", brokers).consumer({
    groupId: uniqueName("reader"),
    maxWaitTimeInMs: 100,
  });
  const records: ConsumedRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`read ${records.length} of ${count} messages from ${topic} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      if (count === 0) {
        clearTimeout(timer);
        resolve();
        return;
      }
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          records.push({
            partition,
            offset: Number(message.offset),
            key: message.key?.toString() ?? null,
            value: message.value?.toString() ?? "",
          });
          if (records.length >= count) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/** A new, empty database on the local server; `drop()` removes it. */
export async function freshDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = uniqueName("t").toLowerCase();
  const admin = new pg.Client({ connectionString: STACK.postgresAdminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = STACK.postgresAdminUrl.replace(/\/[^/]*$/, `/${name}`);
  return {
    url,
    name,
    drop: async () => {
      const c = new pg.Client({ connectionString: STACK.postgresAdminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The application's configuration for a test, on the real servers, with isolated names. */
export function testConfig(overrides: Record<string, string | undefined>): Config {
  return loadConfig({ METRICS_PORT: "0", LOG_LEVEL: "warn", DEMO_FEED: "0", ...overrides });
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 30000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`,
      );
    }
    await new Promise(r => setTimeout(r, intervalMs));
  }
}

/** Stops the local Kafka broker (the one `stack:up` started) and starts it again. */
export const kafkaBroker = {
  stop(): void {
    execFileSync("bash", [path.join(ROOT, "stack/stack.sh"), "down"], { stdio: "pipe" });
  },
  start(): void {
    execFileSync("bash", [path.join(ROOT, "stack/stack.sh"), "up"], { stdio: "pipe" });
  },
};
