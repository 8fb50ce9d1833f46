import { setTimeout as sleep } from "node:timers/promises";
import type { LogBatch } from "../../adapters/log/types";
import type { Logger } from "../../lib/logger";
import type { KeyedMark, Refusal } from "../apply-chunk";
import type { ClaimHolder, ResultsStore } from "../store/results-store";
import { Abandoned } from "./dependency-retry";

/** How long a claim waits for the log to confirm this member's group generation (Kafka: a heartbeat). */
const GENERATION_WAIT_MS = 10000;

/** What a claim gives the partition's loop: its epoch, how far it is written, and what processing it needs. */
export interface Claimed {
  epoch: number;
  writtenOffset: number;
  marks: KeyedMark[];
  refused: Map<number, Refusal>;
}

/** What the claimer needs of the partition's loop. */
export interface ClaimSteps {
  partition: number;
  batch: LogBatch;
  /** A Postgres step, retried while Postgres is away. */
  retry<T>(what: string, fn: () => Promise<T>): Promise<T>;
  stopping(): boolean;
}

/**
 * Claims partitions for this node (docs/architecture.md, "Fencing"): under the group generation
 * the log gives the batch's assignment, and only with what processing needs loaded (the
 * partition's idempotency marks, the messages it refused before), so that a failure on the way
 * leaves the partition unclaimed, to be claimed again.
 */
export class PartitionClaimer {
  constructor(
    private readonly results: ResultsStore,
    private readonly owner: string,
    private readonly logger: Logger,
    private readonly generationWaitMs = GENERATION_WAIT_MS,
  ) {}

  /** The claim, or why it is stale: a later generation of the group holds the partition. */
  async claim(steps: ClaimSteps): Promise<Claimed | { stale: string }> {
    const { partition, batch } = steps;
    const claimed = await this.underGeneration(steps);
    if ("refused" in claimed)
      return {
        stale:
          `partition ${partition}: not claimed in generation ${claimed.mine} of the consumer group: ` +
          `${claimed.refused.owner ?? "a node"} claimed it in generation ${claimed.refused.generation}, so this assignment is stale`,
      };
    const [marks, refused] = await Promise.all([
      steps.retry(`read the idempotency marks of partition ${partition}`, () =>
        this.results.idempotencyMarks(partition),
      ),
      steps.retry(`read the refused messages of partition ${partition}`, () =>
        this.results.refusedMessages(partition, batch.messages[0].offset),
      ),
    ]);
    return { ...claimed, marks, refused };
  }

  /**
   * The claim, in the batch's group generation. Refused by a later generation, it is either a
   * stale member's (it froze past the session timeout) or the group was deleted and made anew
   * (its generations start again at 1): a heartbeat the log accepts now tells them apart, as it
   * confirms this member's generation as the group's current one. Then the claim overrules.
   */
  private async underGeneration(
    steps: ClaimSteps,
  ): Promise<{ epoch: number; writtenOffset: number } | { refused: ClaimHolder; mine: number | null }> {
    const { partition } = steps;
    const generation = await this.generation(steps, 0);
    const claim = (overrule: boolean) =>
      steps.retry(`claim partition ${partition}`, () =>
        this.results.claim(partition, this.owner, generation, overrule),
      );
    const first = await claim(false);
    if (!("refused" in first)) return first;
    if (generation === null || (await this.generation(steps, Date.now())) !== generation)
      return { ...first, mine: generation };
    this.logger.warn(
      `partition ${partition}: its claim is of group generation ${first.refused.generation}, this node's is ` +
        `${generation}, and the log confirms ${generation} as current: the consumer group was made anew; claiming it`,
    );
    const second = await claim(true);
    return "refused" in second ? { ...second, mine: generation } : second;
  }

  /**
   * The group generation of the batch's assignment, as the log confirmed it after `since` (ms):
   * Kafka says it with the first heartbeat or commit of the assignment. Null when the log numbers
   * no generations. Gives the batch up (Abandoned) when it is no longer active, or the log does
   * not confirm this member in time: its batches are fetched again then.
   */
  private async generation(steps: ClaimSteps, since: number): Promise<number | null> {
    const { batch, partition } = steps;
    if (!batch.groupGeneration) return null;
    const deadline = Date.now() + this.generationWaitMs;
    for (;;) {
      if (!batch.isActive() || steps.stopping())
        throw new Abandoned(`claim partition ${partition}: no longer ours, or stopping`);
      const known = batch.groupGeneration();
      if (known && known.confirmedAt > since) return known.id;
      if (Date.now() > deadline)
        throw new Abandoned(`claim partition ${partition}: the log did not confirm this member's generation`);
      await batch.heartbeat().catch(() => undefined);
      await sleep(50);
    }
  }
}
