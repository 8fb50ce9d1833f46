import {
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type KafkaConfig,
  type LogEntry,
  type Producer,
} from "kafkajs";
import { UnavailableError } from "../../domain/errors";
import { partitionForKey } from "../../lib/partitioner";
import { repeatFilter } from "../../lib/waiting";
import { KafkaConsumer } from "./kafka-consumer";
import { partitionCountMismatch, unavailableOnOutage } from "./kafka-errors";
import type { ConsumerOptions, LogConsumer, LogProducer, LogRecord, MessageLog, PartitionLag } from "./types";

export interface KafkaLogOptions {
  brokers: string[];
  clientId: string;
  topic: string;
  /** Partition count used when this log creates the topic. */
  partitions: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** Longest pause before running a consumer again that kafkajs gave up on (default 30 s). */
  rerunMaxBackoffMs?: number;
  /** Where kafkajs's own log lines go. */
  log?: (level: "error" | "warn" | "info" | "debug", message: string, extra: Record<string, unknown>) => void;
}

const LEVELS: Record<number, "error" | "warn" | "info" | "debug"> = {
  [logLevel.ERROR]: "error",
  [logLevel.WARN]: "warn",
  [logLevel.INFO]: "info",
  [logLevel.DEBUG]: "debug",
};

/**
 * kafkajs logs every failed connection attempt; while a broker is away that is a line every
 * second or two. The same line is passed on at most once per this interval; the services log
 * the outage itself once when it starts and once when it ends.
 */
const REPEAT_INTERVAL_MS = 60000;

/** The production log: a Kafka topic, keyed by symbol, read by a consumer group. */
export class KafkaLog implements MessageLog {
  readonly kind = "kafka";
  readonly topic: string;
  private readonly kafka: Kafka;
  /** One admin client per log, shared: concurrent first callers (a start-up and a readiness check) must not each open one. */
  private admin: Promise<Admin> | null = null;
  private closed = false;
  private cachedPartitions = 0;
  private readonly closables: (() => Promise<void>)[] = [];

  constructor(private readonly options: KafkaLogOptions) {
    this.topic = options.topic;
    const sink = options.log;
    const fresh = repeatFilter(REPEAT_INTERVAL_MS);
    const config: KafkaConfig = {
      clientId: options.clientId,
      brokers: options.brokers,
      connectionTimeout: 3000,
      requestTimeout: 10000,
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
      logLevel: logLevel.WARN,
      logCreator: () => (entry: LogEntry) => {
        const { message, ...extra } = entry.log;
        if (!sink) return;
        const line = `kafkajs ${entry.namespace}: ${message}`;
        if (fresh(line)) sink(LEVELS[entry.level] ?? "info", line, extra);
      },
    };
    this.kafka = new Kafka(config);
  }

  private connectedAdmin(): Promise<Admin> {
    // A connection opened after close() would never be closed, and would keep the process alive.
    if (this.closed)
      return Promise.reject(new UnavailableError(`Kafka log of topic ${this.topic} is closed`));
    if (!this.admin) {
      const admin = this.kafka.admin();
      const connected = admin.connect().then(
        async () => {
          // Closed while connecting: close() did not wait for this attempt, so it ends here.
          if (this.closed) {
            await admin.disconnect().catch(() => undefined);
            throw new UnavailableError(`Kafka log of topic ${this.topic} is closed`);
          }
          return admin;
        },
        async (err: unknown) => {
          if (this.admin === connected) this.admin = null;
          await admin.disconnect().catch(() => undefined);
          throw err;
        },
      );
      this.admin = connected;
    }
    return this.admin;
  }

  ensureTopic(): Promise<number> {
    return unavailableOnOutage("topic check", () => this.ensureTopicOnce());
  }

  private async ensureTopicOnce(): Promise<number> {
    const admin = await this.connectedAdmin();
    const topics = await admin.listTopics();
    if (!topics.includes(this.topic)) {
      // Two nodes starting at once may both try; the loser's TOPIC_ALREADY_EXISTS is fine.
      await admin
        .createTopics({
          waitForLeaders: true,
          topics: [{ topic: this.topic, numPartitions: this.options.partitions, replicationFactor: -1 }],
        })
        .catch((err: Error & { type?: string }) => {
          if (err.type !== "TOPIC_ALREADY_EXISTS") throw err;
        });
    }
    const count = await this.partitionCount();
    if (count !== this.options.partitions)
      throw partitionCountMismatch(this.topic, count, this.options.partitions);
    return count;
  }

  partitionCount(): Promise<number> {
    return unavailableOnOutage("metadata", async () => {
      const admin = await this.connectedAdmin();
      const meta = await admin.fetchTopicMetadata({ topics: [this.topic] });
      this.cachedPartitions = meta.topics[0]?.partitions.length ?? 0;
      return this.cachedPartitions;
    });
  }

  async createProducer(): Promise<LogProducer> {
    const producer: Producer = this.kafka.producer({
      // Every message names its partition (below); the partitioner is named only because kafkajs
      // warns on every start when it is left implicit.
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Idempotence needs unlimited retries to keep its guarantee; callers bound the wait instead.
      retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: Number.MAX_SAFE_INTEGER },
    });
    const close = () => producer.disconnect();
    // Registered before connecting: a node stopped while the broker is away closes it too.
    this.closables.push(close);
    await unavailableOnOutage("producer connect", () => producer.connect());
    // Keys are symbols: few, and each sent again and again; murmur2 of each is worth keeping.
    const partitionOf = new Map<string, number>();
    const place = (key: string): number => {
      let partition = partitionOf.get(key);
      if (partition === undefined) {
        partition = partitionForKey(key, this.options.partitions);
        if (partitionOf.size >= 100000) partitionOf.clear();
        partitionOf.set(key, partition);
      }
      return partition;
    };
    return {
      send: async (records: LogRecord[]) => {
        try {
          // Placed by KAFKA_PARTITIONS, never by the topic's current count: a topic grown while
          // nodes run must not move a symbol to another partition than its actor's.
          const messages = records.map(r => ({
            key: r.key,
            value: r.value,
            headers: r.headers,
            partition: place(r.key),
          }));
          await producer.send({ topic: this.topic, acks: -1, messages });
        } catch (err) {
          throw new UnavailableError(`Kafka did not acknowledge: ${(err as Error).message}`, { cause: err });
        }
      },
      close,
    };
  }

  createConsumer(options: ConsumerOptions): LogConsumer {
    const consumer = this.kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: this.options.sessionTimeoutMs ?? 10000,
      heartbeatInterval: this.options.heartbeatIntervalMs ?? 1000,
      rebalanceTimeout: 30000,
      maxBytesPerPartition: 1024 * 1024,
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER },
    });
    const kafkaConsumer = new KafkaConsumer(
      consumer,
      this.topic,
      () => this.cachedPartitions || this.options.partitions,
      this.options.rerunMaxBackoffMs ?? 30000,
    );
    this.closables.push(() => kafkaConsumer.stop());
    return kafkaConsumer;
  }

  lag(groupId: string): Promise<PartitionLag[]> {
    return unavailableOnOutage("lag", () => this.lagOnce(groupId));
  }

  private async lagOnce(groupId: string): Promise<PartitionLag[]> {
    const admin = await this.connectedAdmin();
    const [ends, groups] = await Promise.all([
      admin.fetchTopicOffsets(this.topic),
      admin.fetchOffsets({ groupId, topics: [this.topic] }),
    ]);
    const committed = new Map<number, number>();
    for (const p of groups[0]?.partitions ?? []) committed.set(p.partition, Number(p.offset));
    return ends
      .map(e => {
        const c = committed.get(e.partition) ?? -1;
        const high = Number(e.high);
        return {
          partition: e.partition,
          committed: c,
          highWatermark: high,
          lag: high - Math.max(c, Number(e.low)),
        };
      })
      .sort((a, b) => a.partition - b.partition);
  }

  async close(): Promise<void> {
    for (const close of this.closables.splice(0).reverse()) await close().catch(() => undefined);
    this.closed = true;
    const admin = this.admin;
    this.admin = null;
    if (!admin) return;
    // A connection still being attempted (the broker is away: kafkajs retries for seconds) is
    // not waited for; it disconnects itself when it settles (above). A connected one closes now.
    const settled = await Promise.race([
      admin.then(
        a => a,
        () => null,
      ),
      new Promise<undefined>(resolve => setImmediate(resolve, undefined)),
    ]);
    if (settled) await settled.disconnect().catch(() => undefined);
  }
}
