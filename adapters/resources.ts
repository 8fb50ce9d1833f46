import path from "node:path";
import type { Config } from "../lib/config";
import type { Logger } from "../lib/logger";
import { DEGRADED, repeatFilter, STARTING } from "../lib/waiting";
import { EmbeddedLog } from "./log/embedded-log";
import { KafkaLog } from "./log/kafka-log";
import type { MessageLog } from "./log/types";
import { MemorySnapshotStore } from "./snapshots/memory-snapshots";
import { RedisSnapshotStore } from "./snapshots/redis-snapshots";
import type { SnapshotStore } from "./snapshots/types";
import { migrate } from "./sql/migrate";
import { PgliteClient } from "./sql/pglite-client";
import { PostgresClient } from "./sql/postgres-client";
import type { SqlClient } from "./sql/types";

/** DATA_DIR=memory keeps the embedded log and PGlite in memory only (tests, throwaway demos). */
export const IN_MEMORY = "memory";

/**
 * Services whose wait for a dependency at start-up degrades a node instead of failing its
 * readiness: the query service needs only Postgres, whose absence the REST API answers with 503.
 */
const DEGRADED_AT_START = new Set(["query"]);

/**
 * The adapters of one process, each chosen by its own variable (unset means embedded), created
 * on first use and shared by every service of the process: in embedded mode ingest and actors
 * must see the same in-process log, and PGlite allows one connection per data directory.
 * Services retain the resources when they start and release them when they stop; the last
 * release closes everything.
 */
export class Resources {
  private logPromise: Promise<MessageLog> | null = null;
  private sqlPromise: Promise<SqlClient> | null = null;
  private snapshotStore: SnapshotStore | null = null;
  private refs = 0;
  /** Services still starting, and what each one waits for. */
  private readonly starting = new Map<string, string>();
  /** The actors' stalled partitions, as readiness checks (`partition.<n>`). */
  private stalls: (() => Record<string, string>) | null = null;
  /** The same connection error is logged at most once a minute. */
  private readonly freshLine = repeatFilter(60000);

  constructor(
    readonly config: Config,
    private readonly logger: Logger,
  ) {}

  get embeddedDataDir(): string | null {
    return path.basename(this.config.dataDir) === IN_MEMORY ? null : this.config.dataDir;
  }

  log(): Promise<MessageLog> {
    if (!this.logPromise) {
      const { kafka } = this.config;
      this.logPromise = (async () => {
        if (kafka.brokers) {
          return new KafkaLog({
            brokers: kafka.brokers,
            clientId: kafka.clientId,
            topic: kafka.topic,
            partitions: kafka.partitions,
            sessionTimeoutMs: kafka.sessionTimeoutMs,
            log: (level, message, extra) => this.logger[level](message, extra),
          });
        }
        const dir = this.embeddedDataDir;
        this.logger.info(
          `embedded log: ${kafka.partitions} partitions, ${dir ? `kept in ${dir}/log` : "in memory"}`,
        );
        return new EmbeddedLog(kafka.topic, kafka.partitions, dir ? path.join(dir, "log") : undefined, {
          logger: this.logger,
        });
      })();
    }
    return this.logPromise;
  }

  /** The SQL client, with every migration applied. */
  sql(): Promise<SqlClient> {
    if (!this.sqlPromise) {
      this.sqlPromise = (async () => {
        let client: SqlClient;
        if (this.config.databaseUrl) {
          client = new PostgresClient(this.config.databaseUrl, this.config.databasePoolSize, err => {
            const line = `Postgres connection error: ${err.message}`;
            if (this.freshLine(line)) this.logger.warn(line);
          });
        } else {
          const dir = this.embeddedDataDir;
          this.logger.info(`embedded PGlite database ${dir ? `in ${dir}/pglite` : "in memory"}`);
          client = await PgliteClient.open(dir ? path.join(dir, "pglite") : "memory://");
        }
        const applied = await migrate(client);
        if (applied.length > 0) this.logger.info(`applied migrations ${applied.join(", ")}`);
        return client;
      })();
      // A failed start (database down) must be retried by the next caller, not cached.
      this.sqlPromise.catch(() => (this.sqlPromise = null));
    }
    return this.sqlPromise;
  }

  snapshots(): SnapshotStore {
    if (!this.snapshotStore) {
      const { redisUrl, kafka } = this.config;
      this.snapshotStore = redisUrl
        ? new RedisSnapshotStore(redisUrl, `${kafka.groupId}:${kafka.topic}`, err => {
            // ioredis reports every failed reconnection; the actors log the outage itself.
            const line = `Redis connection error: ${err.message}`;
            if (this.freshLine(line)) this.logger.warn(line);
          })
        : new MemorySnapshotStore();
    }
    return this.snapshotStore;
  }

  /**
   * A service of this process reports its start-up: what it is waiting for, or null once it
   * runs. Services start in the background (a dependency may be away for a long time), so
   * readiness asks here as well as the dependencies themselves.
   */
  reportStartup(service: string, waitingFor: string | null): void {
    if (waitingFor === null) this.starting.delete(service);
    else this.starting.set(service, waitingFor);
  }

  /** The actors service reports its stalled partitions through `report` (null when it stops). */
  reportStalls(report: (() => Record<string, string>) | null): void {
    this.stalls = report;
  }

  /**
   * Asks each dependency that `services` use for a sign of life: "ok", or what went wrong; for
   * a dependency the node's traffic can do without, "degraded: " and what went wrong.
   * A dependency that was never opened is opened here, so readiness reflects reality. A
   * service of `services` that has not finished starting adds `start.<service>`: what it waits for.
   *
   * Readiness by role: what fails a check is what the node's HTTP traffic cannot do without, the
   * ingest path (the log) and the start-up of ingest and actors. The database is degraded, not
   * failed: while Postgres is away ingest goes on (only requests with an Idempotency-Key get 503),
   * the actors' partitions wait (each says so under `partition.<n>`), and the REST API's reads
   * answer 503 POSTGRES_UNAVAILABLE; taking the node out of its Service would stop ingest too. For
   * the same reason the query service waiting for Postgres at start-up is degraded once a first
   * attempt failed (before that, the node is still starting). The snapshot cache (Redis) is
   * degraded too: the actors go on from Postgres, with slower activations.
   */
  async check(services: readonly string[]): Promise<Record<string, string>> {
    const uses = (...names: string[]) => names.some(n => services.includes(n));
    const probes: Record<string, () => Promise<unknown>> = {};
    if (uses("ingest", "actors")) probes.log = async () => (await this.log()).partitionCount();
    if (uses("actors", "query")) probes.database = async () => (await this.sql()).query("SELECT 1");
    const optional = new Set(["database", "snapshots"]);
    if (uses("actors")) probes.snapshots = () => this.snapshots().ping();
    const results: Record<string, string> = {};
    for (const service of services) {
      const waiting = this.starting.get(service);
      if (waiting === undefined) continue;
      results[`start.${service}`] =
        DEGRADED_AT_START.has(service) && waiting !== STARTING ? `${DEGRADED}${waiting}` : waiting;
    }
    // A stalled partition is said, not counted against readiness: the node's other work (ingest,
    // queries, its other partitions) goes on, and the dependency's own check says what is down.
    if (uses("actors") && this.stalls)
      for (const [name, why] of Object.entries(this.stalls())) results[name] = `${DEGRADED}${why}`;
    await Promise.all(
      Object.entries(probes).map(async ([name, probe]) => {
        try {
          await withTimeout(probe(), 2000, `${name} did not answer within 2 s`);
          results[name] = "ok";
        } catch (err) {
          const message = (err as Error).message || String(err);
          results[name] = optional.has(name) ? `${DEGRADED}${message}` : message;
        }
      }),
    );
    return results;
  }

  retain(): void {
    this.refs += 1;
  }

  async release(): Promise<void> {
    this.refs -= 1;
    if (this.refs > 0) return;
    const closing: Promise<unknown>[] = [];
    if (this.logPromise) closing.push(this.logPromise.then(l => l.close()));
    if (this.sqlPromise) closing.push(this.sqlPromise.then(s => s.close()));
    if (this.snapshotStore) closing.push(this.snapshotStore.close());
    this.logPromise = this.sqlPromise = null;
    this.snapshotStore = null;
    await Promise.allSettled(closing);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}
