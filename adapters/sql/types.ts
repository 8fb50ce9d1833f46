/**
 * What services need from SQL: parameterised queries and transactions. Postgres or PGlite.
 *
 * Types only, so no test of its own: the clients' tests (pglite-client, postgres-client) hold
 * both to it.
 */
export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface SqlExecutor {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
  /**
   * Appends rows to `table` with COPY: `data` in COPY's binary format, with the columns in the
   * order of `columns`. A row that breaks a constraint fails the whole COPY (and its transaction),
   * with the server's SQLSTATE in the error's `code`.
   */
  copyFrom(table: string, columns: readonly string[], data: Buffer): Promise<void>;
}

export interface SqlClient extends SqlExecutor {
  readonly kind: "postgres" | "pglite";
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<R>(fn: (tx: SqlExecutor) => Promise<R>): Promise<R>;
  close(): Promise<void>;
}
