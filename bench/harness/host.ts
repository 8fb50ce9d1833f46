import type { LogBatch, LogMessage } from "../../adapters/log/types";
import type { Logger } from "../../lib/logger";
import { ActorHost, type ActorHostOptions, type HostObserver } from "../../runtime/host/actor-host";
import { SETTINGS } from "./ticks";

/** An ActorHost's partition loops run in this process, handed batches directly: no Kafka, nothing to commit. */
export function directHost(options: Omit<ActorHostOptions, "settings" | "commit">): ActorHost {
  return new ActorHost({ settings: SETTINGS, commit: async () => undefined, ...options });
}

/** A batch of `messages` as the log hands one over, to a member that keeps its partition. */
export function logBatch(partition: number, messages: LogMessage[], highWatermark: number): LogBatch {
  return { partition, messages, highWatermark, heartbeat: async () => undefined, isActive: () => true };
}

/** Seconds the partition loops spent applying ticks, in Postgres transactions and writing the cache. */
export interface PhaseTimes {
  apply: number;
  persist: number;
  snapshot: number;
}

/** Adds the host's own phase timings to `times` while `counting()` says so. */
export function phaseObserver(times: PhaseTimes, counting: () => boolean = () => true): HostObserver {
  return {
    applied: (_n, seconds) => (times.apply += counting() ? seconds : 0),
    persisted: seconds => (times.persist += counting() ? seconds : 0),
    snapshotted: seconds => (times.snapshot += counting() ? seconds : 0),
  };
}

export const quietLogger: Logger = { info() {}, warn() {}, error: console.error, debug() {} };
