import fc from "fast-check";
import { Partitioners } from "kafkajs";
import { partitionForKey } from "../../../lib/partitioner";

describe("partitionForKey", () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  const metadata = (n: number) =>
    Array.from({ length: n }, (_, partitionId) => ({
      partitionId,
      leader: 0,
      replicas: [0],
      isr: [0],
      partitionErrorCode: 0,
    }));

  it("puts every key in the partition kafkajs's default partitioner picks", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 40 }),
        fc.integer({ min: 1, max: 500 }),
        (key, n) => {
          const expected = kafkajs({
            topic: "stock",
            partitionMetadata: metadata(n),
            message: { key, value: null },
          });
          expect(partitionForKey(key, n)).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("matches known Java-client partitions for ticker keys", () => {
    const tickers = ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA", "BRK.B", "BF-B"];
    for (const key of tickers) {
      const expected = kafkajs({
        topic: "stock",
        partitionMetadata: metadata(12),
        message: { key, value: null },
      });
      expect(partitionForKey(key, 12)).toBe(expected);
    }
  });
});
