import { PGlite } from "@electric-sql/pglite";
import type { QueryResult, SqlClient, SqlExecutor } from "./types";

const INT8_OID = 20;

/**
 * Postgres compiled to WebAssembly, in this process: the embedded default when DATABASE_URL is
 * unset. It runs the same migrations and the same SQL as the server. `dataDir` "memory://"
 * keeps everything in memory.
 */
export class PgliteClient implements SqlClient {
  readonly kind = "pglite";

  private constructor(private readonly db: PGlite) {}

  static async open(dataDir: string): Promise<PgliteClient> {
    const db = await PGlite.create(dataDir, { parsers: { [INT8_OID]: (v: string) => Number(v) } });
    return new PgliteClient(db);
  }

  async query<T>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
    const r = await this.db.query<T>(text, params);
    return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
  }

  async exec(script: string): Promise<void> {
    await this.db.exec(script);
  }

  async copyFrom(table: string, columns: readonly string[], data: Buffer): Promise<void> {
    await this.transaction(tx => tx.copyFrom(table, columns, data));
  }

  transaction<R>(fn: (tx: SqlExecutor) => Promise<R>): Promise<R> {
    return this.db.transaction(async t =>
      fn({
        query: async <T>(text: string, params?: unknown[]) => {
          const r = await t.query<T>(text, params);
          return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
        },
        exec: async (script: string) => {
          await t.exec(script);
        },
        // PGlite reads COPY input from a Blob it exposes to the server as /dev/blob.
        copyFrom: async (table, columns, data) => {
          await t.query(`COPY ${table} (${columns.join(", ")}) FROM '/dev/blob' (FORMAT binary)`, [], {
            blob: new Blob([data]),
          });
        },
      }),
    );
  }

  async close(): Promise<void> {
    if (!this.db.closed) await this.db.close();
  }
}
