import { migrate } from "../../../../adapters/sql/migrate";
import { PostgresClient } from "../../../../adapters/sql/postgres-client";
import type { SqlClient } from "../../../../adapters/sql/types";
import { freshDatabase } from "../../../support/stack";

/**
 * Fresh, migrated databases on the local Postgres for one test file, closed and dropped after
 * it. Call at the top of the file; each call of the function it returns makes another database.
 * A server that cannot be reached fails the test: the integration tier never skips.
 */
export function migratedDatabases(): () => Promise<{ db: PostgresClient; url: string }> {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }, 60000);
  return async () => {
    const fresh = await freshDatabase();
    cleanups.push(fresh.drop);
    const db = new PostgresClient(fresh.url, 4);
    cleanups.push(() => db.close());
    await migrate(db);
    return { db, url: fresh.url };
  };
}

/** Each results table's key, to read its rows in one order. */
const TABLE_KEYS: Record<string, string> = {
  ticks: "symbol, seq",
  minute_buckets: "symbol, minute",
  signals: "symbol, seq",
  aggregated_metrics: "symbol",
  order_book: "symbol, side_seq",
  news_sentiment: "symbol, side_seq",
  market_data: "symbol, side_seq",
  economic_indicators: "kafka_partition, kafka_offset",
  dead_letters: "kafka_partition, kafka_offset",
  actor_state: "symbol",
  partition_epochs: "partition",
  idempotency_marks: "partition, key",
};

/** When a row was written: differs between two databases that hold the same results. */
/**
 * What says when and by which transaction a row was written, not what it holds: the times, and a
 * signal's place in the delivery order (its identity and inserting transaction, migration 008).
 */
const WRITE_TIMES = new Set(["created_at", "updated_at", "claimed_at", "id", "tx_id"]);

/** Every row of every table the results transaction writes, but when and by which transaction. */
export async function storedRows(db: SqlClient): Promise<Record<string, Record<string, unknown>[]>> {
  const out: Record<string, Record<string, unknown>[]> = {};
  for (const [table, key] of Object.entries(TABLE_KEYS)) {
    const { rows } = await db.query<Record<string, unknown>>(`SELECT * FROM ${table} ORDER BY ${key}`);
    out[table] = rows.map(r => Object.fromEntries(Object.entries(r).filter(([c]) => !WRITE_TIMES.has(c))));
  }
  return out;
}
