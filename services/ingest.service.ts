import { Errors, type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { isPriceTick, messageKey, parseMessage, type StockMessage } from "../domain/messages";
import { messageJson } from "../domain/message-json";
import { UnavailableError, type StockError, type ValidationIssue } from "../domain/errors";
import type { LogProducer, LogRecord, MessageLog } from "../adapters/log/types";
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
import { serviceSchema } from "./service-schema";

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

/** What the ingest service holds between its lifecycle steps. */
interface IngestState {
  /** What the start-up waits for, for NOT_READY answers. */
  startState: string;
  startAbort: AbortController | null;
  startup: Promise<void> | null;
  /** Set once the producer is connected; cleared when a stop starts draining it. */
  coalescer: ProduceCoalescer | null;
  closeProducer: (() => Promise<void>) | null;
  /** Opened by the first request with an Idempotency-Key. */
  keyStore: IdempotencyKeys | null;
  pruneTimer: NodeJS.Timeout | null;
  /** Whether direct calls from this node's gateway are taken (LocalIngest.pushDirect). */
  acceptingDirect: boolean;
  /** The per-request counters (accepted messages, direct calls), batched. */
  counters: CounterBatch | null;
  /**
   * Direct calls under way, so that a stop waits for them as Moleculer's context tracking waits
   * for action calls; `directIdle` wakes that stop when the last one ends.
   */
  directInFlight: number;
  directIdle: (() => void) | null;
}

/** What the start-up connects to before ingest takes requests. */
interface Connected {
  log: MessageLog;
  partitions: number;
  producer: LogProducer;
}

type IngestMethods = LocalIngest & {
  push(params: IngestParams): Promise<IngestResult>;
  validMessages(items: unknown): StockMessage[];
  keyedRecords(
    idempotency: NonNullable<IngestParams["idempotency"]>,
    records: LogRecord[],
  ): Promise<LogRecord[] | null>;
  claimKey(key: string, bodySha256: string, messages: number): Promise<KeyClaim>;
  produce(log: ProduceCoalescer, records: LogRecord[]): Promise<void>;
  countAccepted(messages: StockMessage[]): void;
  pushTracked(params: IngestParams): Promise<IngestResult>;
  connect(signal: AbortSignal): Promise<Connected>;
  producing(connected: Connected): void;
  directCallsEnded(): Promise<void>;
  drainProducer(): Promise<void>;
};

function initialState(): IngestState {
  return {
    startState: "starting",
    startAbort: null,
    startup: null,
    coalescer: null,
    closeProducer: null,
    keyStore: null,
    pruneTimer: null,
    acceptingDirect: false,
    counters: null,
    directInFlight: 0,
    directIdle: null,
  };
}

type IngestFields = { deps: ServiceDeps; state: IngestState };
type IngestService = Service & IngestMethods & IngestFields;

/**
 * Validation and durable produce. Called by the gateway through Moleculer, so any node running
 * `ingest` can take the work. It answers only once the log acknowledged every record (Kafka:
 * acks=all, idempotent producer); concurrent requests share produce calls.
 */
export default function createIngestService(deps: ServiceDeps): ServiceSchema {
  return serviceSchema<ServiceSettingSchema, IngestMethods, IngestFields>({
    name: "ingest",
    mixins: [resourcesMixin(deps.resources)],
    actions: {
      push: {
        visibility: "public",
        handler(ctx: Context<IngestParams>): Promise<IngestResult> {
          return this.push(ctx.params);
        },
      },
    },
    methods,
    created() {
      this.deps = deps;
      this.state = initialState();
    },
    started,
    stopped,
  });
}

/**
 * Returns at once and connects in the background, waiting for Kafka as long as it is away
 * (one log line when the wait starts, one when it ends); meanwhile `ingest.push` answers 503
 * and `/readyz` names what ingest waits for. See the actors service for why.
 */
function started(this: IngestService): void {
  registerMetrics(this.broker);
  const { state } = this;
  state.counters = new CounterBatch(this.broker);
  state.acceptingDirect = true;
  const abort = new AbortController();
  state.startAbort = abort;
  state.startState = "starting";
  this.deps.resources.reportStartup("ingest", state.startState);
  state.startup = this.connect(abort.signal).then(
    connected => this.producing(connected),
    (err: Error) => {
      if (err instanceof WaitAborted || abort.signal.aborted) return;
      this.broker.fatal(`ingest cannot start: ${err.message}`, err, true);
    },
  );
}

async function stopped(this: IngestService): Promise<void> {
  const { state } = this;
  if (state.pruneTimer) clearInterval(state.pruneTimer);
  // From now on a gateway on this node calls the action; the direct calls under way finish
  // first (within the shutdown grace, as tracked action calls do), then the producer drains.
  state.acceptingDirect = false;
  await this.directCallsEnded();
  state.startAbort?.abort();
  await state.startup;
  await this.drainProducer();
  await state.closeProducer?.();
  state.counters?.flush();
}

const methods = {
  /** `ingest.push`, for the action and for direct calls from a gateway on this node. */
  async push(params) {
    const messages = this.validMessages(params.items);
    // Taken now: a stop may clear it while this request waits for Postgres below.
    const log = this.state.coalescer;
    if (!log)
      throw new Errors.MoleculerRetryableError(
        `ingest is not running yet: ${this.state.startState}`,
        503,
        "NOT_READY",
        { retryable: true },
      );
    let records: LogRecord[] = messages.map(m => ({
      key: messageKey(m),
      value: messageJson(m),
    }));
    const idempotency = params.idempotency;
    if (idempotency) {
      const keyed = await this.keyedRecords(idempotency, records);
      // Its messages reached the log the first time: answered as then, nothing sent again.
      if (!keyed) return { accepted: records.length };
      records = keyed;
    }
    await this.produce(log, records);
    // Best effort: if this is lost, a repeat sends the messages again and the actors skip them.
    if (idempotency) await this.state.keyStore?.complete(idempotency.key).catch(() => undefined);
    this.countAccepted(messages);
    return { accepted: records.length };
  },

  /** The request's messages; a 400 when it holds none or any of them is invalid. */
  validMessages(items) {
    const metrics = this.broker.metrics;
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
    return checked.messages;
  },

  /**
   * The records to send for a request with an Idempotency-Key, or null when the key's request is
   * done (its messages reached the log); a 422 when the key came with another body.
   */
  async keyedRecords(idempotency, records) {
    const claim = await this.claimKey(idempotency.key, idempotency.bodySha256, records.length);
    if (claim.status === "conflict") {
      this.broker.metrics.increment(METRIC.ingestRejected, { reason: "idempotency_conflict" });
      throw new Errors.MoleculerClientError(
        `Idempotency-Key ${JSON.stringify(idempotency.key)} was already used for another request body; send a new request with a new key`,
        422,
        "IDEMPOTENCY_KEY_REUSED",
        {
          issues: [
            {
              index: 0,
              path: "(header) Idempotency-Key",
              message: `was sent with another body within the last ${Math.round(this.deps.config.ingest.idempotencyTtlMs / 3600000)} h`,
            },
          ],
        },
      );
    }
    if (claim.status === "done") return null;
    // New, or seen but maybe never in the log: sent with the key, its use and each message's
    // index, so that the actors apply a message that reaches the log twice once.
    const use = String(claim.use);
    return records.map((r, i) => ({
      ...r,
      headers: {
        [IDEMPOTENCY_KEY_HEADER]: idempotency.key,
        [IDEMPOTENCY_USE_HEADER]: use,
        [IDEMPOTENCY_INDEX_HEADER]: String(i),
      },
    }));
  },

  /** Looks the key up in Postgres (shared by every gateway node); 503 while Postgres is away. */
  async claimKey(key, bodySha256, messages) {
    const { state } = this;
    const { config, resources } = this.deps;
    try {
      if (!state.keyStore) {
        state.keyStore = new IdempotencyKeys(await resources.sql(), config.ingest.idempotencyTtlMs);
        state.pruneTimer = setInterval(() => void state.keyStore?.prune().catch(() => undefined), 600000);
        state.pruneTimer.unref();
      }
      return await state.keyStore.claim(key, bodySha256, messages);
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
  },

  /** Sends the records, answering once the log acknowledged them all; 503 while it is away. */
  async produce(log, records) {
    try {
      await log.send(records);
    } catch (err) {
      this.broker.metrics.increment(METRIC.ingestRejected, { reason: "unavailable" });
      if (err instanceof UnavailableError) {
        throw new Errors.MoleculerRetryableError(err.message, 503, "LOG_UNAVAILABLE", {
          retryable: true,
        });
      }
      throw err;
    }
  },

  countAccepted(messages) {
    const counters = this.state.counters;
    let ticks = 0;
    for (const m of messages) if (isPriceTick(m)) ticks += 1;
    if (ticks > 0) counters?.add("price", METRIC.ingestAccepted, { type: "price" }, ticks);
    if (ticks < messages.length)
      counters?.add("side", METRIC.ingestAccepted, { type: "side" }, messages.length - ticks);
  },

  /** LocalIngest.pushDirect (services/contracts.ts). */
  pushDirect(params) {
    if (!this.state.acceptingDirect) return null;
    this.state.counters?.add("request", REQUEST_TOTAL, PUSH_LABELS);
    return this.pushTracked(params);
  },

  /** `push` for a direct call: counted, and under the action's request metrics. */
  async pushTracked(params) {
    const { state } = this;
    const metrics = this.broker.metrics;
    state.directInFlight += 1;
    const startedAt = performance.now();
    try {
      return await this.push(params);
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
      state.directInFlight -= 1;
      if (state.directInFlight === 0) state.directIdle?.();
    }
  },

  /** Waits for Kafka: the topic, and a connected producer. */
  connect(signal) {
    const { config, resources } = this.deps;
    const outage = new Outage("ingest", this.logger, { failing: "waiting", recovered: "resumed" });
    return untilAvailable(
      "reach the log (Kafka)",
      async () => {
        const log = await resources.log();
        const partitions = await log.ensureTopic();
        const producer = await log.createProducer();
        return { log, partitions, producer };
      },
      {
        outage,
        signal,
        maxBackoffMs: config.actors.retryMaxBackoffMs,
        onChange: outageState => {
          this.state.startState = describeOutage(outageState);
          resources.reportStartup("ingest", this.state.startState);
        },
      },
    );
  },

  /** From here on `ingest.push` produces. */
  producing({ log, partitions, producer }) {
    const { config, resources } = this.deps;
    const metrics = this.broker.metrics;
    this.state.closeProducer = () => producer.close();
    this.state.coalescer = new ProduceCoalescer(producer, {
      lingerMs: config.ingest.lingerMs,
      ackTimeoutMs: config.kafka.ackTimeoutMs,
      onBatch: (records, _requests, seconds) => {
        metrics.observe(METRIC.produceLatency, seconds);
        metrics.observe(METRIC.produceBatchSize, records);
      },
    });
    resources.reportStartup("ingest", null);
    this.logger.info(`producing to ${log.kind} topic "${log.topic}" (${partitions} partitions)`);
  },

  async directCallsEnded() {
    const { state } = this;
    if (state.directInFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>(resolve => (state.directIdle = resolve)),
      new Promise<void>(resolve => (timer = setTimeout(resolve, this.deps.config.actors.shutdownGraceMs))),
    ]);
    clearTimeout(timer);
    state.directIdle = null;
  },

  async drainProducer() {
    const draining = this.state.coalescer;
    this.state.coalescer = null;
    if (!draining) return;
    // Every waiting request is answered (503 at worst) within the ack timeout. Waiting longer
    // for a produce call stuck retrying against an unreachable Kafka would only hold up the stop.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      draining.drain(),
      new Promise<void>(resolve => (timer = setTimeout(resolve, this.deps.config.kafka.ackTimeoutMs))),
    ]);
    clearTimeout(timer);
  },
} satisfies IngestMethods & ThisType<IngestService>;
