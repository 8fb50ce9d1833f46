import { partitionForKey } from "../../../lib/partitioner";
import { createTopic, deleteTopic, kafkaClient, readTopic, uniqueName } from "../../support/stack";

describe("Kafka broker (real, KRaft)", () => {
  const topic = uniqueName("smoke_kafka");

  beforeAll(() => createTopic(topic, 6));
  afterAll(() => deleteTopic(topic));

  it("delivers a keyed message to the partition its key maps to", async () => {
    const producer = kafkaClient("smoke").producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const keys = ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA", "BRK.B"];
    const acks = await producer.send({
      topic,
      acks: -1,
      messages: keys.map(key => ({ key, value: JSON.stringify({ key }) })),
    });
    await producer.disconnect();
    expect(acks.every(a => a.errorCode === 0)).toBe(true);

    const records = await readTopic(topic, keys.length);
    expect(records.map(r => r.key).sort()).toEqual([...keys].sort());
    for (const r of records) {
      expect(r.partition).toBe(partitionForKey(r.key!, 6));
      expect(JSON.parse(r.value)).toEqual({ key: r.key });
    }
  });
});
