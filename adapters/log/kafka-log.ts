import { setTimeout as sleep } from "node:timers/promises";
import {
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type Consumer,
  type ConsumerRunConfig,
  type IHeaders,
  type KafkaConfig,
  type LogEntry,
  type Producer,
} from "kafkajs";
import { ConfigError, UnavailableError } from "../../domain/errors";
import { partitionForKey } from "../../lib/partitioner";
import { repeatFilter } from "../../lib/waiting";
import type {
  ConsumerHooks,
  ConsumerOptions,
  LogConsumer,
  LogProducer,
  LogRecord,
  MessageLog,
  PartitionLag,
} from "./types";

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

type ErrorChain = { name?: string; retriable?: boolean; cause?: unknown; type?: string };

function rootCause(err: unknown): ErrorChain {
  let e = err as ErrorChain;
  for (let depth = 0; e?.cause && depth < 8; depth++) e = e.cause as ErrorChain;
  return e;
}

/**
 * Whether a kafkajs failure means "the broker is not there right now", by kafkajs's own rule for
 * restarting a consumer: its retries ran out, or the root cause is marked retriable. Anything
 * else (authorization, an invalid setting, a protocol error Kafka calls final) will fail the
 * same way after any number of restarts.
 */
export function isKafkaOutage(err: unknown): boolean {
  return (err as ErrorChain)?.name === "KafkaJSNumberOfRetriesExceeded" || rootCause(err)?.retriable === true;
}

/** An outage becomes the system's retriable `UnavailableError`; other failures pass unchanged. */
function asUnavailable(what: string, err: unknown): unknown {
  return isKafkaOutage(err)
    ? new UnavailableError(`Kafka ${what}: ${(err as Error).message}`, { cause: err })
    : err;
}

async function unavailableOnOutage<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asUnavailable(what, err);
  }
}

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

/**
 * The topic's partition count differs from KAFKA_PARTITIONS, by which every node places symbols:
 * running on would send a symbol's ticks to another partition than the one its actor reads.
 */
export function partitionCountMismatch(topic: string, actual: number, configured: number): ConfigError {
  return new ConfigError(
    `topic "${topic}" has ${actual} partitions but KAFKA_PARTITIONS is ${configured}, and every node places symbols ` +
      `by KAFKA_PARTITIONS: set KAFKA_PARTITIONS=${actual} on every node, after draining the backlog as the README's ` +
      `"Changing the partition count" describes` +
      (actual < configured ? " (a topic never shrinks; grow it first if you want more partitions)" : ""),
  );
}

/** kafkajs's headers (Buffers, possibly repeated) as strings, the first value of each; undefined when none. */
function stringHeaders(h: IHeaders | undefined): Record<string, string> | undefined {
  if (!h) return undefined;
  let out: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(h)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first === undefined) continue;
    (out ??= {})[name] = first.toString();
  }
  return out;
}

const REBALANCE_ERRORS = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"]);

/** kafkajs wraps a broker's answer in retry errors; the protocol error type sits down the cause chain. */
function isRebalanceError(err: unknown): boolean {
  for (let e = err as { type?: string; cause?: unknown } | undefined, depth = 0; e && depth < 8; depth++) {
    if (REBALANCE_ERRORS.has(e.type ?? "")) return true;
    e = e.cause as typeof e;
  }
  return false;
}

class KafkaConsumer implements LogConsumer {
  private generation = 0;
  /** A generation the broker already declared over (a commit was refused for a rebalance). */
  private lostGeneration = -1;
  /** The last generation whose rebalance was reported (onRebalancing once per generation). */
  private rebalancingGeneration = -1;
  /**
   * Kafka's own generation id of this member's current assignment (`generation` counts joins in
   * this process; Kafka's id is the group's, the same on every member), and when the broker last
   * accepted a heartbeat or commit in it. Unknown from a join until the first of those.
   */
  private kafkaGeneration: { generation: number; id: number; confirmedAt: number } | null = null;
  private hooks: ConsumerHooks | null = null;
  private running = false;
  private draining = false;
  private readonly inFlight = new Set<Promise<number>>();
  private stopping: Promise<void> | null = null;
  private runConfig: ConsumerRunConfig | null = null;
  private rerunTimer: NodeJS.Timeout | null = null;
  private rerunDelayMs = 1000;

  constructor(
    private readonly consumer: Consumer,
    private readonly topic: string,
    private readonly partitionCount: () => number,
    private readonly rerunMaxBackoffMs: number,
  ) {}

  async run(hooks: ConsumerHooks): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.hooks = hooks;
    const contact = () => hooks.onContact?.();
    const { events } = this.consumer;
    // GROUP_JOIN fires synchronously after each join+sync, before the first fetch of the new
    // assignment: the one place kafkajs tells us which partitions we now own.
    const removers = [
      this.consumer.on(events.GROUP_JOIN, event => {
        this.generation += 1;
        this.kafkaGeneration = null;
        this.rerunDelayMs = 1000;
        const assigned = (event.payload.memberAssignment[this.topic] ?? []).slice().sort((a, b) => a - b);
        contact();
        hooks.onAssignment(assigned, this.generation);
      }),
      // kafkajs found the group rebalancing (its heartbeat or fetch was refused) and rejoins.
      this.consumer.on(events.REBALANCING, () => this.rebalancing()),
      // Answers from the broker: it is reachable (readiness asks how long ago the last one came).
      this.consumer.on(events.FETCH, contact),
      this.consumer.on(events.HEARTBEAT, event => {
        this.confirmed(event.payload.groupGenerationId);
        contact();
      }),
      this.consumer.on(events.COMMIT_OFFSETS, event => {
        this.confirmed(event.payload.groupGenerationId);
        contact();
      }),
      this.consumer.on(this.consumer.events.CRASH, event => {
        if (!this.running) return;
        const err = event.payload.error;
        // A crashed consumer has left the group: this generation's batches must stop, and nothing
        // is owned until the next join.
        this.generation += 1;
        hooks.onLeft?.(err, this.generation);
        if (event.payload.restart) return; // kafkajs runs it again by itself
        if (!isKafkaOutage(err)) {
          hooks.onError?.(err, true);
          return;
        }
        // An outage kafkajs stopped retrying is still an outage: run the consumer again, with
        // backoff, for as long as it lasts (what a restart of the process would do, minus the exit).
        this.scheduleRerun(hooks);
      }),
    ];
    this.runConfig = this.batchConfig(hooks);
    try {
      await this.consumer.connect();
      await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
      await this.consumer.run(this.runConfig);
    } catch (err) {
      this.running = false;
      for (const remove of removers) remove();
      throw asUnavailable("consumer start", err);
    }
  }

  /**
   * The broker accepted a heartbeat or commit of generation `id`. One sent before a join is
   * answered before it (a broker answers a connection's requests in order), so after the join
   * only the new generation's come: the first says the assignment's generation id.
   */
  private confirmed(id: number): void {
    this.kafkaGeneration = { generation: this.generation, id, confirmedAt: Date.now() };
  }

  /** Kafka's generation id of local generation `generation`, while it is the current one. */
  private generationOf(generation: number): { id: number; confirmedAt: number } | null {
    const known = this.kafkaGeneration;
    return known && known.generation === generation ? { id: known.id, confirmedAt: known.confirmedAt } : null;
  }

  /** The group is rebalancing: said once per generation, until the next join ends it. */
  private rebalancing(): void {
    if (!this.running || this.rebalancingGeneration === this.generation) return;
    this.rebalancingGeneration = this.generation;
    this.hooks?.onRebalancing?.(this.generation);
  }

  private scheduleRerun(hooks: ConsumerHooks): void {
    if (this.rerunTimer || !this.running) return;
    const delay = this.rerunDelayMs;
    this.rerunDelayMs = Math.min(this.rerunDelayMs * 2, this.rerunMaxBackoffMs);
    this.rerunTimer = setTimeout(() => {
      this.rerunTimer = null;
      if (!this.running || !this.runConfig) return;
      const config = this.runConfig;
      (async () => {
        await this.consumer.connect();
        await this.consumer.run(config);
      })().catch((err: unknown) => {
        if (!this.running) return;
        if (isKafkaOutage(err)) this.scheduleRerun(hooks);
        else hooks.onError?.(err, true);
      });
    }, delay);
  }

  private batchConfig(hooks: ConsumerHooks): ConsumerRunConfig {
    return {
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: Math.max(1, this.partitionCount()),
      eachBatch: async ({ batch, heartbeat, isStale, resolveOffset }) => {
        if (this.draining) {
          // Fetched before the pause took effect: left unresolved, so the next owner reads it.
          await sleep(20);
          return;
        }
        const generation = this.generation;
        const messages = batch.messages.map(m => ({
          partition: batch.partition,
          offset: Number(m.offset),
          key: m.key ? m.key.toString() : null,
          value: m.value,
          timestamp: Number(m.timestamp),
          headers: stringHeaders(m.headers),
        }));
        if (messages.length === 0) return;
        const work = hooks.onBatch(
          {
            partition: batch.partition,
            messages,
            highWatermark: Number(batch.highWatermark),
            // A heartbeat refused for a rebalance inside a batch is the member's first news of it.
            heartbeat: () =>
              heartbeat().catch((err: unknown) => {
                if (isRebalanceError(err)) this.rebalancing();
                throw err;
              }),
            isActive: () =>
              !isStale() && generation === this.generation && generation !== this.lostGeneration,
            groupGeneration: () => this.generationOf(generation),
          },
          generation,
        );
        this.inFlight.add(work);
        try {
          const done = await work;
          if (done > 0) resolveOffset(String(messages[done - 1].offset));
        } catch (err) {
          if (isRebalanceError(err)) throw err;
          hooks.onError?.(err, false);
          // kafkajs gives up for good on an error marked non-retriable (a StockError such as an
          // incompatible snapshot), leaving a live process that consumes nothing. Passed on
          // unmarked, the batch is retried with backoff and the failure stays visible in the logs.
          throw new Error((err as Error).message, { cause: err });
        } finally {
          this.inFlight.delete(work);
        }
      },
    };
  }

  async commit(partition: number, nextOffset: number): Promise<void> {
    try {
      await this.consumer.commitOffsets([{ topic: this.topic, partition, offset: String(nextOffset) }]);
    } catch (err) {
      // A rebalance is not an outage: this generation's batches must stop and commit nothing
      // more; the group reassigns the partitions and the next owner replays from the last commit.
      if (isRebalanceError(err)) {
        this.lostGeneration = this.generation;
        this.rebalancing();
        throw err;
      }
      const e = err as Error & { retriable?: boolean };
      if (e.retriable) throw new UnavailableError(`Kafka offset commit: ${e.message}`, { cause: err });
      throw err;
    }
  }

  /**
   * Lets the batches in flight finish, commit included, before leaving the group. The order
   * matters: once kafkajs is told to stop, its commitOffsets silently does nothing, and the last
   * batches' results would be stored but not committed.
   */
  stop(): Promise<void> {
    if (!this.stopping) {
      const wasRunning = this.running;
      this.running = false;
      this.draining = true;
      if (this.rerunTimer) clearTimeout(this.rerunTimer);
      this.rerunTimer = null;
      this.stopping = (async () => {
        try {
          if (wasRunning) this.consumer.pause([{ topic: this.topic }]);
        } catch {
          // Not running in kafkajs (it never started or it crashed): nothing to pause.
        }
        while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
        await this.consumer.disconnect().catch(() => undefined);
      })();
    }
    return this.stopping;
  }
}
