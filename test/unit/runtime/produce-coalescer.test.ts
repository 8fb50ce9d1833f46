import fc from "fast-check";
import type { LogProducer, LogRecord } from "../../../adapters/log/types";
import { UnavailableError } from "../../../domain/errors";
import { ProduceCoalescer } from "../../../runtime/produce-coalescer";

/** A producer whose calls the test completes by hand, recording what each call carried. */
class ManualProducer implements LogProducer {
  readonly calls: LogRecord[][] = [];
  private waiting: { resolve(): void; reject(err: Error): void }[] = [];
  inFlight = 0;
  maxInFlight = 0;

  send(records: LogRecord[]): Promise<void> {
    this.calls.push(records);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Acknowledges (or fails) the oldest call once it has been made. */
  async complete(err?: Error): Promise<void> {
    while (this.waiting.length === 0) await tick();
    const call = this.waiting.shift()!;
    this.inFlight--;
    if (err) call.reject(err);
    else call.resolve();
    await tick();
  }

  async close(): Promise<void> {}
}

const tick = () => new Promise<void>(resolve => setImmediate(resolve));

const records = (prefix: string, n: number, valueBytes = 10): LogRecord[] =>
  Array.from({ length: n }, (_, i) => ({ key: "AAPL", value: `${prefix}${i}:`.padEnd(valueBytes, "x") }));

/** The byte count the coalescer uses: key, value, and 24 bytes of record framing. */
const size = (rs: LogRecord[]) =>
  rs.reduce((n, r) => n + Buffer.byteLength(r.key) + Buffer.byteLength(r.value) + 24, 0);

describe("ProduceCoalescer", () => {
  it("puts requests that arrive while a call is in flight into one next call", async () => {
    const producer = new ManualProducer();
    const coalescer = new ProduceCoalescer(producer, { lingerMs: 0, ackTimeoutMs: 10000 });
    const first = coalescer.send(records("a", 1));
    await tick();
    const rest = [coalescer.send(records("b", 2)), coalescer.send(records("c", 3))];
    await producer.complete();
    await producer.complete();
    await Promise.all([first, ...rest]);
    expect(producer.calls.map(c => c.length)).toEqual([1, 5]);
    expect(producer.maxInFlight).toBe(1);
  });

  it("splits a request bigger than maxBatchBytes into consecutive calls, in order, and answers after the last", async () => {
    const producer = new ManualProducer();
    const coalescer = new ProduceCoalescer(producer, {
      lingerMs: 0,
      ackTimeoutMs: 10000,
      maxBatchBytes: 1000,
    });
    const big = records("big", 100, 40);
    let done = false;
    // How many records had been handed to the producer when the request was answered.
    const sentWhenAnswered = coalescer.send(big).then(() => {
      done = true;
      return producer.calls.flat().length;
    });
    while (!done) await producer.complete();
    expect(await sentWhenAnswered).toBe(big.length);
    expect(producer.calls.length).toBeGreaterThan(1);
    for (const call of producer.calls) expect(size(call)).toBeLessThanOrEqual(1000);
    expect(producer.calls.flat()).toEqual(big);
    expect(producer.maxInFlight).toBe(1);
  });

  it("fails a split request when one part fails, and sends none of the rest", async () => {
    const producer = new ManualProducer();
    const coalescer = new ProduceCoalescer(producer, {
      lingerMs: 0,
      ackTimeoutMs: 10000,
      maxBatchBytes: 500,
    });
    const sent = coalescer.send(records("big", 50, 40));
    const outcome = sent.then(
      () => "resolved",
      (err: Error) => err,
    );
    await producer.complete();
    await producer.complete(new Error("NOT_LEADER_FOR_PARTITION"));
    const err = await outcome;
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/NOT_LEADER_FOR_PARTITION/);
    const calls = producer.calls.length;
    await tick();
    await tick();
    expect(producer.calls.length).toBe(calls);
    await coalescer.drain();
  });

  it("answers a queued request that was not acknowledged in time with UnavailableError and never produces it", async () => {
    const producer = new ManualProducer();
    const coalescer = new ProduceCoalescer(producer, { lingerMs: 0, ackTimeoutMs: 50 });
    const stuck = coalescer.send(records("a", 1)).catch((e: Error) => e);
    await tick();
    const queued = coalescer.send(records("b", 1)).catch((e: Error) => e);
    expect(await stuck).toBeInstanceOf(UnavailableError);
    expect(await queued).toBeInstanceOf(UnavailableError);
    await producer.complete();
    await tick();
    await coalescer.drain();
    expect(producer.calls.flat().map(r => r.value)).toEqual(records("a", 1).map(r => r.value));
  });

  it("delivers every record of every request exactly once, in request order, in calls within the limits", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 60 }), bytes: fc.integer({ min: 1, max: 80 }) }), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.integer({ min: 200, max: 3000 }),
        fc.integer({ min: 1, max: 40 }),
        async (requests, maxBatchBytes, maxBatchRecords) => {
          const producer = new ManualProducer();
          const coalescer = new ProduceCoalescer(producer, {
            lingerMs: 0,
            ackTimeoutMs: 60000,
            maxBatchBytes,
            maxBatchRecords,
          });
          const sent = requests.map((r, i) => records(`r${i}-`, r.n, r.bytes));
          const answers = sent.map(rs => coalescer.send(rs));
          const total = sent.reduce((n, rs) => n + rs.length, 0);
          while (producer.calls.flat().length < total || producer.inFlight > 0) await producer.complete();
          await Promise.all(answers);
          expect(producer.calls.flat()).toEqual(sent.flat());
          expect(producer.maxInFlight).toBe(1);
          for (const call of producer.calls) {
            expect(call.length).toBeLessThanOrEqual(maxBatchRecords);
            if (call.length > 1) expect(size(call)).toBeLessThanOrEqual(maxBatchBytes);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
