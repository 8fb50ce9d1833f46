import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import pg from "pg";
import { from as copyFromStdin } from "pg-copy-streams";
import { StockError, UnavailableError } from "../../domain/errors";
import type { QueryResult, SqlClient, SqlExecutor } from "./types";

const INT8_OID = 20;

/**
 * How long the server lets a session sit inside an open transaction with no statement running.
 * Our transactions send their statements back to back, so only a frozen or cut-off client ever
 * reaches this; its uncommitted rows would otherwise lock out the node that took over its
 * partitions (same (symbol, seq) keys) for as long as the server believes the connection alive.
 */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 10000;

/** Longer than any batch statement takes, even on a loaded machine. */
const QUERY_TIMEOUT_MS = 60000;

/**
 * SQLSTATE classes that mean "the server or the connection is not there right now":
 * 08 connection exception, 53 insufficient resources, 57P01..03 admin shutdown / crash / cannot
 * connect now, 25P03 the session was ended for idling in a transaction. Anything else is a bug or
 * bad data and must not be retried forever.
 */
function isConnectionFailure(err: unknown): boolean {
  // Our own errors, thrown inside a transaction (a fence), say themselves whether to retry.
  if (err instanceof StockError) return false;
  const code = (err as { code?: string }).code;
  if (typeof code !== "string") return true;
  return (
    code.startsWith("08") ||
    code.startsWith("53") ||
    code.startsWith("57P") ||
    code === "25P03" ||
    /^E[A-Z]+$/.test(code)
  );
}

function wrap(err: unknown): unknown {
  return isConnectionFailure(err)
    ? new UnavailableError(`Postgres: ${(err as Error).message}`, { cause: err })
    : err;
}

/** A pooled connection to a Postgres server. int8 columns come back as numbers (they hold counts and offsets). */
export class PostgresClient implements SqlClient {
  readonly kind = "postgres";
  private readonly pool: pg.Pool;

  constructor(connectionString: string, poolSize: number, onError?: (err: Error) => void) {
    this.pool = new pg.Pool({
      connectionString,
      max: poolSize,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30000,
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
      // A silently dead path (no RST, no FIN) would otherwise hold a partition loop until the
      // kernel gives up on the socket, many minutes later. The error carries no SQLSTATE, so it
      // counts as an outage and the batch is retried on a fresh connection.
      query_timeout: QUERY_TIMEOUT_MS,
      keepAlive: true,
      types: {
        getTypeParser: ((oid: number, format?: string) =>
          oid === INT8_OID
            ? (v: string) => Number(v)
            : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
      },
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on("error", err => onError?.(err));
  }

  async query<T>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
    try {
      const r = await this.pool.query(text, params);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    } catch (err) {
      throw wrap(err);
    }
  }

  async exec(script: string): Promise<void> {
    await this.query(script);
  }

  async copyFrom(table: string, columns: readonly string[], data: Buffer): Promise<void> {
    await this.transaction(tx => tx.copyFrom(table, columns, data));
  }

  async transaction<R>(fn: (tx: SqlExecutor) => Promise<R>): Promise<R> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw wrap(err);
    }
    const tx: SqlExecutor = {
      query: async <T>(text: string, params?: unknown[]) => {
        const r = await client.query(text, params);
        return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
      },
      exec: async (script: string) => {
        await client.query(script);
      },
      copyFrom: async (table, columns, data) => {
        await pipeline(
          Readable.from([data]),
          client.query(copyFromStdin(`COPY ${table} (${columns.join(", ")}) FROM STDIN (FORMAT binary)`)),
        );
      },
    };
    let broken = false;
    // The pool listens for errors of idle clients only. A checked-out client whose connection
    // drops between two statements (the server ended it, the network went) emits "error" with
    // no listener, which would crash the process; its next statement fails anyway.
    const onError = () => {
      broken = true;
    };
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      const result = await fn(tx);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      broken ||= isConnectionFailure(err);
      if (!broken) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
      }
      throw wrap(err);
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
