/**
 * The partitioned, ordered message log the system is built on: Kafka in production, an
 * in-process log with the same partition and offset semantics in embedded mode. Services see
 * only this interface, so both run the same code path.
 *
 * Types only, so no test of its own: the implementations' tests (test/unit/adapters/log/,
 * test/integration/adapters/log/) hold them to it.
 */

export interface LogRecord {
  key: string;
  value: string;
  /** Kafka record headers, e.g. the request's `idempotency-key` and the message's `idempotency-index`. */
  headers?: Record<string, string>;
}

export interface LogMessage {
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  /** When the log accepted the message (ms since the epoch). */
  timestamp: number;
  headers?: Record<string, string>;
}

export interface LogBatch {
  partition: number;
  messages: LogMessage[];
  /** Offset the next appended message will get; `highWatermark - 1 - lastOffset` is the lag. */
  highWatermark: number;
  heartbeat(): Promise<void>;
  /** False once this member may no longer own the partition (rebalance or stop): stop work, commit nothing. */
  isActive(): boolean;
  /**
   * The consumer group generation of the batch's assignment as the log numbers it, the same number
   * on every member (Kafka's generation id), and when the log last confirmed this member in it
   * (ms since the epoch; Kafka: a heartbeat or commit it accepted); null until it has. Absent
   * where the log numbers no generations shared between processes (the embedded log).
   */
  groupGeneration?(): { id: number; confirmedAt: number } | null;
}

export interface ConsumerHooks {
  /**
   * The member's partitions, called synchronously each time the group hands out an assignment,
   * before any batch of that assignment; `generation` grows by one each time.
   */
  onAssignment(partitions: number[], generation: number): void;
  /**
   * Processes one batch of one partition, in offset order. Returns how many leading messages
   * are done; the rest are fetched again. Batches of one partition never overlap.
   */
  onBatch(batch: LogBatch, generation: number): Promise<number>;
  /**
   * A batch failed (the batch is retried after a pause), or, with `fatal`, the consumer stopped
   * for good on an error no restart can fix (authorization, invalid settings): the process can
   * no longer do its work. A broker outage is never fatal: the consumer waits and runs again.
   */
  onError?(err: unknown, fatal: boolean): void;
  /**
   * The member dropped out of the group (the Kafka client crashed, e.g. the broker went away):
   * it owns nothing until the next `onAssignment`, and batches in flight are no longer active.
   * The consumer rejoins by itself; `generation` is the one that ended the old assignment.
   */
  onLeft?(err: unknown, generation: number): void;
  /**
   * The group is rebalancing: the member's assignment of `generation` is being revoked, and the
   * next `onAssignment` (or `onLeft`) ends the rebalance. Called once per generation, when the
   * member learns of it (a heartbeat, fetch or commit refused for a rebalance).
   */
  onRebalancing?(generation: number): void;
  /**
   * The log answered this member (a fetch, heartbeat, commit or join): it is reachable. Called
   * often (every fetch); keep it cheap. The embedded log never calls it: it is in the process.
   */
  onContact?(): void;
}

export interface LogConsumer {
  run(hooks: ConsumerHooks): Promise<void>;
  /** Durably records that every message below `nextOffset` is processed. */
  commit(partition: number, nextOffset: number): Promise<void>;
  /** Stops fetching, waits for batches in flight, leaves the group. */
  stop(): Promise<void>;
}

export interface LogProducer {
  /** Resolves once the log acknowledged every record (Kafka: acks=all). */
  send(records: LogRecord[]): Promise<void>;
  close(): Promise<void>;
}

export interface PartitionLag {
  partition: number;
  /** Next offset the group will read (-1 when the group committed nothing yet). */
  committed: number;
  highWatermark: number;
  lag: number;
}

export interface MessageLog {
  readonly kind: "kafka" | "embedded";
  readonly topic: string;
  /** Creates the topic when missing; returns its partition count. */
  ensureTopic(): Promise<number>;
  partitionCount(): Promise<number>;
  createProducer(): Promise<LogProducer>;
  createConsumer(options: ConsumerOptions): LogConsumer;
  lag(groupId: string): Promise<PartitionLag[]>;
  close(): Promise<void>;
}

export interface ConsumerOptions {
  groupId: string;
  /** Upper bound on the messages handed to one `onBatch` call. */
  maxBatchMessages?: number;
}
