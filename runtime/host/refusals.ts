import type { LogMessage } from "../../adapters/log/types";
import type { Logger } from "../../lib/logger";
import type { Refusal } from "../apply-chunk";

/** How often a chunk meets a data error from Postgres before it is taken apart, or its one message dead-lettered. */
const DATA_ERROR_TRIES = 3;

/**
 * The messages of a partition that are dead-lettered unapplied (their actor's state would stop
 * being finite, or Postgres keeps refusing their results), by offset: skipped again wherever the
 * log hands them again. And how a chunk that keeps meeting a data error is taken apart to find
 * the one message Postgres refuses.
 */
export class Refusals {
  readonly refused = new Map<number, Refusal>();
  /** Data errors per chunk (by its first offset). */
  private readonly dataErrors = new Map<number, number>();
  /** Chunks up to this offset are of one message each. */
  private isolateUntil = -1;

  constructor(
    private readonly partition: number,
    private readonly logger: Logger,
  ) {}

  /** The refusals a claim loaded. */
  load(refused: Map<number, Refusal>): void {
    this.refused.clear();
    for (const [offset, refusal] of refused) this.refused.set(offset, refusal);
  }

  /** How many messages the chunk starting at `offset` takes. */
  chunkSizeAt(offset: number, chunkSize: number): number {
    return offset <= this.isolateUntil ? 1 : chunkSize;
  }

  /** The chunk starting at `offset` is stored. */
  stored(offset: number): void {
    this.dataErrors.delete(offset);
  }

  /** Whether a data error of `chunk` leaves nothing to take apart: its one message is refused already. */
  exhausted(chunk: readonly LogMessage[]): boolean {
    return chunk.length === 1 && this.refused.has(chunk[0].offset);
  }

  /**
   * Postgres refused a chunk's results with a data error. A chunk of several messages that keeps
   * meeting it is taken apart into chunks of one message; a single message that keeps meeting it
   * is dead-lettered with the error, so that the rest of the partition flows.
   */
  onDataError(chunk: readonly LogMessage[], err: Error): void {
    const first = chunk[0].offset;
    const last = chunk[chunk.length - 1].offset;
    const tries = (this.dataErrors.get(first) ?? 0) + 1;
    this.dataErrors.set(first, tries);
    this.logger.warn(
      `partition ${this.partition}: Postgres refused the results of offsets ${first}..${last} ` +
        `(try ${tries} of ${DATA_ERROR_TRIES}): ${err.message}`,
    );
    if (tries < DATA_ERROR_TRIES) return;
    this.dataErrors.delete(first);
    if (chunk.length > 1) this.isolateUntil = Math.max(this.isolateUntil, last);
    else this.refuse(first, { kind: "refused", reason: `Postgres refused its results: ${err.message}` });
  }

  refuse(offset: number, refusal: Refusal): void {
    this.refused.set(offset, refusal);
    this.logger.warn(`partition ${this.partition}: offset ${offset} goes to dead_letters: ${refusal.reason}`);
  }
}
