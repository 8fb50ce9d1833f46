import { UnavailableError } from "../lib/errors";
import type { LogProducer, LogRecord } from "../adapters/log/types";

interface Pending {
  records: LogRecord[];
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  settled: boolean;
}

export interface CoalescerOptions {
  /** How long the first request of a batch waits for company. */
  lingerMs: number;
  /** A request not acknowledged within this time fails with UnavailableError (HTTP 503). */
  ackTimeoutMs: number;
  /** Upper bound on the records of one produce call. */
  maxBatchRecords?: number;
  onBatch?: (records: number, requests: number, seconds: number) => void;
}

/**
 * Turns many concurrent produce requests into few large ones, while each request still waits
 * for the acknowledgement of its own records.
 *
 * One produce call is in flight at a time: kafkajs's idempotent producer is only safe with
 * serial sends (concurrent sends can reorder sequence numbers), and while one call is in flight
 * the next batch fills up, so throughput comes from batch size rather than parallelism. A
 * request's records always travel in one produce call, never split across two.
 */
export class ProduceCoalescer {
  private queue: Pending[] = [];
  private inFlight = false;
  private lingerTimer: NodeJS.Timeout | null = null;
  private readonly maxBatch: number;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly producer: LogProducer,
    private readonly options: CoalescerOptions,
  ) {
    this.maxBatch = options.maxBatchRecords ?? 20000;
  }

  send(records: LogRecord[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = {
        records,
        resolve,
        reject,
        settled: false,
        timer: setTimeout(() => {
          // Still queued: drop it so it is never produced after its 503. Already in flight: it
          // may still land in Kafka; the client was told it failed and may retry (at least once).
          this.queue = this.queue.filter(p => p !== pending);
          this.settle(
            pending,
            new UnavailableError(`Kafka did not acknowledge within ${this.options.ackTimeoutMs} ms`),
          );
        }, this.options.ackTimeoutMs),
      };
      this.queue.push(pending);
      this.schedule();
    });
  }

  private settle(p: Pending, err?: Error): void {
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve();
  }

  private schedule(): void {
    if (this.inFlight || this.lingerTimer || this.queue.length === 0) return;
    if (this.options.lingerMs <= 0) {
      setImmediate(() => void this.flush());
      this.lingerTimer = null;
      return;
    }
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      void this.flush();
    }, this.options.lingerMs);
  }

  private async flush(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return;
    this.inFlight = true;
    const batch: Pending[] = [];
    let count = 0;
    while (
      this.queue.length > 0 &&
      (batch.length === 0 || count + this.queue[0].records.length <= this.maxBatch)
    ) {
      const p = this.queue.shift()!;
      batch.push(p);
      count += p.records.length;
    }
    const records = batch.length === 1 ? batch[0].records : batch.flatMap(p => p.records);
    const started = process.hrtime.bigint();
    try {
      await this.producer.send(records);
      this.options.onBatch?.(records.length, batch.length, Number(process.hrtime.bigint() - started) / 1e9);
      for (const p of batch) this.settle(p);
    } catch (err) {
      const failure =
        err instanceof UnavailableError ? err : new UnavailableError((err as Error).message, { cause: err });
      for (const p of batch) this.settle(p, failure);
    } finally {
      this.inFlight = false;
      if (this.queue.length > 0) {
        // Whatever queued while this batch was in flight has already waited: send it now.
        setImmediate(() => void this.flush());
      } else {
        for (const wake of this.idleWaiters.splice(0)) wake();
      }
    }
  }

  /** Resolves once nothing is queued or in flight (for a graceful stop). */
  drain(): Promise<void> {
    if (!this.inFlight && this.queue.length === 0) return Promise.resolve();
    return new Promise(resolve => this.idleWaiters.push(resolve));
  }
}
