import type { ConsumerHooks, ConsumerOptions, LogConsumer, LogMessage } from "./types";

/** What the consumer reads of the embedded log. */
export interface EmbeddedPartitions {
  partitionCount(): Promise<number>;
  /** Up to `max` acknowledged messages of `partition`, from offset `from` on. */
  read(partition: number, from: number, max: number): LogMessage[];
  highWatermark(partition: number): number;
  /** The group's committed offsets, one per partition (-1: none yet), to read and to raise. */
  committedOffsets(groupId: string): number[];
  /** Resolves on the next acknowledged append, or after `ms`. */
  waitForAppend(ms: number): Promise<void>;
}

/**
 * A consumer group of one member, this process: it is assigned every partition at once (one
 * generation, never rebalanced) and reads each in its own loop from the group's committed offset.
 */
export class EmbeddedConsumer implements LogConsumer {
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly maxBatch: number;

  constructor(
    private readonly log: EmbeddedPartitions,
    private readonly options: ConsumerOptions,
  ) {
    this.maxBatch = options.maxBatchMessages ?? 1000;
  }

  async run(hooks: ConsumerHooks): Promise<void> {
    if (this.running) return;
    this.running = true;
    const count = await this.log.partitionCount();
    const partitions = Array.from({ length: count }, (_, p) => p);
    const generation = 1;
    hooks.onAssignment(partitions, generation);
    this.loops = partitions.map(p => this.loop(p, hooks, generation));
  }

  private async loop(partition: number, hooks: ConsumerHooks, generation: number): Promise<void> {
    const committed = this.log.committedOffsets(this.options.groupId);
    let position = Math.max(committed[partition], 0);
    while (this.running) {
      const messages = this.log.read(partition, position, this.maxBatch);
      if (messages.length === 0) {
        await this.log.waitForAppend(500);
        continue;
      }
      let done = 0;
      try {
        done = await hooks.onBatch(
          {
            partition,
            messages,
            highWatermark: this.log.highWatermark(partition),
            heartbeat: async () => undefined,
            isActive: () => true,
          },
          generation,
        );
      } catch (err) {
        // Like Kafka's consumer: the batch is fetched again after a pause, never skipped.
        hooks.onError?.(err, false);
        await new Promise(resolve => setTimeout(resolve, 1000));
        continue;
      }
      position += done;
      if (done < messages.length) await this.log.waitForAppend(100);
    }
  }

  async commit(partition: number, nextOffset: number): Promise<void> {
    const committed = this.log.committedOffsets(this.options.groupId);
    committed[partition] = Math.max(committed[partition], nextOffset);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}
