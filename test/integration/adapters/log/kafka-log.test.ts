import { KafkaLog, type KafkaLogOptions } from "../../../../adapters/log/kafka-log";
import { ConfigError, UnavailableError } from "../../../../domain/errors";
import { createTopic, deleteTopic, readTopic, STACK, uniqueName, withAdmin } from "../../../support/stack";

/**
 * The Kafka log adapter (adapters/log/kafka-log.ts) against the real broker: the topic it
 * checks or creates, what its producer leaves in the topic, the lag it reports, and how it fails
 * when the broker is not there. Its consumer has its own file: kafka-consumer.test.ts.
 */

const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

function kafkaLog(topic: string, partitions: number, options: Partial<KafkaLogOptions> = {}): KafkaLog {
  const log = new KafkaLog({
    brokers: STACK.kafkaBrokers.split(","),
    clientId: "kafka-log-test",
    topic,
    partitions,
    ...options,
  });
  cleanups.push(() => log.close());
  return log;
}

function freshTopic(prefix: string): string {
  const topic = uniqueName(prefix);
  cleanups.push(() => deleteTopic(topic));
  return topic;
}

describe("the Kafka log's topic", () => {
  it("is created when missing, with KAFKA_PARTITIONS partitions, also by two nodes starting at once", async () => {
    const topic = freshTopic("kafka_log_create");
    const [a, b] = await Promise.all([kafkaLog(topic, 3).ensureTopic(), kafkaLog(topic, 3).ensureTopic()]);
    expect([a, b]).toEqual([3, 3]);
    const meta = await withAdmin(admin => admin.fetchTopicMetadata({ topics: [topic] }));
    expect(meta.topics[0].partitions).toHaveLength(3);
    expect(await kafkaLog(topic, 3).partitionCount()).toBe(3);
  });

  it("is refused when its partition count is not KAFKA_PARTITIONS, saying what to set", async () => {
    const topic = freshTopic("kafka_log_mismatch");
    await createTopic(topic, 2);
    const refusal = kafkaLog(topic, 3).ensureTopic();
    await expect(refusal).rejects.toBeInstanceOf(ConfigError);
    await expect(refusal).rejects.toThrow(
      `topic "${topic}" has 2 partitions but KAFKA_PARTITIONS is 3, and every node places symbols by KAFKA_PARTITIONS: set KAFKA_PARTITIONS=2`,
    );
  });
});

describe("the Kafka log's producer", () => {
  it("resolves a send once the broker holds every record, with its key and value", async () => {
    const topic = freshTopic("kafka_log_send");
    const log = kafkaLog(topic, 2);
    await log.ensureTopic();
    const producer = await log.createProducer();
    await producer.send([
      { key: "AAPL", value: "one", headers: { "idempotency-key": "k" } },
      { key: "MSFT", value: "two" },
    ]);
    await producer.close();
    const ends = await withAdmin(admin => admin.fetchTopicOffsets(topic));
    expect(ends.reduce((n, p) => n + Number(p.high), 0)).toBe(2);
    const records = await readTopic(topic, 2);
    expect(records.map(r => [r.key, r.value]).sort()).toEqual([
      ["AAPL", "one"],
      ["MSFT", "two"],
    ]);
  });
});

describe("the Kafka log's lag", () => {
  it("is each partition's high watermark less what the group committed (-1 and all of it before a commit)", async () => {
    const topic = freshTopic("kafka_log_lag");
    const groupId = uniqueName("kafka_log_lag_group");
    const log = kafkaLog(topic, 1);
    await log.ensureTopic();
    const producer = await log.createProducer();
    await producer.send(["a", "b", "c", "d"].map(value => ({ key: "AAPL", value })));
    await producer.close();
    expect(await log.lag(groupId)).toEqual([{ partition: 0, committed: -1, highWatermark: 4, lag: 4 }]);

    await withAdmin(admin =>
      admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: "3" }] }),
    );
    expect(await log.lag(groupId)).toEqual([{ partition: 0, committed: 3, highWatermark: 4, lag: 1 }]);
  });
});

describe("the Kafka log without a broker", () => {
  it("fails its checks with a retriable UnavailableError once kafkajs gave up connecting", async () => {
    const log = kafkaLog("unreachable", 1, { brokers: ["127.0.0.1:1"] });
    const failure = await log.partitionCount().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(UnavailableError);
    expect(failure).toMatchObject({ retriable: true });
    expect((failure as Error).message).toMatch(/^Kafka metadata: /);
  }, 60000);

  it("refuses every call once closed, saying it is closed", async () => {
    const topic = freshTopic("kafka_log_closed");
    const log = kafkaLog(topic, 1);
    expect(await log.ensureTopic()).toBe(1);
    await log.close();
    const refused = log.partitionCount();
    await expect(refused).rejects.toBeInstanceOf(UnavailableError);
    await expect(refused).rejects.toThrow(`Kafka log of topic ${topic} is closed`);
    await expect(log.lag("any")).rejects.toThrow(/is closed/);
    await log.close();
  });
});
