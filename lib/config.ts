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

/** A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes. */
const webhookSecret = z
  .string()
  .trim()
  .regex(/^whsec_[A-Za-z0-9+/]{32,88}={0,2}$/, {
    message:
      "must be whsec_ followed by the base64 of 24 to 64 random bytes " +
      "(make one with: node -e \"console.log('whsec_' + crypto.randomBytes(32).toString('base64'))\")",
  });

const SUBSCRIBER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * NOTIFIER_SUBSCRIBERS: a JSON array of webhook subscribers, each
 * `{"name", "url", "symbols"?: [...], "sides"?: ["buy"|"sell"], "from"?: "now"|"start"}`, each
 * with its own cursor. `from` says where a new subscriber starts: after the signals stored when
 * it first appears (default), or at the first stored signal.
 */
const subscriberList = z
  .string()
  .transform((v, ctx) => {
    try {
      return JSON.parse(v) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "must be a JSON array of subscribers" });
      return z.NEVER;
    }
  })
  .pipe(
    z
      .array(
        z.object({
          name: z
            .string()
            .regex(SUBSCRIBER_NAME, "a subscriber's name is lower-case letters, digits, - and _"),
          url: optionalUrl(["http", "https"]),
          symbols: z.array(z.string().min(1)).min(1).optional(),
          sides: z
            .array(z.enum(["buy", "sell"]))
            .min(1)
            .optional(),
          from: z.enum(["now", "start"]).default("now"),
        }),
        { error: "must be a JSON array of subscribers" },
      )
      .refine(list => new Set(list.map(s => s.name)).size === list.length, "subscriber names must differ"),
  );

/** Variables whose values never appear in an error message. */
const SECRETS = new Set(["INGEST_TOKEN", "NOTIFIER_WEBHOOK_SECRET"]);

/**
 * One environment variable: its name and the zod schema that reads it (format, bounds, default,
 * error message). Where it stands in `DECLARED` is where its value lands in `Config`.
 */
class Variable<N extends string = string, S extends z.ZodType = z.ZodType> {
  constructor(
    readonly name: N,
    readonly schema: S,
  ) {}
}

const variable = <N extends string, S extends z.ZodType>(name: N, schema: S) => new Variable(name, schema);

/** A part of the configuration: one variable, or a group of parts (a nested object of `Config`). */
type Part = Variable | { readonly [key: string]: Part };

/**
 * Every variable, declared once, in the shape of `Config`: the environment schema, the `Config`
 * type and the mapping from one to the other are all derived from this object. The order is the
 * order of the variables in error messages and in `CONFIG_VARIABLES`.
 */
const DECLARED = {
  port: variable("PORT", int(0, 65535).default(5000)),
  host: variable("HOST", z.string().trim().min(1).default("0.0.0.0")),
  nodeID: variable(
    "NODE_ID",
    z
      .string()
      .trim()
      .min(1)
      .max(128)
      .default(() => `${os.hostname()}-${process.pid}`),
  ),
  /** Moleculer namespace: nodes only see nodes of the same namespace on a shared transporter. */
  namespace: variable(
    "NAMESPACE",
    z
      .string()
      .trim()
      .regex(/^[\w-]*$/, "must be letters, digits, - or _")
      .default(""),
  ),
  services: variable(
    "SERVICES",
    serviceList.default(() => [...ALL_SERVICES]),
  ),
  logLevel: variable(
    "LOG_LEVEL",
    z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  ),
  metricsPort: variable("METRICS_PORT", int(0, 65535).default(3030)),
  kafka: {
    /** Undefined: the embedded in-process log stands in for Kafka. */
    brokers: variable("KAFKA_BROKERS", brokerList.optional()),
    topic: variable(
      "KAFKA_TOPIC",
      z
        .string()
        .trim()
        .regex(/^[a-zA-Z0-9._-]{1,249}$/, "must be a valid Kafka topic name")
        .default("stock"),
    ),
    partitions: variable("KAFKA_PARTITIONS", int(1, 10000).default(12)),
    groupId: variable("KAFKA_GROUP_ID", z.string().trim().min(1).default("stock-actors")),
    clientId: variable("KAFKA_CLIENT_ID", z.string().trim().min(1).default("stock-actors")),
    ackTimeoutMs: variable("KAFKA_ACK_TIMEOUT_MS", int(100, 600000).default(5000)),
    sessionTimeoutMs: variable("KAFKA_SESSION_TIMEOUT_MS", int(6000, 300000).default(10000)),
  },
  natsUrl: variable("NATS_URL", optionalUrl(["nats", "tls"]).optional()),
  /** Undefined: embedded PGlite under `dataDir`. */
  databaseUrl: variable("DATABASE_URL", optionalUrl(["postgres", "postgresql"]).optional()),
  databasePoolSize: variable("DATABASE_POOL_SIZE", int(1, 1000).default(10)),
  /** Undefined: in-memory snapshots. */
  redisUrl: variable("REDIS_URL", optionalUrl(["redis", "rediss"]).optional()),
  dataDir: variable(
    "DATA_DIR",
    z
      .string()
      .trim()
      .min(1)
      .default("./data")
      .transform(dir => path.resolve(dir)),
  ),
  indicators: {
    smaPeriod: variable("SMA_PERIOD", int(1, 100000).default(20)),
    emaPeriod: variable("EMA_PERIOD", int(1, 100000).default(20)),
    rsiPeriod: variable("RSI_PERIOD", int(1, 100000).default(14)),
    rsiOversold: variable("RSI_OVERSOLD", num(0, 100).default(30)),
    rsiOverbought: variable("RSI_OVERBOUGHT", num(0, 100).default(70)),
  },
  demoFeed: {
    /** Unset: on exactly when KAFKA_BROKERS is unset (see `settle`). */
    enabled: variable("DEMO_FEED", flag.optional()),
    rate: variable("DEMO_FEED_RATE", num(0.01, 100000).default(10)),
  },
  ingest: {
    /** INGEST_AUTH as set (default `auto`); `token` already reflects it. */
    auth: variable(
      "INGEST_AUTH",
      z
        .string()
        .trim()
        .toLowerCase()
        .pipe(z.enum(INGEST_AUTH_MODES, { error: `must be ${INGEST_AUTH_MODES.join(", ")}` }))
        .default("auto"),
    ),
    /** The bearer token POST /ingest requires; undefined: none (INGEST_AUTH=off, or auto without a token). */
    token: variable("INGEST_TOKEN", z.string().min(1).optional()),
    maxBatch: variable("INGEST_MAX_BATCH", int(1, 1000000).default(10000)),
    bodyLimitBytes: variable("INGEST_BODY_LIMIT", byteSize.default(5 * 1024 ** 2)),
    rateLimitPerSecond: variable("INGEST_RATE_LIMIT", int(0).default(0)),
    lingerMs: variable("INGEST_LINGER_MS", int(0, 1000).default(0)),
    /** How long an Idempotency-Key is remembered (by the gateways and by the actors). */
    idempotencyTtlMs: variable(
      "IDEMPOTENCY_TTL_HOURS",
      int(1, 720)
        .default(24)
        .transform(hours => hours * 3600 * 1000),
    ),
    /** Rate-limit by the address a trusted proxy appends to X-Forwarded-For, not the socket's. */
    trustProxy: variable("INGEST_TRUST_PROXY", flag.default(false)),
  },
  notifier: {
    /** The subscriber "default": it receives every signal stored after it first appears. Unset: none. */
    webhookUrl: variable("NOTIFIER_WEBHOOK_URL", optionalUrl(["http", "https"]).optional()),
    /** Further subscribers, with filters (see `subscriberList`). */
    subscribers: variable("NOTIFIER_SUBSCRIBERS", subscriberList.default([])),
    /** The Standard Webhooks secret every delivery is signed with. */
    secret: variable("NOTIFIER_WEBHOOK_SECRET", webhookSecret.optional()),
    /** How long a failing delivery is retried before it becomes a dead letter. */
    retryMs: variable(
      "NOTIFIER_RETRY_HOURS",
      int(1, 720)
        .default(24)
        .transform(hours => hours * 3600 * 1000),
    ),
    /** How long one delivery may take before it counts as failed. */
    timeoutMs: variable("NOTIFIER_TIMEOUT_MS", int(100, 120000).default(5000)),
  },
  actors: {
    idleMs: variable("ACTOR_IDLE_MS", int(1000).default(300000)),
    /** How often actor states are recorded in Postgres and offsets committed; 0: every batch. */
    recordIntervalMs: variable("STATE_RECORD_INTERVAL_MS", int(0, 600000).default(1000)),
    shutdownGraceMs: variable("SHUTDOWN_GRACE_MS", int(100, 600000).default(10000)),
    retryMaxBackoffMs: variable("RETRY_MAX_BACKOFF_MS", int(10, 600000).default(10000)),
  },
} satisfies Record<string, Part>;

/** Every variable in the part `T`, as a union. */
type VariablesIn<T> = T extends Variable ? T : { [K in keyof T]: VariablesIn<T[K]> }[keyof T];

/** The part `T` with each variable replaced by its value. */
type Placed<T> =
  T extends Variable<string, infer S> ? z.output<S> : { -readonly [K in keyof T]: Placed<T[K]> };

/** `T` with every key whose value may be undefined made optional, at every depth. */
type Optionals<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? Flat<
        { [K in keyof T as undefined extends T[K] ? never : K]: Optionals<T[K]> } & {
          [K in keyof T as undefined extends T[K] ? K : never]?: Optionals<T[K]>;
        }
      >
    : T;

type Flat<T> = { [K in keyof T]: T[K] };

function variablesIn(part: Part): Variable[] {
  return part instanceof Variable ? [part] : Object.values(part).flatMap(variablesIn);
}

/** The object schema of the environment, one key per variable. */
const envShape = Object.fromEntries(variablesIn(DECLARED).map(v => [v.name, v.schema])) as {
  [V in VariablesIn<typeof DECLARED> as V["name"]]: V["schema"];
};

/** The names of the variables, in the order of `DECLARED` (the README's table lists the same). */
export const CONFIG_VARIABLES = Object.keys(envShape);

/** The rules that involve more than one variable. */
const envSchema = z.object(envShape).superRefine((env, ctx) => {
  if (env.RSI_OVERSOLD >= env.RSI_OVERBOUGHT) {
    ctx.addIssue({ code: "custom", path: ["RSI_OVERSOLD"], message: "must be below RSI_OVERBOUGHT" });
  }
  // Fail closed: the node that serves POST /ingest (the gateway) does not start without a token.
  // A token of spaces only can never match (HTTP trims header values): it counts as none.
  const subscribers = env.NOTIFIER_SUBSCRIBERS.length + (env.NOTIFIER_WEBHOOK_URL ? 1 : 0);
  if (subscribers > 0 && env.SERVICES.includes("notifier") && !env.NOTIFIER_WEBHOOK_SECRET) {
    ctx.addIssue({
      code: "custom",
      path: ["NOTIFIER_WEBHOOK_SECRET"],
      message:
        "must be set when a webhook subscriber is configured: every delivery is signed (Standard Webhooks)",
    });
  }
  if (env.NOTIFIER_WEBHOOK_URL && env.NOTIFIER_SUBSCRIBERS.some(s => s.name === "default")) {
    ctx.addIssue({
      code: "custom",
      path: ["NOTIFIER_SUBSCRIBERS"],
      message:
        'must not name a subscriber "default" while NOTIFIER_WEBHOOK_URL is set (that one is "default")',
    });
  }
  const runsGateway = env.SERVICES.includes("gateway");
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

/** Each variable's parsed value put where `DECLARED` places it. */
function place<T extends Part>(part: T, env: Readonly<Record<string, unknown>>): Placed<T> {
  // The walk builds exactly the shape `Placed<T>` describes; TypeScript cannot follow the recursion.
  if (part instanceof Variable) return env[part.name] as Placed<T>;
  const entries = Object.entries(part).map(([key, inner]) => [key, place(inner, env)]);
  return Object.fromEntries(entries) as Placed<T>;
}

/** The values that one variable takes from another. */
function settle(c: Placed<typeof DECLARED>) {
  const { webhookUrl, subscribers, ...notifier } = c.notifier;
  const fromUrl = webhookUrl ? [{ name: "default", url: webhookUrl, from: "now" as const }] : [];
  return {
    ...c,
    /** Every webhook subscriber: "default" from NOTIFIER_WEBHOOK_URL, then NOTIFIER_SUBSCRIBERS. */
    notifier: { ...notifier, subscribers: [...fromUrl, ...subscribers] },
    demoFeed: { ...c.demoFeed, enabled: c.demoFeed.enabled ?? c.kafka.brokers === undefined },
    ingest: {
      ...c.ingest,
      // INGEST_AUTH=off ignores a token that is set: the opt-out wins, and the gateway says so at start.
      token: c.ingest.auth === "off" ? undefined : c.ingest.token,
      /** INGEST_AUTH=off with INGEST_TOKEN set: the token is ignored (the gateway warns at start). */
      tokenIgnored: c.ingest.auth === "off" && c.ingest.token !== undefined,
    },
  };
}

/** The configuration every node is built from: the shape of `DECLARED`, with the settled values. */
export type Config = Optionals<ReturnType<typeof settle>>;

/** Reads and validates the environment. Throws a ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present: Record<string, string> = {};
  for (const key of CONFIG_VARIABLES) {
    const value = env[key];
    if (value !== undefined && value !== "") present[key] = value;
  }
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(issue => {
      const name = String(issue.path[0] ?? "environment");
      const shown = present[name] !== undefined && !SECRETS.has(name) ? ` (got "${present[name]}")` : "";
      return `${name}${shown}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration: ${issues.join("; ")}`);
  }
  return settle(place(DECLARED, parsed.data));
}

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
