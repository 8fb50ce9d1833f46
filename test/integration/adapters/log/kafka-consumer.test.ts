import { KafkaLog } from "../../../../adapters/log/kafka-log";
import type { ConsumerHooks, LogBatch, LogConsumer, LogMessage } from "../../../../adapters/log/types";
import { StockError } from "../../../../domain/errors";
import { partitionForKey } from "../../../../lib/partitioner";
import { createTopic, deleteTopic, STACK, uniqueName, waitFor } from "../../../support/stack";

/**
 * The Kafka consumer (adapters/log/kafka-consumer.ts) against the real broker: what its batches
 * hand the engine, what it refetches, what a commit and a stop leave in the group, and what its
 * batches say about the group's generation, which partition claims are tied to
 * (runtime/host/partition-claim.ts).
 */

const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A log of a fresh topic, closed (with its consumers) and deleted after the test. */
async function freshLog(prefix: string, partitions: number): Promise<{ log: KafkaLog; groupId: string }> {
  const topic = uniqueName(prefix);
  await createTopic(topic, partitions);
  const log = new KafkaLog({
    brokers: STACK.kafkaBrokers.split(","),
    clientId: prefix,
    topic,
    partitions,
    sessionTimeoutMs: 10000,
  });
  cleanups.push(
    () => deleteTopic(topic),
    () => log.close(),
  );
  return { log, groupId: uniqueName(`${prefix}_group`) };
}

async function produce(
  log: KafkaLog,
  records: { key: string; value: string; headers?: Record<string, string> }[],
) {
  const producer = await log.createProducer();
  await producer.send(records);
  await producer.close();
}

/** Hooks that record each batch's messages, then do what `onBatch` says (by default: all of it). */
function recording(onBatch: (batch: LogBatch) => Promise<number> = async b => b.messages.length) {
  const batches: LogMessage[][] = [];
  const errors: { err: unknown; fatal: boolean }[] = [];
  const hooks: ConsumerHooks = {
    onAssignment: () => undefined,
    onBatch: async batch => {
      batches.push(batch.messages);
      return onBatch(batch);
    },
    onError: (err, fatal) => errors.push({ err, fatal }),
  };
  return { batches, errors, hooks };
}

const values = (batch: LogMessage[]) => batch.map(m => m.value?.toString());

describe("the Kafka consumer's batches", () => {
  it("hand each message once, in offset order, with its key, value, timestamp and headers as strings", async () => {
    const { log, groupId } = await freshLog("kafka_consumer_batches", 1);
    const sentAt = Date.now();
    await produce(log, [
      { key: "AAPL", value: "one", headers: { "idempotency-key": "k-1", "idempotency-index": "0" } },
      { key: "AAPL", value: "two" },
      { key: "AAPL", value: "three" },
    ]);
    const { batches, hooks } = recording();
    const consumer = log.createConsumer({ groupId });
    await consumer.run(hooks);
    const messages = await waitFor("three messages", () => {
      const all = batches.flat();
      return all.length >= 3 ? all : null;
    });
    expect(messages.map(m => [m.partition, m.offset, m.key, m.value?.toString()])).toEqual([
      [0, 0, "AAPL", "one"],
      [0, 1, "AAPL", "two"],
      [0, 2, "AAPL", "three"],
    ]);
    expect(messages[0].headers).toEqual({ "idempotency-key": "k-1", "idempotency-index": "0" });
    expect(messages[1].headers).toBeUndefined();
    expect(messages[0].timestamp).toBeGreaterThanOrEqual(sentAt - 60000);
    await new Promise(resolve => setTimeout(resolve, 500));
    expect(batches.flat()).toHaveLength(3);
    await consumer.stop();
  });

  it("fetch again, from the first of them, the messages a batch left undone", async () => {
    const { log, groupId } = await freshLog("kafka_consumer_undone", 1);
    await produce(
      log,
      ["a", "b", "c", "d"].map(value => ({ key: "AAPL", value })),
    );
    let calls = 0;
    const { batches, hooks } = recording(async batch => (++calls === 1 ? 1 : batch.messages.length));
    const consumer = log.createConsumer({ groupId });
    await consumer.run(hooks);
    await waitFor("the refetch", () => batches.length >= 2);
    expect(values(batches[0])).toEqual(["a", "b", "c", "d"]);
    expect(values(batches[1])).toEqual(["b", "c", "d"]);
    await consumer.stop();
  });

  it("retry a batch that failed, even with an error marked non-retriable, reporting it as not fatal", async () => {
    const { log, groupId } = await freshLog("kafka_consumer_retry", 1);
    await produce(log, [{ key: "AAPL", value: "one" }]);
    const incompatible = new StockError("incompatible snapshot", { retriable: false });
    let calls = 0;
    const { batches, errors, hooks } = recording(async batch => {
      if (++calls === 1) throw incompatible;
      return batch.messages.length;
    });
    const consumer = log.createConsumer({ groupId });
    await consumer.run(hooks);
    await waitFor("the retried batch", () => batches.length >= 2, 30000);
    expect(batches.slice(0, 2).map(values)).toEqual([["one"], ["one"]]);
    expect(errors).toEqual([{ err: incompatible, fatal: false }]);
    await consumer.stop();
  });
});

describe("the Kafka consumer's commits", () => {
  it("start the group's next member after the committed offset, and show in the lag", async () => {
    const { log, groupId } = await freshLog("kafka_consumer_commit", 1);
    await produce(
      log,
      ["a", "b", "c", "d", "e"].map(value => ({ key: "AAPL", value })),
    );
    let consumer: LogConsumer = log.createConsumer({ groupId });
    // Done with the first three of the first batch; what is refetched after is left undone.
    const first = recording(async batch => {
      if (batch.messages[0].offset !== 0) return 0;
      await consumer.commit(0, 3);
      return 3;
    });
    await consumer.run(first.hooks);
    await waitFor("the first batch", () => first.batches.length >= 1);
    await consumer.stop();
    expect(await log.lag(groupId)).toEqual([{ partition: 0, committed: 3, highWatermark: 5, lag: 2 }]);

    consumer = log.createConsumer({ groupId });
    const next = recording();
    await consumer.run(next.hooks);
    await waitFor("the next member's batch", () => next.batches.length >= 1, 60000);
    expect(values(next.batches[0])).toEqual(["d", "e"]);
    await consumer.stop();
  });

  it("of the batch in flight when stopped still reach the group: stop waits for it before leaving", async () => {
    const { log, groupId } = await freshLog("kafka_consumer_stop", 2);
    const keys = ["AAPL", "MSFT", "GOOG", "AMZN"];
    const partition = partitionForKey("AAPL", 2);
    await produce(
      log,
      keys.filter(k => partitionForKey(k, 2) === partition).map(key => ({ key, value: key })),
    );
    let release: () => void = () => undefined;
    const held = new Promise<void>(resolve => (release = resolve));
    const consumer = log.createConsumer({ groupId });
    const { batches, hooks } = recording(async batch => {
      await held;
      await consumer.commit(batch.partition, batch.messages[batch.messages.length - 1].offset + 1);
      return batch.messages.length;
    });
    await consumer.run(hooks);
    await waitFor("the held batch", () => batches.length >= 1, 60000);
    let stopped = false;
    const stopping = consumer.stop().then(() => (stopped = true));
    await new Promise(resolve => setTimeout(resolve, 300));
    expect(stopped).toBe(false);
    release();
    await stopping;
    const lag = (await log.lag(groupId)).find(l => l.partition === partition);
    expect(lag).toMatchObject({ committed: batches[0].length, lag: 0 });
  });
});

describe("the Kafka consumer's batches across a rebalance", () => {
  it("carry the group's generation id: the same on every member, larger after each rebalance", async () => {
    const { log, groupId } = await freshLog("kafka_log_generation", 2);
    const seen: { member: string; local: number; id: number; confirmedAt: number }[] = [];
    const hooks = (member: string): ConsumerHooks => ({
      onAssignment: () => undefined,
      onBatch: async (batch: LogBatch, local: number) => {
        // The first heartbeat or commit of an assignment says its generation id.
        await waitFor(
          `${member}'s generation`,
          async () => {
            await batch.heartbeat().catch(() => undefined);
            return batch.groupGeneration?.() ?? null;
          },
          20000,
          50,
        );
        const g = batch.groupGeneration?.();
        if (g) seen.push({ member, local, ...g });
        return batch.messages.length;
      },
    });
    const producer = await log.createProducer();
    const send = () =>
      producer.send(["A", "B", "C", "D"].map(key => ({ key, value: JSON.stringify({ key }) })));
    const first = log.createConsumer({ groupId });
    const second = log.createConsumer({ groupId });
    try {
      await first.run(hooks("first"));
      await send();
      await waitFor("a batch of the first assignment", () => seen.find(s => s.member === "first"), 60000);
      const alone = seen[0];
      await second.run(hooks("second"));
      const after = () => ({
        first: seen.find(s => s.member === "first" && s.local > alone.local),
        second: seen.find(s => s.member === "second"),
      });
      await waitFor(
        "batches of both members after the rebalance",
        async () => {
          await send();
          const a = after();
          return a.first && a.second ? a : null;
        },
        60000,
        500,
      );
      const { first: f, second: s } = after();
      expect(f?.id).toBe(s?.id);
      expect(f?.id).toBeGreaterThan(alone.id);
      // Confirmed by the broker during the assignment, not carried over from the one before.
      expect(f?.confirmedAt).toBeGreaterThan(alone.confirmedAt);
    } finally {
      await second.stop();
      await first.stop();
      await producer.close();
    }
  }, 120000);
});
