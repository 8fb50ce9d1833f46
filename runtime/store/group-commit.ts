import type { Signal } from "../../domain/symbol-actor";
import type { BatchOutputs } from "../batch-outputs";
import type { RecordFence } from "./partition-fence";
import type { ChunkWrite, ResultsWriter } from "./results-writer";

/** Combined transactions at once: several, so that Postgres works on more than one core. */
const MAX_COMBINED_IN_FLIGHT = 4;
/** The most ticks one combined transaction takes: about what one partition's full chunk holds. */
const COMBINE_MAX_TICKS = 2000;

interface QueuedWrite extends ChunkWrite {
  resolve: (r: { newSignals: Signal[] }) => void;
  reject: (err: unknown) => void;
}

/**
 * A chunk another partition's may share a transaction with: fenced, its owner knows the written
 * offset, and its ticks are all above it (appended). Replays, records without results and
 * unfenced writes go alone.
 */
function combinable(out: BatchOutputs, record: RecordFence | undefined): record is RecordFence {
  return (
    record !== undefined &&
    record.writtenBefore !== undefined &&
    record.writtenOffset !== undefined &&
    (out.ticks.length === 0 || out.ticks[0].offset > record.writtenBefore)
  );
}

/**
 * Group commit: the new results of every partition that asked while the previous combined
 * transaction ran (or in the same turn of the event loop) go out in one transaction, one
 * statement per table for all of them. Per-chunk round trips and commits are what a small chunk
 * costs most; this spends them once per turn instead of once per partition. A combined
 * transaction that fails (a fence, a stored row, an outage) is written again chunk by chunk, as
 * if never combined, so that each meets its own error (and its partition's loop its own retry).
 */
export class GroupCommit {
  private readonly queued: QueuedWrite[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(private readonly writer: ResultsWriter) {}

  write(out: BatchOutputs, record?: RecordFence): Promise<{ newSignals: Signal[] }> {
    // A large chunk fills a transaction by itself; it goes at once, beside the others.
    if (!combinable(out, record) || out.ticks.length >= COMBINE_MAX_TICKS / 2)
      return this.writer.writeAlone({ out, record });
    return new Promise((resolve, reject) => {
      this.queued.push({ out, record, resolve, reject });
      this.start();
    });
  }

  private start(): void {
    if (this.scheduled || this.inFlight >= MAX_COMBINED_IN_FLIGHT || this.queued.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight >= MAX_COMBINED_IN_FLIGHT) return;
      const batch = this.take();
      if (batch.length === 0) return;
      this.inFlight += 1;
      void this.writeCombined(batch).finally(() => {
        this.inFlight -= 1;
        this.start();
      });
      this.start();
    });
  }

  /** The queued chunks of the next transaction: as many as fit in COMBINE_MAX_TICKS, at least one. */
  private take(): QueuedWrite[] {
    let ticks = 0;
    let take = 0;
    while (
      take < this.queued.length &&
      (take === 0 || ticks + this.queued[take].out.ticks.length <= COMBINE_MAX_TICKS)
    )
      ticks += this.queued[take++].out.ticks.length;
    return this.queued.splice(0, take);
  }

  private async writeCombined(batch: QueuedWrite[]): Promise<void> {
    if (batch.length > 1) {
      try {
        const results = await this.writer.writeCombined(batch);
        batch.forEach((w, i) => w.resolve(results[i]));
        return;
      } catch {
        // Each chunk again on its own, below.
      }
    }
    await Promise.all(batch.map(w => this.writer.writeAlone(w).then(w.resolve, w.reject)));
  }
}
