import type { SqlClient, SqlExecutor } from "../../adapters/sql/types";
import type { StoredTick } from "../../domain/symbol-actor";
import { column } from "./sql-rows";

/**
 * The record of the actors (`actor_state`, written in the results transaction) and what the
 * host checks of the stored results to resume an actor exactly.
 */

/** What resuming one actor exactly needs, stored with its results (table `actor_state`). */
export interface ActorRecord {
  symbol: string;
  partition: number;
  seq: number;
  lastOffset: number;
  /** The actor's snapshot, as JSON. */
  state: string;
}

/** Where an actor stands in its record, without its state. */
export type ActorPosition = Omit<ActorRecord, "state">;

interface ActorStateRow {
  symbol: string;
  partition: number;
  seq: string | number;
  last_offset: string | number;
}

const position = (r: ActorStateRow): ActorPosition => ({
  symbol: r.symbol,
  partition: r.partition,
  seq: Number(r.seq),
  lastOffset: Number(r.last_offset),
});

/** Where each symbol's actor stands in the record (no state), for the symbols that have one. */
export async function actorPositions(db: SqlClient, symbols: string[]): Promise<ActorPosition[]> {
  if (symbols.length === 0) return [];
  const { rows } = await db.query<ActorStateRow>(
    "SELECT symbol, partition, seq, last_offset FROM actor_state WHERE symbol = ANY($1::text[])",
    [symbols],
  );
  return rows.map(position);
}

/** The recorded states of `symbols`, for those that have one. */
export async function actorRecords(db: SqlClient, symbols: string[]): Promise<ActorRecord[]> {
  if (symbols.length === 0) return [];
  const { rows } = await db.query<ActorStateRow & { state: string }>(
    "SELECT symbol, partition, seq, last_offset, state FROM actor_state WHERE symbol = ANY($1::text[])",
    [symbols],
  );
  return rows.map(r => ({ ...position(r), state: r.state }));
}

/** The last stored seq of each symbol that has ticks (from its aggregates row: no scan of its ticks). */
export async function lastStoredSeqs(
  db: SqlClient,
  symbols: string[],
): Promise<{ symbol: string; seq: number }[]> {
  const { rows } = await db.query<{ symbol: string; seq: string | number }>(
    "SELECT symbol, last_seq AS seq FROM aggregated_metrics WHERE symbol = ANY($1::text[])",
    [symbols],
  );
  return rows.map(r => ({ symbol: r.symbol, seq: Number(r.seq) }));
}

/** Where a stored tick came from (its partition and offset); null when it is not stored. */
export async function tickOrigin(
  db: SqlClient,
  symbol: string,
  seq: number,
): Promise<{ partition: number; offset: number } | null> {
  const { rows } = await db.query<{ kafka_partition: number; kafka_offset: string | number }>(
    "SELECT kafka_partition, kafka_offset FROM ticks WHERE symbol = $1 AND seq = $2",
    [symbol, seq],
  );
  return rows.length === 0
    ? null
    : { partition: rows[0].kafka_partition, offset: Number(rows[0].kafka_offset) };
}

/** A symbol's stored ticks from seq 1 to `upToSeq`, in order: what its indicators are computed from. */
export async function storedTicks(db: SqlClient, symbol: string, upToSeq: number): Promise<StoredTick[]> {
  const { rows } = await db.query<StoredTick>(
    `SELECT seq, closing_price AS close, extract(epoch FROM "timestamp")::float8 AS "timestamp"
       FROM ticks WHERE symbol = $1 AND seq <= $2 ORDER BY seq`,
    [symbol, upToSeq],
  );
  return rows;
}

/** The touched actors' states, replacing older ones; never moves a symbol's record backwards. */
export async function upsertActorRecords(tx: SqlExecutor, records: ActorRecord[]): Promise<void> {
  await tx.query(
    `INSERT INTO actor_state (symbol, partition, seq, last_offset, state)
     SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::text[])
     ON CONFLICT (symbol) DO UPDATE
       SET partition = EXCLUDED.partition, seq = EXCLUDED.seq, last_offset = EXCLUDED.last_offset,
           state = EXCLUDED.state, updated_at = now()
       WHERE actor_state.partition <> EXCLUDED.partition OR actor_state.last_offset <= EXCLUDED.last_offset`,
    [
      column(records, r => r.symbol),
      column(records, r => r.partition),
      column(records, r => r.seq),
      column(records, r => r.lastOffset),
      column(records, r => r.state),
    ],
  );
}
