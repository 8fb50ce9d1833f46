import { KafkaLog } from "../../../../adapters/log/kafka-log";
import type { ConsumerHooks, LogBatch } from "../../../../adapters/log/types";
import { createTopic, deleteTopic, STACK, uniqueName, waitFor } from "../../../support/stack";

/**
 * The Kafka log adapter against the real broker: what its batches say about the consumer
 * group's generation, which partition claims are tied to (runtime/host/partition-claim.ts).
 */
describe("the Kafka log's batches", () => {
  it("carry the group's generation id: the same on every member, larger after each rebalance", async () => {
    const topic = uniqueName("kafka_log_generation");
    const groupId = uniqueName("kafka_log_generation_group");
    await createTopic(topic, 2);
    const log = new KafkaLog({
      brokers: STACK.kafkaBrokers.split(","),
      clientId: "kafka-log-generation",
      topic,
      partitions: 2,
      sessionTimeoutMs: 10000,
    });
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
      await log.close();
      await deleteTopic(topic);
    }
  }, 120000);
});
