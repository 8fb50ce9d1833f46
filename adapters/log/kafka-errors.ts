import { ConfigError, UnavailableError } from "../../domain/errors";

/**
 * What a kafkajs failure means to the system, decided as kafkajs itself decides (its
 * src/errors.js): by the error's name, its `retriable` mark and the protocol error `type`
 * found down the `cause` chain, never by parsing messages.
 */

type ErrorChain = { name?: string; retriable?: boolean; cause?: unknown; type?: string };

/** kafkajs wraps a broker's answer in retry errors; how far down the cause chain to look. */
const MAX_CAUSE_DEPTH = 8;

function rootCause(err: unknown): ErrorChain {
  let e = err as ErrorChain;
  for (let depth = 0; e?.cause && depth < MAX_CAUSE_DEPTH; depth++) e = e.cause as ErrorChain;
  return e;
}

/**
 * Whether a kafkajs failure means "the broker is not there right now", by kafkajs's own rule for
 * restarting a consumer: its retries ran out, or the root cause is marked retriable. Anything
 * else (authorization, an invalid setting, a protocol error Kafka calls final) will fail the
 * same way after any number of restarts.
 */
export function isKafkaOutage(err: unknown): boolean {
  return (err as ErrorChain)?.name === "KafkaJSNumberOfRetriesExceeded" || rootCause(err)?.retriable === true;
}

/** An outage becomes the system's retriable `UnavailableError`; other failures pass unchanged. */
export function asUnavailable(what: string, err: unknown): unknown {
  return isKafkaOutage(err)
    ? new UnavailableError(`Kafka ${what}: ${(err as Error).message}`, { cause: err })
    : err;
}

/** Runs `fn`, its outage rethrown as an `UnavailableError` (see `asUnavailable`). */
export async function unavailableOnOutage<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asUnavailable(what, err);
  }
}

const REBALANCE_ERRORS = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"]);

/** Whether the broker refused a request because the group rebalances (or did without this member). */
export function isRebalanceError(err: unknown): boolean {
  let e = err as { type?: string; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < MAX_CAUSE_DEPTH; depth++) {
    if (REBALANCE_ERRORS.has(e.type ?? "")) return true;
    e = e.cause as typeof e;
  }
  return false;
}

/**
 * The topic's partition count differs from KAFKA_PARTITIONS, by which every node places symbols:
 * running on would send a symbol's ticks to another partition than the one its actor reads.
 */
export function partitionCountMismatch(topic: string, actual: number, configured: number): ConfigError {
  return new ConfigError(
    `topic "${topic}" has ${actual} partitions but KAFKA_PARTITIONS is ${configured}, and every node places symbols ` +
      `by KAFKA_PARTITIONS: set KAFKA_PARTITIONS=${actual} on every node, after draining the backlog as the README's ` +
      `"Changing the partition count" describes` +
      (actual < configured ? " (a topic never shrinks; grow it first if you want more partitions)" : ""),
  );
}
