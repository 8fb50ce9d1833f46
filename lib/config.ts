import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../domain/errors";

/**
 * Every environment variable the system reads, validated once at start-up.
 * Services receive the parsed `Config`; nothing else reads `process.env`.
 * The README's configuration table documents the same variables.
 */

export const ALL_SERVICES = ["gateway", "ingest", "actors", "query", "notifier"] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];

/**
 * INGEST_AUTH: `required` refuses to start a gateway without INGEST_TOKEN (fail closed, for
 * deployments); `off` accepts every caller and ignores INGEST_TOKEN (an explicit opt-out);
 * `auto`, the default, keeps the local behaviour: a token is required exactly when INGEST_TOKEN
 * is set.
 */
export const INGEST_AUTH_MODES = ["auto", "required", "off"] as const;
export type IngestAuth = (typeof INGEST_AUTH_MODES)[number];

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const num = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+(\.\d+)?$/, "must be a number")
    .transform(Number)
    .pipe(z.number().min(min).max(max));

const flag = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(
    z.enum(["1", "0", "true", "false", "yes", "no", "on", "off"], {
      error: "must be 1/0, true/false, yes/no or on/off",
    }),
  )
  .transform(v => ["1", "true", "yes", "on"].includes(v));

const optionalUrl = (schemes: string[]) =>
  z
    .string()
    .trim()
    .refine(
      v => {
        try {
          return schemes.includes(new URL(v).protocol.replace(":", ""));
        } catch {
          return false;
        }
      },
      { message: `must be a URL with scheme ${schemes.join(" or ")}` },
    );

const brokerList = z
  .string()
  .trim()
  .transform(v =>
    v
      .split(",")
      .map(s => s.trim())
      .filter(Boolean),
  )
  .pipe(
    z
      .array(z.string().regex(/^[\w.-]+:\d{1,5}$/, "must be host:port[,host:port...]"))
      .min(1, "must name at least one broker"),
  );

const serviceList = z
  .string()
  .trim()
  .transform(v =>
    v
      .split(",")
      .map(s => s.trim())
      .filter(Boolean),
  )
  .pipe(
    z
      .array(z.enum(ALL_SERVICES, { error: `must be a comma list of ${ALL_SERVICES.join(", ")}` }))
      .min(1, "must name at least one service"),
  );

const byteSize = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^\d+(\.\d+)?\s*(b|kb|mb|gb)?$/, "must be a size such as 512kb or 5mb")
  .transform(v => {
    const m = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/.exec(v)!;
    const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? "b") as "b" | "kb" | "mb" | "gb"];
    return Math.floor(Number(m[1]) * unit);
  });

const envSchema = z
  .object({
    PORT: int(0, 65535).default(5000),
    HOST: z.string().trim().min(1).default("0.0.0.0"),
    NODE_ID: z.string().trim().min(1).max(128).optional(),
    NAMESPACE: z
      .string()
      .trim()
      .regex(/^[\w-]*$/, "must be letters, digits, - or _")
      .default(""),
    SERVICES: serviceList.optional(),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
    METRICS_PORT: int(0, 65535).default(3030),

    KAFKA_BROKERS: brokerList.optional(),
    KAFKA_TOPIC: z
      .string()
      .trim()
      .regex(/^[a-zA-Z0-9._-]{1,249}$/, "must be a valid Kafka topic name")
      .default("stock"),
    KAFKA_PARTITIONS: int(1, 10000).default(12),
    KAFKA_GROUP_ID: z.string().trim().min(1).default("stock-actors"),
    KAFKA_CLIENT_ID: z.string().trim().min(1).default("stock-actors"),
    KAFKA_ACK_TIMEOUT_MS: int(100, 600000).default(5000),
    KAFKA_SESSION_TIMEOUT_MS: int(6000, 300000).default(10000),

    NATS_URL: optionalUrl(["nats", "tls"]).optional(),
    DATABASE_URL: optionalUrl(["postgres", "postgresql"]).optional(),
    DATABASE_POOL_SIZE: int(1, 1000).default(10),
    REDIS_URL: optionalUrl(["redis", "rediss"]).optional(),
    DATA_DIR: z.string().trim().min(1).default("./data"),

    SMA_PERIOD: int(1, 100000).default(20),
    EMA_PERIOD: int(1, 100000).default(20),
    RSI_PERIOD: int(1, 100000).default(14),
    RSI_OVERSOLD: num(0, 100).default(30),
    RSI_OVERBOUGHT: num(0, 100).default(70),

    DEMO_FEED: flag.optional(),
    DEMO_FEED_RATE: num(0.01, 100000).default(10),

    INGEST_AUTH: z
      .string()
      .trim()
      .toLowerCase()
      .pipe(z.enum(INGEST_AUTH_MODES, { error: `must be ${INGEST_AUTH_MODES.join(", ")}` }))
      .default("auto"),
    INGEST_TOKEN: z.string().min(1).optional(),
    INGEST_MAX_BATCH: int(1, 1000000).default(10000),
    INGEST_BODY_LIMIT: byteSize.default(5 * 1024 ** 2),
    INGEST_RATE_LIMIT: int(0).default(0),
    INGEST_LINGER_MS: int(0, 1000).default(0),
    IDEMPOTENCY_TTL_HOURS: int(1, 720).default(24),
    INGEST_TRUST_PROXY: flag.default(false),

    NOTIFIER_WEBHOOK_URL: optionalUrl(["http", "https"]).optional(),

    ACTOR_IDLE_MS: int(1000).default(300000),
    STATE_RECORD_INTERVAL_MS: int(0, 600000).default(1000),
    SHUTDOWN_GRACE_MS: int(100, 600000).default(10000),
    RETRY_MAX_BACKOFF_MS: int(10, 600000).default(10000),
  })
  .superRefine((env, ctx) => {
    if (env.RSI_OVERSOLD >= env.RSI_OVERBOUGHT) {
      ctx.addIssue({ code: "custom", path: ["RSI_OVERSOLD"], message: "must be below RSI_OVERBOUGHT" });
    }
    // Fail closed: the node that serves POST /ingest (the gateway) does not start without a token.
    // A token of spaces only can never match (HTTP trims header values): it counts as none.
    const runsGateway = (env.SERVICES ?? ALL_SERVICES).includes("gateway");
    if (env.INGEST_AUTH === "required" && runsGateway && !env.INGEST_TOKEN?.trim()) {
      ctx.addIssue({
        code: "custom",
        path: ["INGEST_TOKEN"],
        message:
          "must be set (not empty) when INGEST_AUTH=required and this node runs the gateway (POST /ingest); " +
          "set INGEST_TOKEN, or set INGEST_AUTH=off to accept unauthenticated ingest explicitly",
      });
    }
  });

export type Env = z.infer<typeof envSchema>;

export interface Config {
  port: number;
  host: string;
  nodeID: string;
  /** Moleculer namespace: nodes only see nodes of the same namespace on a shared transporter. */
  namespace: string;
  services: ServiceName[];
  logLevel: Env["LOG_LEVEL"];
  metricsPort: number;
  kafka: {
    /** Undefined: the embedded in-process log stands in for Kafka. */
    brokers?: string[];
    topic: string;
    partitions: number;
    groupId: string;
    clientId: string;
    ackTimeoutMs: number;
    sessionTimeoutMs: number;
  };
  natsUrl?: string;
  /** Undefined: embedded PGlite under `dataDir`. */
  databaseUrl?: string;
  databasePoolSize: number;
  /** Undefined: in-memory snapshots. */
  redisUrl?: string;
  dataDir: string;
  indicators: {
    smaPeriod: number;
    emaPeriod: number;
    rsiPeriod: number;
    rsiOversold: number;
    rsiOverbought: number;
  };
  demoFeed: { enabled: boolean; rate: number };
  /** Where the notifier POSTs each signal as JSON; unset: log and WebSocket only. */
  notifierWebhookUrl?: string;
  ingest: {
    /** INGEST_AUTH as set (default `auto`); `token` already reflects it. */
    auth: IngestAuth;
    /** The bearer token POST /ingest requires; undefined: none (INGEST_AUTH=off, or auto without a token). */
    token?: string;
    /** INGEST_AUTH=off with INGEST_TOKEN set: the token is ignored (the gateway warns at start). */
    tokenIgnored: boolean;
    maxBatch: number;
    bodyLimitBytes: number;
    rateLimitPerSecond: number;
    lingerMs: number;
    /** Rate-limit by the address a trusted proxy appends to X-Forwarded-For, not the socket's. */
    trustProxy: boolean;
    /** How long an Idempotency-Key is remembered (by the gateways and by the actors). */
    idempotencyTtlMs: number;
  };
  actors: {
    idleMs: number;
    /** How often actor states are recorded in Postgres and offsets committed; 0: every batch. */
    recordIntervalMs: number;
    shutdownGraceMs: number;
    retryMaxBackoffMs: number;
  };
}

/** Reads and validates the environment. Throws a ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== "") present[key] = value;
  }
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(issue => {
      const name = String(issue.path[0] ?? "environment");
      const shown = present[name] !== undefined ? ` (got "${present[name]}")` : "";
      return `${name}${shown}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration: ${issues.join("; ")}`);
  }
  const e = parsed.data;
  const embeddedLog = e.KAFKA_BROKERS === undefined;
  return {
    port: e.PORT,
    host: e.HOST,
    nodeID: e.NODE_ID ?? `${os.hostname()}-${process.pid}`,
    namespace: e.NAMESPACE,
    services: e.SERVICES ?? [...ALL_SERVICES],
    logLevel: e.LOG_LEVEL,
    metricsPort: e.METRICS_PORT,
    kafka: {
      brokers: e.KAFKA_BROKERS,
      topic: e.KAFKA_TOPIC,
      partitions: e.KAFKA_PARTITIONS,
      groupId: e.KAFKA_GROUP_ID,
      clientId: e.KAFKA_CLIENT_ID,
      ackTimeoutMs: e.KAFKA_ACK_TIMEOUT_MS,
      sessionTimeoutMs: e.KAFKA_SESSION_TIMEOUT_MS,
    },
    natsUrl: e.NATS_URL,
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    redisUrl: e.REDIS_URL,
    dataDir: path.resolve(e.DATA_DIR),
    indicators: {
      smaPeriod: e.SMA_PERIOD,
      emaPeriod: e.EMA_PERIOD,
      rsiPeriod: e.RSI_PERIOD,
      rsiOversold: e.RSI_OVERSOLD,
      rsiOverbought: e.RSI_OVERBOUGHT,
    },
    demoFeed: { enabled: e.DEMO_FEED ?? embeddedLog, rate: e.DEMO_FEED_RATE },
    notifierWebhookUrl: e.NOTIFIER_WEBHOOK_URL,
    ingest: {
      auth: e.INGEST_AUTH,
      // INGEST_AUTH=off ignores a token that is set: the opt-out wins, and the gateway says so at start.
      token: e.INGEST_AUTH === "off" ? undefined : e.INGEST_TOKEN,
      tokenIgnored: e.INGEST_AUTH === "off" && e.INGEST_TOKEN !== undefined,
      maxBatch: e.INGEST_MAX_BATCH,
      bodyLimitBytes: e.INGEST_BODY_LIMIT,
      rateLimitPerSecond: e.INGEST_RATE_LIMIT,
      lingerMs: e.INGEST_LINGER_MS,
      trustProxy: e.INGEST_TRUST_PROXY,
      idempotencyTtlMs: e.IDEMPOTENCY_TTL_HOURS * 3600 * 1000,
    },
    actors: {
      idleMs: e.ACTOR_IDLE_MS,
      recordIntervalMs: e.STATE_RECORD_INTERVAL_MS,
      shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
      retryMaxBackoffMs: e.RETRY_MAX_BACKOFF_MS,
    },
  };
}

/** The variables with their defaults, for the README table and `--help` output. */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape);

/** For entry points: the configuration, or the one-line problem on stderr and exit code 1. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
}
