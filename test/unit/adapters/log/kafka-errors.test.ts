import {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  type KafkaJSProtocolError,
} from "kafkajs";
import {
  asUnavailable,
  isKafkaOutage,
  isRebalanceError,
  partitionCountMismatch,
  unavailableOnOutage,
} from "../../../../adapters/log/kafka-errors";
import { ConfigError, UnavailableError } from "../../../../domain/errors";

/** kafkajs's own decoding of a broker's error code, and its own retrier: the error chains it really throws. */
const { createErrorFromCode } = jest.requireActual<{
  createErrorFromCode(code: number): KafkaJSProtocolError;
}>("kafkajs/src/protocol/error");
const createRetry =
  jest.requireActual<
    (options: { retries: number; initialRetryTime: number }) => <T>(fn: () => Promise<T>) => Promise<T>
  >("kafkajs/src/retry");

/** What kafkajs throws after retrying `err` `retries` times. */
async function afterRetries(err: Error, retries = 2): Promise<unknown> {
  return createRetry({ retries, initialRetryTime: 1 })(async () => {
    throw err;
  }).catch((thrown: unknown) => thrown);
}

const CODES = {
  LEADER_NOT_AVAILABLE: 5,
  ILLEGAL_GENERATION: 22,
  UNKNOWN_MEMBER_ID: 25,
  REBALANCE_IN_PROGRESS: 27,
  TOPIC_AUTHORIZATION_FAILED: 29,
};

describe("isKafkaOutage", () => {
  it("is true once kafkajs ran out of retries against a broker that is not there", async () => {
    const thrown = await afterRetries(new KafkaJSConnectionError("Connection error: connect ECONNREFUSED"));
    expect(thrown).toBeInstanceOf(KafkaJSNumberOfRetriesExceeded);
    expect(isKafkaOutage(thrown)).toBe(true);
  });

  it("is true for a failure whose root cause kafkajs marks retriable", () => {
    const leaderAway = createErrorFromCode(CODES.LEADER_NOT_AVAILABLE);
    expect(isKafkaOutage(leaderAway)).toBe(true);
    expect(isKafkaOutage(new Error("wrapped", { cause: new Error("again", { cause: leaderAway }) }))).toBe(
      true,
    );
  });

  it("is false for a failure no restart can fix, however kafkajs wraps it", async () => {
    const denied = createErrorFromCode(CODES.TOPIC_AUTHORIZATION_FAILED);
    expect(isKafkaOutage(denied)).toBe(false);
    const thrown = await afterRetries(denied);
    expect(thrown).toBeInstanceOf(KafkaJSNonRetriableError);
    expect(isKafkaOutage(thrown)).toBe(false);
    expect(isKafkaOutage(new Error("a bug"))).toBe(false);
    expect(isKafkaOutage(undefined)).toBe(false);
  });
});

describe("asUnavailable and unavailableOnOutage", () => {
  it("turn an outage into the system's retriable UnavailableError, naming what failed", async () => {
    const outage = await afterRetries(new KafkaJSConnectionError("Connection error: connect ECONNREFUSED"));
    const wrapped = asUnavailable("metadata", outage);
    expect(wrapped).toBeInstanceOf(UnavailableError);
    expect(wrapped).toMatchObject({ retriable: true, cause: outage });
    expect((wrapped as Error).message).toMatch(/^Kafka metadata: .*ECONNREFUSED/);

    await expect(
      unavailableOnOutage("lag", async () => {
        throw outage;
      }),
    ).rejects.toThrow(UnavailableError);
  });

  it("pass every other failure on unchanged, and a result through", async () => {
    const denied = createErrorFromCode(CODES.TOPIC_AUTHORIZATION_FAILED);
    expect(asUnavailable("topic check", denied)).toBe(denied);
    await expect(
      unavailableOnOutage("topic check", async () => {
        throw denied;
      }),
    ).rejects.toBe(denied);
    await expect(unavailableOnOutage("topic check", async () => 12)).resolves.toBe(12);
  });
});

describe("isRebalanceError", () => {
  it("finds the broker's rebalance answers down kafkajs's cause chain", async () => {
    for (const code of [CODES.REBALANCE_IN_PROGRESS, CODES.ILLEGAL_GENERATION, CODES.UNKNOWN_MEMBER_ID]) {
      const answer = createErrorFromCode(code);
      expect(isRebalanceError(answer)).toBe(true);
      expect(isRebalanceError(await afterRetries(answer))).toBe(true);
    }
  });

  it("is false for other failures, and for a cause chain deeper than kafkajs builds", () => {
    expect(isRebalanceError(createErrorFromCode(CODES.LEADER_NOT_AVAILABLE))).toBe(false);
    expect(isRebalanceError(new Error("REBALANCE_IN_PROGRESS"))).toBe(false);
    expect(isRebalanceError(undefined)).toBe(false);
    let deep: Error = createErrorFromCode(CODES.REBALANCE_IN_PROGRESS);
    for (let i = 0; i < 8; i++) deep = new Error("wrapped", { cause: deep });
    expect(isRebalanceError(deep)).toBe(false);
  });
});

describe("partitionCountMismatch", () => {
  it("is a ConfigError telling which count to set on every node", () => {
    const err = partitionCountMismatch("stock", 6, 3);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(
      /^topic "stock" has 6 partitions but KAFKA_PARTITIONS is 3, .*set KAFKA_PARTITIONS=6 on every node/,
    );
    expect(err.message).not.toMatch(/never shrinks/);
  });

  it("says a topic never shrinks when it has fewer partitions than configured", () => {
    expect(partitionCountMismatch("stock", 2, 4).message).toMatch(/a topic never shrinks; grow it first/);
  });
});
