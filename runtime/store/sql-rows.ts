import type { SqlExecutor } from "../../adapters/sql/types";

/** Building blocks of the store's statements: columns as arrays, expanded with unnest. */

export function column<T, V>(rows: readonly T[], pick: (row: T) => V): V[] {
  const values = new Array<V>(rows.length);
  for (let i = 0; i < rows.length; i++) values[i] = pick(rows[i]);
  return values;
}

interface Column<T> {
  name: string;
  /** Postgres element type of the unnested array. */
  type: string;
  value: (row: T) => unknown;
  /** How the unnested value becomes the column's value (e.g. epoch seconds to timestamptz). */
  as?: (ref: string) => string;
}

/**
 * One idempotent multi-row INSERT: the rows' columns as arrays expanded with unnest, plus the
 * batch's partition where the table records it, skipping rows whose key exists. The statement
 * text is built once; with `returning`, it returns the conflict key of each row it inserted.
 */
export class UnnestInsert<T> {
  private readonly text: string;

  constructor(
    table: string,
    private readonly columns: Column<T>[],
    conflictKey: string,
    private readonly withPartition = false,
    returning = false,
  ) {
    const names = columns.map(c => c.name);
    const arrays = columns.map((c, i) => `$${i + 1}::${c.type}[]`);
    const values = columns.map(c => (c.as ? c.as(c.name) : c.name));
    if (withPartition) {
      names.push("kafka_partition");
      values.push(`$${columns.length + 1}::integer`);
    }
    this.text =
      `INSERT INTO ${table} (${names.join(", ")}) ` +
      `SELECT ${values.join(", ")} FROM unnest(${arrays.join(", ")}) AS i(${columns.map(c => c.name).join(", ")}) ` +
      `ON CONFLICT (${conflictKey}) DO NOTHING` +
      (returning ? ` RETURNING ${conflictKey}` : "");
  }

  async insert(tx: SqlExecutor, rows: readonly T[], partition: number): Promise<Record<string, unknown>[]> {
    if (rows.length === 0) return [];
    const params: unknown[] = this.columns.map(c => column(rows, c.value));
    if (this.withPartition) params.push(partition);
    return (await tx.query<Record<string, unknown>>(this.text, params)).rows;
  }
}

export const timestamp = (ref: string) => `to_timestamp(${ref})`;

/**
 * Postgres text cannot hold NUL characters: a message carrying one would fail its whole batch,
 * again on every retry, and stall the partition behind it. Stored as U+FFFD, as Node already
 * does with bytes that are not UTF-8.
 */
export function storableText(s: string | null): string | null {
  return s === null || !s.includes("\u0000") ? s : s.replaceAll("\u0000", "\ufffd");
}
