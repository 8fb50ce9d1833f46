import type { LogBatch, LogMessage } from "../../adapters/log/types";
import type { PriceTick } from "../../domain/messages";
import type { Logger } from "../../lib/logger";
import { ActorHost, type ActorHostOptions, type HostObserver } from "../../runtime/host/actor-host";
import { DEFAULTS, SETTINGS } from "./ticks";

/**
 * An ActorHost whose partition loops run in this process, handed batches directly (no Kafka, nothing
 * to commit), with the actors service's defaults where `options` does not say otherwise.
 */
export function directHost(
  options: Pick<ActorHostOptions, "results" | "snapshots" | "partitionCount"> & Partial<ActorHostOptions>,
): ActorHost {
  const defaults = { ...DEFAULTS.actors, settings: SETTINGS, logger: quietLogger };
  return new ActorHost({ ...defaults, commit: async () => undefined, ...options });
}

/** A price tick as the log hands it over, keyed by its symbol. */
export function tickMessage(partition: number, offset: number, tick: PriceTick): LogMessage {
  return {
    partition,
    offset,
    key: tick.stock_symbol,
    value: Buffer.from(JSON.stringify(tick)),
    timestamp: Date.now(),
  };
}

/** A batch of `messages` as the log hands one over, to a member that keeps its partition. */
export function logBatch(partition: number, messages: LogMessage[], highWatermark: number): LogBatch {
  return { partition, messages, highWatermark, heartbeat: async () => undefined, isActive: () => true };
}

/** Seconds the partition loops spent applying ticks, in Postgres transactions and writing the cache. */
export type PhaseTimes = { apply: number; persist: number; snapshot: number };

/** Adds the host's own phase timings to `times` while `counting()` says so. */
export function phaseObserver(times: PhaseTimes, counting: () => boolean = () => true): HostObserver {
  return {
    applied: (_n, seconds) => (times.apply += counting() ? seconds : 0),
    persisted: seconds => (times.persist += counting() ? seconds : 0),
    snapshotted: seconds => (times.snapshot += counting() ? seconds : 0),
  };
}

export const quietLogger: Logger = { info() {}, warn() {}, error: console.error, debug() {} };
