import { Errors, type Context, type ServiceSchema } from "moleculer";
import { isPriceTick, messageKey, parseMessage, type StockMessage } from "../domain/messages";
import { messageJson } from "../domain/message-json";
import { UnavailableError, type StockError, type ValidationIssue } from "../domain/errors";
import type { LogRecord } from "../adapters/log/types";
import { CounterBatch, METRIC, registerMetrics } from "../lib/metrics";
import { describeOutage, Outage, untilAvailable, WaitAborted } from "../lib/waiting";
import { resourcesMixin } from "../mixins/resources.mixin";
import {
  IDEMPOTENCY_INDEX_HEADER,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_USE_HEADER,
} from "../runtime/apply-chunk";
import { IdempotencyKeys, type KeyClaim } from "../runtime/idempotency-keys";
import { ProduceCoalescer } from "../runtime/produce-coalescer";
import type { IngestParams, IngestResult, LocalIngest, ServiceDeps } from "./contracts";

type Metrics = Context["broker"]["metrics"];

/**
 * The labels Moleculer's metrics middleware gives an `ingest.push` call from a gateway. A direct
 * call counts under them too, so `moleculer_request_total{service="ingest"}`,
 * `moleculer_request_error_total{service="ingest"}` (the StockIngestServerErrors alert) and
 * `moleculer_request_time` (the cluster dashboard's p99 by action) see every ingest request,
 * whichever way it came.
 */
const PUSH_LABELS = { service: "ingest", action: "ingest.push", caller: "gateway", type: "action" } as const;
/** Moleculer's names for them (its METRIC constants are not in its type declarations). */
const REQUEST_TOTAL = "moleculer.request.total";
const REQUEST_ERROR_TOTAL = "moleculer.request.error.total";
const REQUEST_TIME = "moleculer.request.time";

/** Reported in a 400 body; a batch with thousands of bad items lists the first ones. */
const MAX_REPORTED_ISSUES = 100;

/** Validates a whole request. Any bad item rejects all of it: a batch is accepted whole or not at all. */
export function validateItems(
  items: unknown[],
): { messages: StockMessage[] } | { issues: ValidationIssue[]; invalid: number } {
  const messages: StockMessage[] = new Array(items.length);
  const issues: ValidationIssue[] = [];
  let invalid = 0;
  for (let index = 0; index < items.length; index++) {
    const r = parseMessage(items[index]);
    if (r.ok) {
      messages[index] = r.message;
    } else {
      invalid += 1;
      for (const issue of r.issues) {
        if (issues.length < MAX_REPORTED_ISSUES) issues.push({ index, ...issue });
      }
    }
  }
  return invalid > 0 ? { issues, invalid } : { messages };
}

/**
 * Validation and durable produce. Called by the gateway through Moleculer, so any node running
 * `ingest` can take the work. It answers only once the log acknowledged every record (Kafka:
 * acks=all, idempotent producer); concurrent requests share produce calls.
 */
export default function createIngestService(deps: ServiceDeps): ServiceSchema {
  const { config, resources } = deps;
  let coalescer: ProduceCoalescer | null = null;
  let keyStore: IdempotencyKeys | null = null;
  let pruneTimer: NodeJS.Timeout | null = null;

  /** Looks the key up in Postgres (shared by every gateway node); 503 while Postgres is away. */
  async function claimKey(key: string, bodySha256: string, messages: number): Promise<KeyClaim> {
    try {
      if (!keyStore) {
        keyStore = new IdempotencyKeys(await resources.sql(), config.ingest.idempotencyTtlMs);
        pruneTimer = setInterval(() => void keyStore?.prune().catch(() => undefined), 600000);
        pruneTimer.unref();
      }
      return await keyStore.claim(key, bodySha256, messages);
    } catch (err) {
      if (err instanceof UnavailableError || (err as StockError).retriable) {
        throw new Errors.MoleculerRetryableError(
          `requests with an Idempotency-Key need the database, which is unavailable: ${(err as Error).message}`,
          503,
          "IDEMPOTENCY_UNAVAILABLE",
          { retryable: true },
        );
      }
      throw err;
    }
  }
  /** Whether direct calls from this node's gateway are taken (LocalIngest.pushDirect). */
  let acceptingDirect = false;
  /** The per-request counters (accepted messages, direct calls), batched. */
  let counters: CounterBatch | null = null;
  /**
   * Direct calls under way, so that a stop waits for them as Moleculer's context tracking waits
   * for action calls; `directIdle` wakes that stop when the last one ends.
   */
  let directInFlight = 0;
  let directIdle: (() => void) | null = null;
  let closeProducer: (() => Promise<void>) | null = null;
  let startState = "starting";
  let startAbort: AbortController | null = null;
  let startup: Promise<void> | null = null;

  /** `ingest.push`, for the action and for direct calls from a gateway on this node. */
  async function push(metrics: Metrics, params: IngestParams): Promise<IngestResult> {
    const items = params.items;
    if (!Array.isArray(items) || items.length === 0) {
      metrics.increment(METRIC.ingestRejected, { reason: "empty" });
      throw new Errors.MoleculerClientError("the request holds no messages", 400, "EMPTY_BATCH", {
        issues: [
          {
            index: 0,
            path: "(body)",
            message: "must be a message object or a non-empty array of them",
          },
        ],
      });
    }
    const checked = validateItems(items);
    if ("issues" in checked) {
      metrics.increment(METRIC.ingestRejected, { reason: "invalid" });
      const what =
        items.length === 1
          ? "the message is invalid"
          : `${checked.invalid} of ${items.length} messages are invalid; nothing was accepted`;
      throw new Errors.MoleculerClientError(what, 400, "VALIDATION_ERROR", { issues: checked.issues });
    }
    // Taken now: a stop may clear it while this request waits for Postgres below.
    const log = coalescer;
    if (!log)
      throw new Errors.MoleculerRetryableError(`ingest is not running yet: ${startState}`, 503, "NOT_READY", {
        retryable: true,
      });
    let records: LogRecord[] = checked.messages.map(m => ({
      key: messageKey(m),
      value: messageJson(m),
    }));
    const idempotency = params.idempotency;
    if (idempotency) {
      const claim = await claimKey(idempotency.key, idempotency.bodySha256, records.length);
      if (claim.status === "conflict") {
        metrics.increment(METRIC.ingestRejected, { reason: "idempotency_conflict" });
        throw new Errors.MoleculerClientError(
          `Idempotency-Key ${JSON.stringify(idempotency.key)} was already used for another request body; send a new request with a new key`,
          422,
          "IDEMPOTENCY_KEY_REUSED",
          {
            issues: [
              {
                index: 0,
                path: "(header) Idempotency-Key",
                message: `was sent with another body within the last ${Math.round(config.ingest.idempotencyTtlMs / 3600000)} h`,
              },
            ],
          },
        );
      }
      // Its messages reached the log the first time: answered as then, nothing sent again.
      if (claim.status === "done") return { accepted: records.length };
      // New, or seen but maybe never in the log: sent with the key, its use and each message's
      // index, so that the actors apply a message that reaches the log twice once.
      const use = String(claim.use);
      records = records.map((r, i) => ({
        ...r,
        headers: {
          [IDEMPOTENCY_KEY_HEADER]: idempotency.key,
          [IDEMPOTENCY_USE_HEADER]: use,
          [IDEMPOTENCY_INDEX_HEADER]: String(i),
        },
      }));
    }
    try {
      await log.send(records);
    } catch (err) {
      metrics.increment(METRIC.ingestRejected, { reason: "unavailable" });
      if (err instanceof UnavailableError) {
        throw new Errors.MoleculerRetryableError(err.message, 503, "LOG_UNAVAILABLE", {
          retryable: true,
        });
      }
      throw err;
    }
    // Best effort: if this is lost, a repeat sends the messages again and the actors skip them.
    if (idempotency) await keyStore?.complete(idempotency.key).catch(() => undefined);
    let ticks = 0;
    for (const m of checked.messages) if (isPriceTick(m)) ticks += 1;
    if (ticks > 0) counters?.add("price", METRIC.ingestAccepted, { type: "price" }, ticks);
    if (ticks < records.length)
      counters?.add("side", METRIC.ingestAccepted, { type: "side" }, records.length - ticks);
    return { accepted: records.length };
  }

  /** `push` for a direct call: counted, and under the action's request metrics. */
  async function pushDirect(metrics: Metrics, params: IngestParams): Promise<IngestResult> {
    directInFlight += 1;
    const startedAt = performance.now();
    try {
      return await push(metrics, params);
    } catch (err) {
      const e = err as Error & { code?: unknown; type?: unknown };
      metrics.increment(REQUEST_ERROR_TOTAL, {
        ...PUSH_LABELS,
        errorName: e.name,
        errorCode: e.code,
        errorType: e.type,
      });
      throw err;
    } finally {
      metrics.observe(REQUEST_TIME, performance.now() - startedAt, PUSH_LABELS);
      directInFlight -= 1;
      if (directInFlight === 0) directIdle?.();
    }
  }

  return {
    name: "ingest",
    mixins: [resourcesMixin(resources)],

    actions: {
      push: {
        visibility: "public",
        handler(this: { broker: Context["broker"] }, ctx: Context<IngestParams>): Promise<IngestResult> {
          return push(this.broker.metrics, ctx.params);
        },
      },
    },

    methods: {
      /** LocalIngest.pushDirect (services/contracts.ts). */
      pushDirect(this: { broker: Context["broker"] }, params: IngestParams): Promise<IngestResult> | null {
        if (!acceptingDirect) return null;
        counters?.add("request", REQUEST_TOTAL, PUSH_LABELS);
        return pushDirect(this.broker.metrics, params);
      },
    } satisfies LocalIngest,

    /**
     * Returns at once and connects in the background, waiting for Kafka as long as it is away
     * (one log line when the wait starts, one when it ends); meanwhile `ingest.push` answers 503
     * and `/readyz` names what ingest waits for. See the actors service for why.
     */
    started(this: { broker: Context["broker"]; logger: Context["broker"]["logger"] }) {
      registerMetrics(this.broker);
      const { broker, logger } = this;
      counters = new CounterBatch(broker);
      acceptingDirect = true;
      const abort = new AbortController();
      startAbort = abort;
      startState = "starting";
      resources.reportStartup("ingest", startState);
      const outage = new Outage("ingest", logger, { failing: "waiting", recovered: "resumed" });
      startup = untilAvailable(
        "reach the log (Kafka)",
        async () => {
          const log = await resources.log();
          const partitions = await log.ensureTopic();
          const producer = await log.createProducer();
          return { log, partitions, producer };
        },
        {
          outage,
          signal: abort.signal,
          maxBackoffMs: config.actors.retryMaxBackoffMs,
          onChange: state => {
            startState = describeOutage(state);
            resources.reportStartup("ingest", startState);
          },
        },
      ).then(
        ({ log, partitions, producer }) => {
          closeProducer = () => producer.close();
          const metrics = broker.metrics;
          coalescer = new ProduceCoalescer(producer, {
            lingerMs: config.ingest.lingerMs,
            ackTimeoutMs: config.kafka.ackTimeoutMs,
            onBatch: (records, _requests, seconds) => {
              metrics.observe(METRIC.produceLatency, seconds);
              metrics.observe(METRIC.produceBatchSize, records);
            },
          });
          resources.reportStartup("ingest", null);
          logger.info(`producing to ${log.kind} topic "${log.topic}" (${partitions} partitions)`);
        },
        (err: Error) => {
          if (err instanceof WaitAborted || abort.signal.aborted) return;
          broker.fatal(`ingest cannot start: ${err.message}`, err, true);
        },
      );
    },

    async stopped() {
      if (pruneTimer) clearInterval(pruneTimer);
      // From now on a gateway on this node calls the action; the direct calls under way finish
      // first (within the shutdown grace, as tracked action calls do), then the producer drains.
      acceptingDirect = false;
      if (directInFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>(resolve => (directIdle = resolve)),
          new Promise<void>(resolve => (timer = setTimeout(resolve, config.actors.shutdownGraceMs))),
        ]);
        clearTimeout(timer);
        directIdle = null;
      }
      startAbort?.abort();
      await startup;
      const draining = coalescer;
      coalescer = null;
      if (draining) {
        // Every waiting request is answered (503 at worst) within the ack timeout. Waiting longer
        // for a produce call stuck retrying against an unreachable Kafka would only hold up the stop.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          draining.drain(),
          new Promise<void>(resolve => (timer = setTimeout(resolve, config.kafka.ackTimeoutMs))),
        ]);
        clearTimeout(timer);
      }
      await closeProducer?.();
      counters?.flush();
    },
  };
}
