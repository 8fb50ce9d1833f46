import { setTimeout as sleep } from "node:timers/promises";
import type { Consumer, ConsumerRunConfig, IHeaders } from "kafkajs";
import { UnavailableError } from "../../domain/errors";
import { asUnavailable, isKafkaOutage, isRebalanceError } from "./kafka-errors";
import type { ConsumerHooks, LogConsumer } from "./types";

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

/**
 * One member of a Kafka consumer group, as the `LogConsumer` the engine reads: kafkajs's group
 * events become the hooks' assignments, rebalances and departures; a consumer kafkajs gave up on
 * during an outage is run again; stopping lets the batches in flight commit first.
 */
export class KafkaConsumer implements LogConsumer {
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
