import type { SqlClient, SqlExecutor } from "../../adapters/sql/types";
import { FencedError } from "../../domain/errors";
import type { KeyedMark, Refusal } from "../apply-chunk";
import type { ActorRecord } from "./actor-records";
import { column } from "./sql-rows";

/**
 * A partition's ownership in Postgres (docs/architecture.md, "Fencing"): its claims
 * (`partition_epochs`), the fence every results transaction passes, and what a claim loads with
 * it: the idempotency marks (`idempotency_marks`) and the messages refused before (`dead_letters`).
 */

/** Who holds a partition's claim: the claim an older generation's was refused by. */
export interface ClaimHolder {
  owner: string | null;
  generation: number;
}

/** A batch's place in its partition's ownership: written only while `epoch` is the partition's epoch. */
export interface RecordFence {
  partition: number;
  epoch: number;
  /** The states of the actors the batch touched, after it. */
  actors: ActorRecord[];
  /** Idempotency marks set since the partition's last record (table `idempotency_marks`). */
  marks?: KeyedMark[];
  /** The offset of the batch's last message: every message up to it has its results in this write. */
  writtenOffset?: number;
  /**
   * The partition's written offset as this owner knows it (from its claim, then its own writes).
   * While its epoch holds, nobody else wrote, so it is exact; with it, the fence and the new
   * written offset take one statement.
   */
  writtenBefore?: number;
}

/**
 * Takes ownership of a partition for `owner` in consumer group generation `generation` (null: the
 * log has none): bumps its epoch and returns it, with how far the partition's results are written
 * (-1: unknown). A transaction of the previous owner still open holds the row lock, so the claim
 * waits for it to end; every later write of the previous owner is refused. Refused, changing
 * nothing, when the partition was last claimed in a later generation (the claimant froze past
 * the session timeout and the group moved on), unless `overrule` (the log has just confirmed
 * `generation` as the group's current one: the group was deleted and made anew).
 */
export async function claim(
  db: SqlClient,
  partition: number,
  owner: string,
  generation: number | null,
  overrule = false,
): Promise<{ epoch: number; writtenOffset: number } | { refused: ClaimHolder }> {
  const { rows } = await db.query<{ epoch: string | number; written_offset: string | number }>(
    `INSERT INTO partition_epochs (partition, epoch, owner, generation) VALUES ($1, 1, $2, $3)
       ON CONFLICT (partition) DO UPDATE
         SET epoch = partition_epochs.epoch + 1, owner = EXCLUDED.owner, claimed_at = now(),
             generation = EXCLUDED.generation
         WHERE $4 OR EXCLUDED.generation IS NULL OR partition_epochs.generation IS NULL
            OR partition_epochs.generation <= EXCLUDED.generation
       RETURNING epoch, written_offset`,
    [partition, owner, generation, overrule],
  );
  if (rows.length === 1)
    return { epoch: Number(rows[0].epoch), writtenOffset: Number(rows[0].written_offset) };
  const held = await db.query<{ owner: string | null; generation: string | number }>(
    "SELECT owner, generation FROM partition_epochs WHERE partition = $1",
    [partition],
  );
  if (held.rows.length === 0) return claim(db, partition, owner, generation, overrule);
  return { refused: { owner: held.rows[0].owner, generation: Number(held.rows[0].generation) } };
}

/** Every idempotency mark of a partition (each with its key). */
export async function idempotencyMarks(db: SqlClient, partition: number): Promise<KeyedMark[]> {
  const { rows } = await db.query<{
    key: string;
    use_id: string | number;
    hi: number;
    hi_offset: string | number;
    at: number;
  }>(
    `SELECT key, use_id, hi, hi_offset, (extract(epoch FROM seen_at) * 1000)::float8 AS at
       FROM idempotency_marks WHERE partition = $1`,
    [partition],
  );
  return rows.map(r => ({
    key: r.key,
    use: Number(r.use_id),
    hi: r.hi,
    hiOffset: Number(r.hi_offset),
    at: r.at,
  }));
}

/** Forgets a partition's idempotency marks set by messages the log accepted before `beforeMs`; returns how many. */
export async function pruneIdempotencyMarks(
  db: SqlClient,
  partition: number,
  beforeMs: number,
): Promise<number> {
  const { rowCount } = await db.query(
    "DELETE FROM idempotency_marks WHERE partition = $1 AND seen_at < to_timestamp($2::float8 / 1000)",
    [partition, beforeMs],
  );
  return rowCount;
}

/**
 * The messages of a partition at or above `fromOffset` that were dead-lettered unapplied for
 * another reason than being invalid: a replay must skip them again, as the first run did.
 */
export async function refusedMessages(
  db: SqlClient,
  partition: number,
  fromOffset: number,
): Promise<Map<number, Refusal>> {
  const { rows } = await db.query<{
    kafka_offset: string | number;
    kind: Refusal["kind"];
    reason: string;
  }>(
    `SELECT kafka_offset, kind, reason FROM dead_letters
       WHERE kafka_partition = $1 AND kafka_offset >= $2 AND kind <> 'invalid'`,
    [partition, fromOffset],
  );
  return new Map(rows.map(r => [Number(r.kafka_offset), { kind: r.kind, reason: r.reason }]));
}

/**
 * Several partitions' fences in one statement (a combined transaction): every one must hold, or
 * the transaction is refused and each batch is written alone, to meet its own error.
 */
export async function fenceMany(tx: SqlExecutor, fences: readonly RecordFence[]): Promise<void> {
  const { rows: held } = await tx.query<{ partition: number }>(
    `UPDATE partition_epochs AS e SET written_offset = GREATEST(e.written_offset, f.w)
     FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS f(p, ep, w)
     WHERE e.partition = f.p AND e.epoch = f.ep
     RETURNING e.partition`,
    [column(fences, f => f.partition), column(fences, f => f.epoch), column(fences, f => f.writtenOffset)],
  );
  if (held.length !== new Set(fences.map(f => f.partition)).size)
    throw new Error("a partition's epoch moved: its batch is written alone");
}

/**
 * Refuses the transaction unless the fence's epoch is still the partition's, moves the partition's
 * written offset up to `fence.writtenOffset`, and returns the written offset before. With
 * `writtenBefore` known, this is one UPDATE, whose row lock holds off claims until the commit.
 */
export async function fence(tx: SqlExecutor, f: RecordFence): Promise<number> {
  if (f.writtenBefore !== undefined && f.writtenOffset !== undefined) {
    const { rowCount } = await tx.query(
      "UPDATE partition_epochs SET written_offset = GREATEST(written_offset, $3) WHERE partition = $1 AND epoch = $2",
      [f.partition, f.epoch, f.writtenOffset],
    );
    if (rowCount === 1) return f.writtenBefore;
  }
  const written = await checkEpoch(tx, f);
  if (f.writtenOffset !== undefined && f.writtenOffset > written) {
    await tx.query("UPDATE partition_epochs SET written_offset = $2 WHERE partition = $1", [
      f.partition,
      f.writtenOffset,
    ]);
  }
  return written;
}

/**
 * Refuses the transaction unless `fence.epoch` is still the partition's epoch, and returns the
 * partition's written offset. The row lock makes a concurrent claim wait until this transaction
 * ends, so no claim slips between the check and the commit. A partition nobody claimed yet (the
 * row was never written, or removed by hand) is recorded with this epoch.
 */
async function checkEpoch(tx: SqlExecutor, fence: RecordFence): Promise<number> {
  const { rows } = await tx.query<{ epoch: string | number; written_offset: string | number }>(
    "SELECT epoch, written_offset FROM partition_epochs WHERE partition = $1 FOR UPDATE",
    [fence.partition],
  );
  if (rows.length === 0) {
    await tx.query(
      "INSERT INTO partition_epochs (partition, epoch) VALUES ($1, $2) ON CONFLICT (partition) DO NOTHING",
      [fence.partition, fence.epoch],
    );
    return checkEpoch(tx, fence);
  }
  const current = Number(rows[0].epoch);
  if (current !== fence.epoch) throw new FencedError(fence.partition, fence.epoch, current);
  return Number(rows[0].written_offset);
}

/**
 * The partition's marks as its owner holds them now. No condition on the stored row: the owner's
 * marks are the partition's (loaded at its claim, changed by every message since, written under
 * its epoch), and a new use of a key must replace the old use's mark whatever its index.
 */
export async function upsertMarks(tx: SqlExecutor, partition: number, marks: KeyedMark[]): Promise<void> {
  await tx.query(
    `INSERT INTO idempotency_marks (partition, key, use_id, hi, hi_offset, seen_at)
     SELECT $1, k, u, h, o, to_timestamp(a / 1000.0)
     FROM unnest($2::text[], $3::bigint[], $4::int[], $5::bigint[], $6::float8[]) AS m(k, u, h, o, a)
     ON CONFLICT (partition, key) DO UPDATE
       SET use_id = EXCLUDED.use_id, hi = EXCLUDED.hi, hi_offset = EXCLUDED.hi_offset, seen_at = EXCLUDED.seen_at`,
    [
      partition,
      column(marks, m => m.key),
      column(marks, m => m.use),
      column(marks, m => m.hi),
      column(marks, m => m.hiOffset),
      column(marks, m => m.at),
    ],
  );
}
