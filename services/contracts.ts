/**
 * What services say to each other. Services never import one another: they talk through
 * Moleculer actions and events, and both sides of each conversation import its payload types
 * from here. The shared deps type lives here too, so every service factory has one signature.
 */
import type { Resources } from "../adapters/resources";
import type { Signal, TickResult } from "../domain/symbol-actor";
import type { Config } from "../lib/config";
import type { PartitionStall } from "../runtime/host/actor-host";

/** What the composition root hands every service factory. */
export interface ServiceDeps {
  config: Config;
  resources: Resources;
}

// ---- ingest ------------------------------------------------------------------------------

/** `ingest.push`: the decoded items of one request, accepted whole or not at all. */
export interface IngestParams {
  items: unknown[];
  /** The request's Idempotency-Key header and the SHA-256 (hex) of its body, when it had one. */
  idempotency?: { key: string; bodySha256: string };
}

export interface IngestResult {
  accepted: number;
}

/**
 * What the ingest service offers a gateway on its own node, besides the `ingest.push` action: the
 * same validation and produce as a plain function call, without the Moleculer context, middleware
 * chain and metrics timers of an action call. The gateway finds it with
 * `broker.getLocalService("ingest")`; when ingest runs on other nodes only, it calls the action.
 */
export interface LocalIngest {
  /**
   * `ingest.push` in-process: the same answer and the same errors (Moleculer errors with the HTTP
   * status in `code`). Null while the service does not take direct calls (not started yet, or
   * stopping): the caller then calls the action, as before.
   */
  pushDirect(params: IngestParams): Promise<IngestResult> | null;
}

// ---- actors ------------------------------------------------------------------------------

/** Event `actors.assignment` (broadcast on every assignment), so gateways can route a symbol's query to its owner. */
export interface AssignmentEvent {
  nodeID: string;
  partitions: number[];
  generation: number;
  partitionCount: number;
}

/** Event `stock.analysed` (broadcast after each durable batch): the newest tick per symbol, and the batch's signals. */
export interface AnalysedEvent {
  nodeID: string;
  partition: number;
  ticks: TickResult[];
  signals: Signal[];
}

/** Event `stock.signals` (emitted, balanced: one notifier node handles each). */
export interface SignalsEvent {
  signals: Signal[];
}

/** Answer of `actors.partitions`: what one actors node owns. */
export interface PartitionsReply {
  nodeID: string;
  generation: number;
  partitionCount: number;
  partitions: number[];
  actors: number;
  /**
   * Owned partitions whose loop is waiting for a dependency (Postgres, Redis, Kafka commits),
   * lowest partition first; empty when all flow. Absent from nodes of earlier versions.
   */
  stalled?: PartitionStall[];
}

export type { PartitionStall };

// ---- notifier ----------------------------------------------------------------------------

/** Event `notifier.signal` (broadcast to every gateway, which pushes it to its WebSocket clients). */
export interface SignalNotification {
  signal: Signal;
  message: string;
}
