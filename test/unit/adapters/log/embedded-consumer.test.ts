import { EmbeddedConsumer } from "../../../../adapters/log/embedded-consumer";
import { EmbeddedLog } from "../../../../adapters/log/embedded-log";
import type { ConsumerHooks, LogBatch } from "../../../../adapters/log/types";
import { partitionForKey } from "../../../../lib/partitioner";

const TOPIC = "ticks";
const GROUP = "actors";
const PARTITIONS = 3;
const KEYS = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX"];

async function until(what: string, check: () => boolean, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

/** Hooks that record every batch and do what `onBatch` says (by default: all of it). */
function recorder(onBatch: (batch: LogBatch) => Promise<number> = async b => b.messages.length) {
  const seen = {
    assignments: [] as { partitions: number[]; generation: number }[],
    batches: [] as { partition: number; offsets: number[]; highWatermark: number; generation: number }[],
    errors: [] as { err: unknown; fatal: boolean }[],
  };
  const hooks: ConsumerHooks = {
    onAssignment: (partitions, generation) => seen.assignments.push({ partitions, generation }),
    onBatch: async (batch, generation) => {
      seen.batches.push({
        partition: batch.partition,
        offsets: batch.messages.map(m => m.offset),
        highWatermark: batch.highWatermark,
        generation,
      });
      return onBatch(batch);
    },
    onError: (err, fatal) => seen.errors.push({ err, fatal }),
  };
  return { seen, hooks };
}

const offsetsOf = (seen: ReturnType<typeof recorder>["seen"], p: number) =>
  seen.batches.filter(b => b.partition === p).flatMap(b => b.offsets);

describe("EmbeddedConsumer", () => {
  let log: EmbeddedLog;
  let consumers: EmbeddedConsumer[];
  const consumer = (maxBatchMessages?: number) => {
    const c = new EmbeddedConsumer(log, { groupId: GROUP, maxBatchMessages });
    consumers.push(c);
    return c;
  };
  const append = (n: number, key = "AAPL") =>
    log.append(Array.from({ length: n }, (_, i) => ({ key, value: `${key}-${i}` })));

  beforeEach(() => {
    log = new EmbeddedLog(TOPIC, PARTITIONS);
    consumers = [];
  });

  afterEach(async () => {
    for (const c of consumers) await c.stop();
    await log.close();
  });

  it("is assigned every partition once, in generation 1, before any batch", async () => {
    const { seen, hooks } = recorder();
    await append(1);
    await consumer().run(hooks);
    expect(seen.assignments).toEqual([{ partitions: [0, 1, 2], generation: 1 }]);
    await until("the batch", () => seen.batches.length === 1);
    expect(seen.batches[0].generation).toBe(1);
  });

  it("delivers each partition's messages once, in offset order, in batches of at most maxBatchMessages", async () => {
    const { seen, hooks } = recorder();
    await Promise.all(KEYS.map(key => append(7, key)));
    const perPartition = [0, 1, 2].map(
      p => KEYS.filter(k => partitionForKey(k, PARTITIONS) === p).length * 7,
    );
    await consumer(5).run(hooks);
    await until("every message", () => seen.batches.reduce((n, b) => n + b.offsets.length, 0) === 56);
    for (let p = 0; p < PARTITIONS; p++)
      expect(offsetsOf(seen, p)).toEqual(Array.from({ length: perPartition[p] }, (_, i) => i));
    expect(Math.max(...seen.batches.map(b => b.offsets.length))).toBe(5);
    for (const b of seen.batches) expect(b.highWatermark).toBe(perPartition[b.partition]);
  });

  it("hands on messages appended while it waits", async () => {
    const { seen, hooks } = recorder();
    await consumer().run(hooks);
    await append(2);
    await until("the first two", () => offsetsOf(seen, partitionForKey("AAPL", PARTITIONS)).length === 2);
    await append(1);
    await until("the third", () => offsetsOf(seen, partitionForKey("AAPL", PARTITIONS)).length === 3);
    expect(offsetsOf(seen, partitionForKey("AAPL", PARTITIONS))).toEqual([0, 1, 2]);
  });

  it("fetches again the messages a batch left undone, from the first of them", async () => {
    let calls = 0;
    const { seen, hooks } = recorder(async () => (++calls === 1 ? 2 : 10));
    await append(5);
    await consumer().run(hooks);
    await until("two batches", () => seen.batches.length >= 2);
    expect(seen.batches.slice(0, 2).map(b => b.offsets)).toEqual([
      [0, 1, 2, 3, 4],
      [2, 3, 4],
    ]);
  });

  it("reports a batch that fails and fetches it again after a pause, never skipping it", async () => {
    const failure = new Error("database away");
    let calls = 0;
    const { seen, hooks } = recorder(async batch => {
      if (++calls === 1) throw failure;
      return batch.messages.length;
    });
    await append(3);
    await consumer().run(hooks);
    await until("the retry", () => seen.batches.length === 2);
    expect(seen.errors).toEqual([{ err: failure, fatal: false }]);
    expect(seen.batches.map(b => b.offsets)).toEqual([
      [0, 1, 2],
      [0, 1, 2],
    ]);
  });

  it("gives batches that are always active and a heartbeat that does nothing", async () => {
    let checked: { active: boolean; heartbeat: unknown; generation: unknown } | null = null;
    const { hooks } = recorder(async batch => {
      checked = {
        active: batch.isActive(),
        heartbeat: await batch.heartbeat(),
        generation: batch.groupGeneration,
      };
      return batch.messages.length;
    });
    await append(1);
    await consumer().run(hooks);
    await until("the batch", () => checked !== null);
    expect(checked).toEqual({ active: true, heartbeat: undefined, generation: undefined });
  });

  it("starts a new member of the group after what the group committed, and never moves a commit back", async () => {
    await append(4);
    const p = partitionForKey("AAPL", PARTITIONS);
    const first = consumer();
    await first.commit(p, 3);
    await first.commit(p, 1);
    expect(log.committedOffsets(GROUP)[p]).toBe(3);
    await first.stop();

    const { seen, hooks } = recorder();
    await consumer().run(hooks);
    await until("the rest", () => seen.batches.length === 1);
    expect(seen.batches[0].offsets).toEqual([3]);
    expect((await log.lag(GROUP))[p]).toMatchObject({ committed: 3, lag: 1 });
  });

  it("waits for the batch in flight when stopped, and delivers nothing after", async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>(resolve => (release = resolve));
    let finished = false;
    const { seen, hooks } = recorder(async batch => {
      await held;
      finished = true;
      return batch.messages.length;
    });
    await append(1);
    const c = consumer();
    await c.run(hooks);
    await until("the batch", () => seen.batches.length === 1);
    const stopped = c.stop();
    let stoppedYet = false;
    void stopped.then(() => (stoppedYet = true));
    await new Promise(resolve => setTimeout(resolve, 20));
    expect(stoppedYet).toBe(false);
    release();
    await stopped;
    expect(finished).toBe(true);
    await append(1);
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(seen.batches).toHaveLength(1);
  });

  it("runs once however often it is started", async () => {
    const { seen, hooks } = recorder();
    const c = consumer();
    await c.run(hooks);
    await c.run(hooks);
    expect(seen.assignments).toHaveLength(1);
  });
});
