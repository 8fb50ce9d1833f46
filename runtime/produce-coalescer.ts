import { UnavailableError } from "../domain/errors";
import type { LogProducer, LogRecord } from "../adapters/log/types";

interface Pending {
  records: LogRecord[];
  /** Index of the first record not yet handed to a produce call. */
  next: number;
  /** Size of the records from `next` on, as `recordBytes` counts. */
  bytes: number;
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
  /**
   * Upper bound on the bytes (keys, values and per-record overhead) of one produce call. Kafka
   * refuses a partition's record batch above the topic's max.message.bytes (1 MiB by default)
   * with MESSAGE_TOO_LARGE, which no retry cures; staying under it in total keeps every
   * partition under it whatever the key distribution.
   */
  maxBatchBytes?: number;
  onBatch?: (records: number, requests: number, seconds: number) => void;
}

/** Varint lengths, offset and timestamp deltas, attributes: a record's framing in a v2 record batch, rounded up. */
const RECORD_OVERHEAD_BYTES = 24;
/** Kafka's default max.message.bytes is 1,048,588; the record batch header and slack stay below the rest. */
const DEFAULT_MAX_BATCH_BYTES = 900 * 1024;

function recordBytes(r: LogRecord): number {
  return Buffer.byteLength(r.key) + Buffer.byteLength(r.value) + RECORD_OVERHEAD_BYTES;
}

/**
 * Turns many concurrent produce requests into few large ones, while each request still waits
 * for the acknowledgement of its own records.
 *
 * One produce call is in flight at a time: kafkajs's idempotent producer is only safe with
 * serial sends (concurrent sends can reorder sequence numbers), and while one call is in flight
 * the next batch fills up, so throughput comes from batch size rather than parallelism.
 *
 * Requests are packed whole into a produce call up to `maxBatchRecords` and `maxBatchBytes`. A
 * request too big for one call on its own (thousands of ticks of one symbol) is sent in
 * consecutive calls, in order, and answered once the last one is acknowledged; if one fails or
 * the request times out, the rest is not sent, and the parts already acknowledged stay in the log
 * (at least once, like any request that times out while in flight).
 */
export class ProduceCoalescer {
  private queue: Pending[] = [];
  private inFlight = false;
  private lingerTimer: NodeJS.Timeout | null = null;
  private readonly maxBatch: number;
  private readonly maxBytes: number;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly producer: LogProducer,
    private readonly options: CoalescerOptions,
  ) {
    this.maxBatch = options.maxBatchRecords ?? 20000;
    this.maxBytes = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  }

  send(records: LogRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    let bytes = 0;
    for (const r of records) bytes += recordBytes(r);
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = {
        records,
        next: 0,
        bytes,
        resolve,
        reject,
        settled: false,
        timer: setTimeout(() => {
          // Still queued: `take` drops it (settled), so it is never produced after its 503; a
          // filter here would cost O(queue) per timeout, quadratic when a Kafka outage times out
          // thousands at once. Already in flight: it may still land in Kafka; the client was told
          // it failed and may retry (at least once).
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

  /** Takes the next produce call's records off the queue: whole requests, or one part of an oversized one. */
  private take(): { records: LogRecord[]; completes: Pending[]; partial: Pending | null } {
    const completes: Pending[] = [];
    const parts: LogRecord[][] = [];
    let count = 0;
    let bytes = 0;
    while (this.queue.length > 0) {
      const p = this.queue[0];
      if (p.settled) {
        this.queue.shift();
        continue;
      }
      const restCount = p.records.length - p.next;
      if (count + restCount <= this.maxBatch && bytes + p.bytes <= this.maxBytes) {
        this.queue.shift();
        parts.push(p.next === 0 ? p.records : p.records.slice(p.next));
        count += restCount;
        bytes += p.bytes;
        p.next = p.records.length;
        p.bytes = 0;
        completes.push(p);
        continue;
      }
      if (count > 0) break;
      // Alone and still too big: send the longest prefix that fits (at least one record).
      let n = 0;
      let prefixBytes = 0;
      while (n < restCount && n < this.maxBatch) {
        const b = recordBytes(p.records[p.next + n]);
        if (n > 0 && prefixBytes + b > this.maxBytes) break;
        prefixBytes += b;
        n++;
      }
      const records = p.records.slice(p.next, p.next + n);
      p.next += n;
      p.bytes -= prefixBytes;
      return { records, completes, partial: p };
    }
    return { records: parts.length === 1 ? parts[0] : parts.flat(), completes, partial: null };
  }

  private async flush(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return;
    this.inFlight = true;
    const { records, completes, partial } = this.take();
    if (records.length === 0) {
      // Everything queued had timed out already.
      this.inFlight = false;
      for (const wake of this.idleWaiters.splice(0)) wake();
      return;
    }
    const started = process.hrtime.bigint();
    try {
      await this.producer.send(records);
      this.options.onBatch?.(
        records.length,
        completes.length + (partial ? 1 : 0),
        Number(process.hrtime.bigint() - started) / 1e9,
      );
      for (const p of completes) this.settle(p);
    } catch (err) {
      const failure =
        err instanceof UnavailableError ? err : new UnavailableError((err as Error).message, { cause: err });
      for (const p of completes) this.settle(p, failure);
      // Its remaining records stay queued but settled, so `take` drops them.
      if (partial) this.settle(partial, failure);
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
