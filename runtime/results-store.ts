import type { SqlClient, SqlExecutor } from "../adapters/sql/types";
import type { ReportInput } from "../domain/backtest";
import type {
  AggregateRow,
  BatchOutputs,
  TickRow,
  DeadLetterRow,
  EconomicRow,
  MarketDataRow,
  OrderBookRow,
  SentimentRow,
} from "./batch-outputs";
import type { RecomputedTick } from "../domain/recompute";
import { FencedError } from "../domain/errors";
import type { Signal, StoredTick } from "../domain/symbol-actor";
import type { KeyedMark, Refusal } from "./apply-chunk";

/** Who holds a partition's claim: the claim an older generation's was refused by. */
export interface ClaimHolder {
  owner: string | null;
  generation: number;
}

/** What resuming one actor exactly needs, stored with its results (table `actor_state`). */
export interface ActorRecord {
  symbol: string;
  partition: number;
  seq: number;
  lastOffset: number;
  /** The actor's snapshot, as JSON. */
  state: string;
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
 * The one home of every SQL statement on the results tables (ticks, minute_buckets, signals,
 * aggregated_metrics, side data, economic_indicators, dead_letters): the engine's writes, the
 * checks the actor host makes, and the reads the query service serves. A column change is one
 * edit here (and a migration).
 *
 * Writes are idempotent: `(symbol, seq)` keys with ON CONFLICT DO NOTHING, aggregates that only
 * move forward in tick_count, and minute buckets fed only by the ticks the same statement
 * inserted. A replayed batch therefore changes nothing.
 */
export class ResultsStore {
  constructor(private readonly db: SqlClient) {}

  /**
   * Writes one batch of actor outputs in one transaction, one statement per table. Returns the
   * signals this write inserted: a replayed batch's signals are stored already, and must not be
   * notified twice.
   *
   * With a fence, the transaction also moves the partition's written offset to
   * `record.writtenOffset`. Ticks above the offset found there are new, and are appended with
   * COPY; a batch reaching back to it or below (a replay) takes the conflict-checking insert. If
   * the append meets a stored row anyway (results older than written offsets), the batch is
   * written again with the check.
   */
  async write(out: BatchOutputs, record?: RecordFence): Promise<{ newSignals: Signal[] }> {
    // A large batch fills a transaction by itself; it goes at once, beside the others.
    if (!combinable(out, record) || out.ticks.length >= COMBINE_MAX_TICKS / 2)
      return this.writeAlone(out, record);
    return new Promise((resolve, reject) => {
      this.queued.push({ out, record, resolve, reject });
      this.startCombined();
    });
  }

  private async writeAlone(out: BatchOutputs, record?: RecordFence): Promise<{ newSignals: Signal[] }> {
    try {
      return await this.db.transaction(tx => writeBatch(tx, out, record, "append"));
    } catch (err) {
      if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
      this.checkedRewrites += 1;
      return this.db.transaction(tx => writeBatch(tx, out, record, "check"));
    }
  }

  /**
   * Group commit: the new results of every partition that asked while the previous combined
   * transaction ran (or in the same turn of the event loop) go out in one transaction, one
   * statement per table for all of them. Per-batch round trips and commits are what a small
   * batch costs most; this spends them once per turn instead of once per partition.
   */
  private startCombined(): void {
    if (this.combineScheduled || this.combinedInFlight >= MAX_COMBINED_IN_FLIGHT || this.queued.length === 0)
      return;
    this.combineScheduled = true;
    setImmediate(() => {
      this.combineScheduled = false;
      if (this.combinedInFlight >= MAX_COMBINED_IN_FLIGHT) return;
      let ticks = 0;
      let take = 0;
      while (
        take < this.queued.length &&
        (take === 0 || ticks + this.queued[take].out.ticks.length <= COMBINE_MAX_TICKS)
      )
        ticks += this.queued[take++].out.ticks.length;
      const batch = this.queued.splice(0, take);
      if (batch.length === 0) return;
      this.combinedInFlight += 1;
      void this.writeCombined(batch).finally(() => {
        this.combinedInFlight -= 1;
        this.startCombined();
      });
      this.startCombined();
    });
  }

  private async writeCombined(batch: QueuedWrite[]): Promise<void> {
    if (batch.length > 1) {
      try {
        const results = await this.db.transaction(tx => writeMany(tx, batch));
        this.combinedWrites += 1;
        batch.forEach((w, i) => w.resolve(results[i]));
        return;
      } catch {
        // A fence, a stored row, an outage: each batch again on its own, as if never combined,
        // so that each meets its own error (and its partition's loop its own retry).
      }
    }
    await Promise.all(batch.map(w => this.writeAlone(w.out, w.record).then(w.resolve, w.reject)));
  }

  private readonly queued: QueuedWrite[] = [];
  private combineScheduled = false;
  private combinedInFlight = 0;
  /** Transactions that wrote several partitions' batches at once. */
  combinedWrites = 0;

  /** Batches whose append met a stored row and were written again with the conflict check. */
  checkedRewrites = 0;

  /**
   * Takes ownership of a partition for `owner`: bumps its epoch and returns it. A transaction of
   * the previous owner still open holds the row lock, so the claim waits for it to end; every
   * later write of the previous owner is refused (`write` with its old epoch).
   */
  async claimPartition(partition: number, owner: string): Promise<number> {
    const claim = await this.claim(partition, owner, null);
    if ("refused" in claim) throw new Error(`partition ${partition}: claim refused`);
    return claim.epoch;
  }

  /**
   * `claimPartition` in consumer group generation `generation` (null: the log has none), also
   * returning how far the partition's results are written (-1: unknown). Refused, changing
   * nothing, when the partition was last claimed in a later generation (the claimant froze past
   * the session timeout and the group moved on), unless `overrule` (the log has just confirmed
   * `generation` as the group's current one: the group was deleted and made anew).
   */
  async claim(
    partition: number,
    owner: string,
    generation: number | null,
    overrule = false,
  ): Promise<{ epoch: number; writtenOffset: number } | { refused: ClaimHolder }> {
    const { rows } = await this.db.query<{ epoch: string | number; written_offset: string | number }>(
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
    const held = await this.db.query<{ owner: string | null; generation: string | number }>(
      "SELECT owner, generation FROM partition_epochs WHERE partition = $1",
      [partition],
    );
    if (held.rows.length === 0) return this.claim(partition, owner, generation, overrule);
    return { refused: { owner: held.rows[0].owner, generation: Number(held.rows[0].generation) } };
  }

  /** Every idempotency mark of a partition (each with its key). */
  async idempotencyMarks(partition: number): Promise<KeyedMark[]> {
    const { rows } = await this.db.query<{
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
  async pruneIdempotencyMarks(partition: number, beforeMs: number): Promise<number> {
    const { rowCount } = await this.db.query(
      "DELETE FROM idempotency_marks WHERE partition = $1 AND seen_at < to_timestamp($2::float8 / 1000)",
      [partition, beforeMs],
    );
    return rowCount;
  }

  /**
   * The messages of a partition at or above `fromOffset` that were dead-lettered unapplied for
   * another reason than being invalid: a replay must skip them again, as the first run did.
   */
  async refusedMessages(partition: number, fromOffset: number): Promise<Map<number, Refusal>> {
    const { rows } = await this.db.query<{
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

  /** Where each symbol's actor stands in the record (no state), for the symbols that have one. */
  async actorPositions(symbols: string[]): Promise<Omit<ActorRecord, "state">[]> {
    return this.readActorState(symbols, false);
  }

  /** The recorded states of `symbols`, for those that have one. */
  async actorRecords(symbols: string[]): Promise<ActorRecord[]> {
    return this.readActorState(symbols, true);
  }

  private async readActorState(symbols: string[], withState: false): Promise<Omit<ActorRecord, "state">[]>;
  private async readActorState(symbols: string[], withState: true): Promise<ActorRecord[]>;
  private async readActorState(symbols: string[], withState: boolean): Promise<Omit<ActorRecord, "state">[]> {
    if (symbols.length === 0) return [];
    const { rows } = await this.db.query<{
      symbol: string;
      partition: number;
      seq: string | number;
      last_offset: string | number;
      state?: string;
    }>(
      `SELECT symbol, partition, seq, last_offset${withState ? ", state" : ""}
       FROM actor_state WHERE symbol = ANY($1::text[])`,
      [symbols],
    );
    return rows.map(r => ({
      symbol: r.symbol,
      partition: r.partition,
      seq: Number(r.seq),
      lastOffset: Number(r.last_offset),
      ...(withState ? { state: r.state! } : {}),
    }));
  }

  /** The last stored seq of each symbol that has ticks (from its aggregates row: no scan of its ticks). */
  async lastStoredSeqs(symbols: string[]): Promise<{ symbol: string; seq: number }[]> {
    const { rows } = await this.db.query<{ symbol: string; seq: string | number }>(
      "SELECT symbol, last_seq AS seq FROM aggregated_metrics WHERE symbol = ANY($1::text[])",
      [symbols],
    );
    return rows.map(r => ({ symbol: r.symbol, seq: Number(r.seq) }));
  }

  /** Where a stored tick came from (its partition and offset); null when it is not stored. */
  async tickOrigin(symbol: string, seq: number): Promise<{ partition: number; offset: number } | null> {
    const { rows } = await this.db.query<{ kafka_partition: number; kafka_offset: string | number }>(
      "SELECT kafka_partition, kafka_offset FROM ticks WHERE symbol = $1 AND seq = $2",
      [symbol, seq],
    );
    return rows.length === 0
      ? null
      : { partition: rows[0].kafka_partition, offset: Number(rows[0].kafka_offset) };
  }

  /** A symbol's stored ticks from seq 1 to `upToSeq`, in order: what its indicators are computed from. */
  async storedTicks(symbol: string, upToSeq: number): Promise<StoredTick[]> {
    const { rows } = await this.db.query<StoredTick>(
      `SELECT seq, closing_price AS close, extract(epoch FROM "timestamp")::float8 AS "timestamp"
       FROM ticks WHERE symbol = $1 AND seq <= $2 ORDER BY seq`,
      [symbol, upToSeq],
    );
    return rows;
  }

  /** Every symbol with stored ticks. */
  async symbolsWithTicks(): Promise<string[]> {
    const { rows } = await this.db.query<{ symbol: string }>(
      "SELECT symbol FROM aggregated_metrics ORDER BY symbol",
    );
    return rows.map(r => r.symbol);
  }

  /**
   * Rewrites a symbol's stored indicators and signals with what `recompute` makes of its stored
   * ticks, in one transaction. The symbol's aggregates row is locked first, so an actor writing
   * the symbol's next batch waits for the rewrite and the ticks read here are all there are.
   */
  async rewriteIndicators(
    symbol: string,
    recompute: (ticks: StoredTick[]) => { ticks: RecomputedTick[]; signals: Signal[] },
  ): Promise<{ ticks: number; signals: number }> {
    return this.db.transaction(async tx => {
      await tx.query("SELECT 1 FROM aggregated_metrics WHERE symbol = $1 FOR UPDATE", [symbol]);
      const { rows } = await tx.query<StoredTick>(
        `SELECT seq, closing_price AS close, extract(epoch FROM "timestamp")::float8 AS "timestamp"
         FROM ticks WHERE symbol = $1 ORDER BY seq`,
        [symbol],
      );
      const result = recompute(rows);
      if (result.ticks.length > 0) {
        const t = result.ticks;
        await tx.query(
          `UPDATE ticks SET moving_average = i.sma, exponential_moving_average = i.ema, relative_strength_index = i.rsi
           FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::float8[]) AS i(seq, sma, ema, rsi)
           WHERE ticks.symbol = $1 AND ticks.seq = i.seq`,
          [
            symbol,
            column(t, r => r.seq),
            column(t, r => r.sma),
            column(t, r => r.ema),
            column(t, r => r.rsi),
          ],
        );
      }
      await tx.query("DELETE FROM signals WHERE symbol = $1", [symbol]);
      await SIGNALS.insert(tx, result.signals, 0);
      return { ticks: result.ticks.length, signals: result.signals.length };
    });
  }

  /**
   * Every symbol seen, with its running aggregates and its latest price and indicators. Volume
   * totals are read as doubles here and below: the columns are numeric (exact, migrations/004),
   * and the API answers them as the JSON numbers it gave when they were bigint, on Postgres and
   * PGlite alike.
   */
  async latestPerSymbol(): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT a.symbol, a.tick_count, a.last_seq AS seq, a.last_timestamp, t.closing_price AS close,
              t.moving_average AS sma, t.exponential_moving_average AS ema, t.relative_strength_index AS rsi,
              a.total_volume::float8 AS total_volume, a.average_volume, a.average_opening_price, a.average_closing_price,
              a.lowest_price, a.highest_price, a.first_timestamp, a.updated_at
       FROM aggregated_metrics a
       LEFT JOIN ticks t ON t.symbol = a.symbol AND t.seq = a.last_seq
       ORDER BY a.symbol`,
    );
    return rows;
  }

  /** Prices and indicators of one symbol, oldest first: the last `limit` ticks within the range. */
  async history(q: {
    symbol: string;
    from?: number;
    to?: number;
    limit: number;
  }): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT * FROM (
         SELECT seq, "timestamp", opening_price, closing_price, high, low, volume,
                moving_average, exponential_moving_average, relative_strength_index
         FROM ticks
         WHERE symbol = $1
           AND ($2::float8 IS NULL OR "timestamp" >= to_timestamp($2))
           AND ($3::float8 IS NULL OR "timestamp" < to_timestamp($3))
         ORDER BY seq DESC
         LIMIT $4
       ) recent ORDER BY seq`,
      [q.symbol, q.from ?? null, q.to ?? null, q.limit],
    );
    return rows;
  }

  /** Buy/sell signals, newest first. */
  async signals(q: {
    symbol?: string;
    from?: number;
    to?: number;
    limit: number;
  }): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT symbol, side, rsi, price, "timestamp", seq, created_at
       FROM signals
       WHERE ($1::text IS NULL OR symbol = $1)
         AND ($2::float8 IS NULL OR "timestamp" >= to_timestamp($2))
         AND ($3::float8 IS NULL OR "timestamp" < to_timestamp($3))
       ORDER BY "timestamp" DESC, symbol, seq DESC
       LIMIT $4`,
      [q.symbol ?? null, q.from ?? null, q.to ?? null, q.limit],
    );
    return rows;
  }

  /** Dead letters, newest first: where each message was, why it was not applied, and what it held. */
  async deadLetters(q: {
    partition?: number;
    kind?: string;
    limit: number;
  }): Promise<Record<string, unknown>[]> {
    const { rows } = await this.db.query(
      `SELECT kafka_partition AS partition, kafka_offset AS offset, kind, reason, message_key AS key, payload, created_at
       FROM dead_letters
       WHERE ($1::int IS NULL OR kafka_partition = $1) AND ($2::text IS NULL OR kind = $2)
       ORDER BY created_at DESC, kafka_partition, kafka_offset DESC
       LIMIT $3`,
      [q.partition ?? null, q.kind ?? null, q.limit],
    );
    return rows;
  }

  /** A symbol's running aggregates over all its ticks; null when the symbol is unknown. */
  async aggregates(symbol: string): Promise<Record<string, unknown> | null> {
    const { rows } = await this.db.query(
      `SELECT symbol, tick_count, total_volume::float8 AS total_volume, average_volume, average_opening_price,
              average_closing_price, lowest_price, highest_price, first_timestamp, last_timestamp
       FROM aggregated_metrics WHERE symbol = $1`,
      [symbol],
    );
    return rows[0] ?? null;
  }

  /** Aggregates over the whole minutes from `from` (inclusive) to `to` (exclusive), from the minute buckets. */
  async aggregatesOverMinutes(
    symbol: string,
    from: number | null,
    to: number | null,
  ): Promise<Record<string, unknown>> {
    const { rows } = await this.db.query(
      `SELECT $1::text AS symbol,
              coalesce(sum(tick_count), 0)::bigint AS tick_count,
              coalesce(sum(volume), 0)::float8 AS total_volume,
              sum(volume)::float8 / nullif(sum(tick_count), 0) AS average_volume,
              sum(sum_open) / nullif(sum(tick_count), 0) AS average_opening_price,
              sum(sum_close) / nullif(sum(tick_count), 0) AS average_closing_price,
              min(low) AS lowest_price,
              max(high) AS highest_price,
              min(minute) AS first_minute,
              max(minute) AS last_minute
       FROM minute_buckets
       WHERE symbol = $1
         AND ($2::float8 IS NULL OR minute >= to_timestamp($2))
         AND ($3::float8 IS NULL OR minute < to_timestamp($3))`,
      [symbol, from, to],
    );
    return rows[0];
  }

  /**
   * What a symbol's replay report needs: its aggregates, first and last close, and every
   * signal in order. Null when the symbol is unknown. Reads the aggregates row and two ticks by
   * key, never a scan of the symbol's ticks.
   */
  async reportInput(symbol: string): Promise<ReportInput | null> {
    const { rows } = await this.db.query<{
      tick_count: number;
      first_ts: number | null;
      last_ts: number | null;
      lowest_price: number | null;
      highest_price: number | null;
      first_close: number | null;
      last_close: number | null;
    }>(
      `SELECT a.tick_count,
              extract(epoch FROM a.first_timestamp)::float8 AS first_ts,
              extract(epoch FROM a.last_timestamp)::float8 AS last_ts,
              a.lowest_price, a.highest_price,
              (SELECT closing_price FROM ticks WHERE symbol = a.symbol AND seq = 1) AS first_close,
              (SELECT closing_price FROM ticks WHERE symbol = a.symbol AND seq = a.last_seq) AS last_close
       FROM aggregated_metrics a WHERE a.symbol = $1`,
      [symbol],
    );
    if (rows.length === 0) return null;
    const a = rows[0];
    const signals = await this.db.query<{ seq: number; side: Signal["side"]; price: number; ts: number }>(
      `SELECT seq, side, price, extract(epoch FROM "timestamp")::float8 AS ts
       FROM signals WHERE symbol = $1 ORDER BY seq`,
      [symbol],
    );
    return {
      symbol,
      tickCount: a.tick_count,
      firstTimestamp: a.first_ts,
      lastTimestamp: a.last_ts,
      lowestPrice: a.lowest_price,
      highestPrice: a.highest_price,
      firstClose: a.first_close,
      lastClose: a.last_close,
      signals: signals.rows.map(s => ({ seq: s.seq, side: s.side, price: s.price, timestamp: s.ts })),
    };
  }
}

const UNIQUE_VIOLATION = "23505";

/** Combined transactions at once: several, so that Postgres works on more than one core. */
const MAX_COMBINED_IN_FLIGHT = 4;
/** The most ticks one combined transaction takes: about what one partition's full chunk holds. */
const COMBINE_MAX_TICKS = 2000;

interface QueuedWrite {
  out: BatchOutputs;
  record?: RecordFence;
  resolve: (r: { newSignals: Signal[] }) => void;
  reject: (err: unknown) => void;
}

/**
 * A batch another partition's may share a transaction with: fenced, its owner knows the written
 * offset, and its ticks are all above it (appended). Replays, records without results and
 * unfenced writes go alone.
 */
function combinable(out: BatchOutputs, record: RecordFence | undefined): record is RecordFence {
  return (
    record !== undefined &&
    record.writtenBefore !== undefined &&
    record.writtenOffset !== undefined &&
    (out.ticks.length === 0 || out.ticks[0].offset > record.writtenBefore)
  );
}

/**
 * Several partitions' batches in one transaction: every fence in one UPDATE (all must hold, or
 * the transaction is refused and each batch is written alone), every tick in one COPY, and one
 * statement per table for the rest.
 */
async function writeMany(tx: SqlExecutor, batch: QueuedWrite[]): Promise<{ newSignals: Signal[] }[]> {
  const fences = batch.map(w => w.record!);
  const { rows: held } = await tx.query<{ partition: number }>(
    `UPDATE partition_epochs AS e SET written_offset = GREATEST(e.written_offset, f.w)
     FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS f(p, ep, w)
     WHERE e.partition = f.p AND e.epoch = f.ep
     RETURNING e.partition`,
    [column(fences, f => f.partition), column(fences, f => f.epoch), column(fences, f => f.writtenOffset)],
  );
  if (held.length !== new Set(fences.map(f => f.partition)).size)
    throw new Error("a partition's epoch moved: its batch is written alone");
  const outs = batch.map(w => w.out);
  const all = <T>(pick: (o: BatchOutputs) => T[]): T[] => outs.flatMap(pick);
  const ticks = outs.filter(o => o.ticks.length > 0);
  if (ticks.length > 0) {
    await tx.copyFrom("ticks", TICK_COLUMNS, tickCopyData(ticks));
    await upsertBuckets(tx, minuteBuckets(all(o => o.ticks)));
  }
  const signals = all(o => o.signals);
  const inserted = await SIGNALS.insert(tx, signals, 0);
  const aggregates = all(o => o.aggregates);
  if (aggregates.length > 0) await upsertAggregates(tx, aggregates);
  await ORDER_BOOK.insert(
    tx,
    all(o => o.orderBook),
    0,
  );
  await SENTIMENT.insert(
    tx,
    all(o => o.sentiment),
    0,
  );
  await MARKET_DATA.insert(
    tx,
    all(o => o.marketData),
    0,
  );
  for (const o of outs) {
    await ECONOMIC.insert(tx, o.economic, o.partition);
    await DEAD_LETTERS.insert(tx, o.deadLetters, o.partition);
  }
  const actors = fences.flatMap(f => f.actors);
  if (actors.length > 0) await upsertActorRecords(tx, actors);
  for (const f of fences) if (f.marks && f.marks.length > 0) await upsertMarks(tx, f.partition, f.marks);
  const isNew =
    inserted.length === signals.length
      ? null
      : new Set(inserted.map(r => `${String(r.symbol)}\u0000${String(r.seq)}`));
  return outs.map(o => ({
    newSignals: isNew ? o.signals.filter(s => isNew.has(`${s.symbol}\u0000${s.seq}`)) : o.signals,
  }));
}

/**
 * One batch's transaction. "append" COPYs the ticks when they are all above the partition's
 * written offset and "check" inserts them with ON CONFLICT DO NOTHING; the other tables are
 * small and always checked.
 */
async function writeBatch(
  tx: SqlExecutor,
  out: BatchOutputs,
  record: RecordFence | undefined,
  mode: "append" | "check",
): Promise<{ newSignals: Signal[] }> {
  const written = record ? await fence(tx, record) : null;
  if (out.ticks.length > 0) {
    // Ticks are in offset order; with no fence nothing says what is stored.
    const fresh = mode === "append" && written !== null && out.ticks[0].offset > written;
    await (fresh ? appendTicks(tx, out) : insertTicks(tx, out));
  }
  const inserted = await SIGNALS.insert(tx, out.signals, out.partition);
  if (out.aggregates.length > 0) await upsertAggregates(tx, out.aggregates);
  await ORDER_BOOK.insert(tx, out.orderBook, out.partition);
  await SENTIMENT.insert(tx, out.sentiment, out.partition);
  await MARKET_DATA.insert(tx, out.marketData, out.partition);
  await ECONOMIC.insert(tx, out.economic, out.partition);
  await DEAD_LETTERS.insert(tx, out.deadLetters, out.partition);
  if (record && record.actors.length > 0) await upsertActorRecords(tx, record.actors);
  if (record?.marks && record.marks.length > 0) await upsertMarks(tx, record.partition, record.marks);
  if (inserted.length === out.signals.length) return { newSignals: out.signals };
  const isNew = new Set(inserted.map(r => `${String(r.symbol)}\u0000${String(r.seq)}`));
  return { newSignals: out.signals.filter(s => isNew.has(`${s.symbol}\u0000${s.seq}`)) };
}

/**
 * Refuses the transaction unless the fence's epoch is still the partition's, moves the partition's
 * written offset up to `fence.writtenOffset`, and returns the written offset before. With
 * `writtenBefore` known, this is one UPDATE, whose row lock holds off claims until the commit.
 */
async function fence(tx: SqlExecutor, f: RecordFence): Promise<number> {
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
async function upsertMarks(tx: SqlExecutor, partition: number, marks: KeyedMark[]): Promise<void> {
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

/** The touched actors' states, replacing older ones; never moves a symbol's record backwards. */
async function upsertActorRecords(tx: SqlExecutor, records: ActorRecord[]): Promise<void> {
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

function column<T, V>(rows: readonly T[], pick: (row: T) => V): V[] {
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
class UnnestInsert<T> {
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

const timestamp = (ref: string) => `to_timestamp(${ref})`;

/**
 * Postgres text cannot hold NUL characters: a message carrying one would fail its whole batch,
 * again on every retry, and stall the partition behind it. Stored as U+FFFD, as Node already
 * does with bytes that are not UTF-8.
 */
function storableText(s: string | null): string | null {
  return s === null || !s.includes("\u0000") ? s : s.replaceAll("\u0000", "\ufffd");
}

const SIGNALS = new UnnestInsert<Signal>(
  "signals",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side", type: "text", value: r => r.side },
    { name: "rsi", type: "float8", value: r => r.rsi },
    { name: "price", type: "float8", value: r => r.price },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
    { name: "seq", type: "bigint", value: r => r.seq },
  ],
  "symbol, seq",
  false,
  // The actor host publishes only the signals a batch inserted first.
  true,
);

const ORDER_BOOK = new UnnestInsert<OrderBookRow>(
  "order_book",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side_seq", type: "bigint", value: r => r.sideSeq },
    { name: "order_type", type: "text", value: r => r.orderType },
    { name: "price", type: "float8", value: r => r.price },
    { name: "quantity", type: "bigint", value: r => r.quantity },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
  ],
  "symbol, side_seq",
);

const SENTIMENT = new UnnestInsert<SentimentRow>(
  "news_sentiment",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side_seq", type: "bigint", value: r => r.sideSeq },
    { name: "sentiment_score", type: "float8", value: r => r.score },
    { name: "sentiment_magnitude", type: "float8", value: r => r.magnitude },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
  ],
  "symbol, side_seq",
);

const MARKET_DATA = new UnnestInsert<MarketDataRow>(
  "market_data",
  [
    { name: "symbol", type: "text", value: r => r.symbol },
    { name: "side_seq", type: "bigint", value: r => r.sideSeq },
    { name: "market_cap", type: "float8", value: r => r.marketCap },
    { name: "pe_ratio", type: "float8", value: r => r.peRatio },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
  ],
  "symbol, side_seq",
);

const ECONOMIC = new UnnestInsert<EconomicRow>(
  "economic_indicators",
  [
    { name: "indicator_name", type: "text", value: r => r.name },
    { name: "value", type: "float8", value: r => r.value },
    { name: '"timestamp"', type: "float8", value: r => r.timestamp, as: timestamp },
    { name: "kafka_offset", type: "bigint", value: r => r.offset },
  ],
  "kafka_partition, kafka_offset",
  true,
);

const DEAD_LETTERS = new UnnestInsert<DeadLetterRow>(
  "dead_letters",
  [
    { name: "kafka_offset", type: "bigint", value: r => r.offset },
    { name: "message_key", type: "text", value: r => storableText(r.key) },
    { name: "payload", type: "text", value: r => storableText(r.payload) },
    { name: "reason", type: "text", value: r => storableText(r.reason) },
    { name: "kind", type: "text", value: r => r.kind },
  ],
  "kafka_partition, kafka_offset",
  true,
);

/** How a minute's partial bucket joins the stored one: additive, open and close by seq. */
const MERGE_BUCKETS = `ON CONFLICT (symbol, minute) DO UPDATE SET
       open       = CASE WHEN excluded.open_seq < b.open_seq THEN excluded.open ELSE b.open END,
       open_seq   = LEAST(b.open_seq, excluded.open_seq),
       close      = CASE WHEN excluded.close_seq > b.close_seq THEN excluded.close ELSE b.close END,
       close_seq  = GREATEST(b.close_seq, excluded.close_seq),
       low        = LEAST(b.low, excluded.low),
       high       = GREATEST(b.high, excluded.high),
       volume     = b.volume + excluded.volume,
       tick_count = b.tick_count + excluded.tick_count,
       sum_open   = b.sum_open + excluded.sum_open,
       sum_close  = b.sum_close + excluded.sum_close`;

export const TICK_COLUMNS = [
  "symbol",
  "seq",
  '"timestamp"',
  "opening_price",
  "closing_price",
  "high",
  "low",
  "volume",
  "moving_average",
  "exponential_moving_average",
  "relative_strength_index",
  "kafka_partition",
  "kafka_offset",
  "log_timestamp",
] as const;

/**
 * Ticks that are all new (above the partition's written offset): appended with COPY, and their
 * minute buckets merged from the batch, summed here in seq order. Every value reaches the table
 * as the checking insert would store it: numbers in JavaScript's shortest round-trip form, which
 * Postgres parses to the same double, and times to the microsecond as `to_timestamp` rounds them.
 */
async function appendTicks(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  await tx.copyFrom("ticks", TICK_COLUMNS, tickCopyData([out]));
  await upsertBuckets(tx, minuteBuckets(out.ticks));
}

async function upsertBuckets(tx: SqlExecutor, rows: BucketRow[]): Promise<void> {
  await tx.query(
    `INSERT INTO minute_buckets AS b (symbol, minute, open, open_seq, close, close_seq, low, high, volume,
                                      tick_count, sum_open, sum_close)
     SELECT symbol, to_timestamp(minute), open, open_seq, close, close_seq, low, high, volume, tick_count,
            sum_open, sum_close
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::bigint[], $5::float8[], $6::bigint[], $7::float8[],
                 $8::float8[], $9::numeric[], $10::bigint[], $11::float8[], $12::float8[])
       AS i(symbol, minute, open, open_seq, close, close_seq, low, high, volume, tick_count, sum_open, sum_close)
     ${MERGE_BUCKETS}`,
    [
      column(rows, r => r.symbol),
      column(rows, r => r.minute),
      column(rows, r => r.open),
      column(rows, r => r.openSeq),
      column(rows, r => r.close),
      column(rows, r => r.closeSeq),
      column(rows, r => r.low),
      column(rows, r => r.high),
      column(rows, r => r.volume),
      column(rows, r => r.count),
      column(rows, r => r.sumOpen),
      column(rows, r => r.sumClose),
    ],
  );
}

/** COPY's binary file header: signature, flags, header extension length. */
const COPY_BINARY_HEADER = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
]);
const TWO_POW_32 = 4294967296;

/**
 * Tick rows of one partition in COPY's binary format, columns in the order of `TICK_COLUMNS`:
 * doubles as their eight bytes (the very value, no text round trip), times as microseconds
 * since 2000-01-01 (as `to_timestamp` rounds them), nulls as length -1.
 */
export function tickCopyData(parts: readonly { ticks: readonly TickRow[]; partition: number }[]): Buffer {
  let symbolBytes = 0;
  let rows = 0;
  for (const part of parts) {
    rows += part.ticks.length;
    for (const t of part.ticks) symbolBytes += Buffer.byteLength(t.symbol);
  }
  // Per row: field count (2), 14 lengths (56), 3 bigints and 2 times (40), 7 doubles (56), one int (4).
  const buf = Buffer.allocUnsafe(COPY_BINARY_HEADER.length + rows * 158 + symbolBytes + 2);
  let at = COPY_BINARY_HEADER.copy(buf, 0);
  const int64 = (v: number) => {
    const hi = Math.floor(v / TWO_POW_32);
    at = buf.writeInt32BE(8, at);
    at = buf.writeInt32BE(hi, at);
    at = buf.writeUInt32BE(v - hi * TWO_POW_32, at);
  };
  const float8 = (v: number | null) => {
    if (v === null) {
      at = buf.writeInt32BE(-1, at);
      return;
    }
    at = buf.writeInt32BE(8, at);
    at = buf.writeDoubleBE(v, at);
  };
  for (const { ticks, partition } of parts)
    for (const t of ticks) {
      at = buf.writeInt16BE(TICK_COLUMNS.length, at);
      const symbolAt = at + 4;
      const n = buf.write(t.symbol, symbolAt, "utf8");
      buf.writeInt32BE(n, at);
      at = symbolAt + n;
      int64(t.seq);
      int64(pgMicros(t.timestamp));
      float8(t.open);
      float8(t.close);
      float8(t.high);
      float8(t.low);
      int64(t.volume);
      float8(t.sma);
      float8(t.ema);
      float8(t.rsi);
      at = buf.writeInt32BE(4, at);
      at = buf.writeInt32BE(partition, at);
      int64(t.offset);
      int64((t.logTimestamp - POSTGRES_EPOCH_SECONDS * 1000) * 1000);
    }
  at = buf.writeInt16BE(-1, at);
  return buf.subarray(0, at);
}

/** The start of the minute a tick is stored in, epoch seconds: from its time as Postgres stores it. */
function storedMinute(t: TickRow): number {
  return Math.floor((pgMicros(t.timestamp) + POSTGRES_EPOCH_SECONDS * 1e6) / 60e6) * 60;
}

/**
 * The ticks' per-minute buckets (symbol, minute), summed in the ticks' order. A bucket's volume is
 * a double sum of whole numbers, exact while it stays below 2^53: always for the host's chunks of
 * 2,000 ticks (2e15 at most, at the largest volume accepted, 1e12). Volumes are never negative, so
 * a sum that passed 2^53 is no longer a safe integer; such a bucket is summed again exactly, for
 * the `numeric` column.
 */
function minuteBuckets(ticks: readonly TickRow[]): BucketRow[] {
  const buckets = new Map<string, MinuteBucket>();
  for (const t of ticks) {
    const minute = storedMinute(t);
    const key = `${t.symbol}\u0000${minute}`;
    const b = buckets.get(key);
    if (!b) {
      buckets.set(key, {
        symbol: t.symbol,
        minute,
        open: t.open,
        openSeq: t.seq,
        close: t.close,
        closeSeq: t.seq,
        low: t.low,
        high: t.high,
        volume: t.volume,
        count: 1,
        sumOpen: t.open,
        sumClose: t.close,
      });
      continue;
    }
    if (t.seq < b.openSeq) {
      b.open = t.open;
      b.openSeq = t.seq;
    }
    if (t.seq > b.closeSeq) {
      b.close = t.close;
      b.closeSeq = t.seq;
    }
    if (t.low < b.low) b.low = t.low;
    if (t.high > b.high) b.high = t.high;
    b.volume += t.volume;
    b.count += 1;
    b.sumOpen += t.open;
    b.sumClose += t.close;
  }
  return [...buckets.values()].map(b =>
    Number.isSafeInteger(b.volume) ? b : { ...b, volume: exactVolume(ticks, b.symbol, b.minute) },
  );
}

function exactVolume(ticks: readonly TickRow[], symbol: string, minute: number): string {
  let total = 0n;
  for (const t of ticks) if (t.symbol === symbol && storedMinute(t) === minute) total += BigInt(t.volume);
  return total.toString();
}

interface MinuteBucket {
  symbol: string;
  /** The minute's start, seconds since the epoch. */
  minute: number;
  open: number;
  openSeq: number;
  close: number;
  closeSeq: number;
  low: number;
  high: number;
  volume: number;
  count: number;
  sumOpen: number;
  sumClose: number;
}

/** A bucket as written: its volume a decimal string once past 2^53 (see `minuteBuckets`). */
type BucketRow = Omit<MinuteBucket, "volume"> & { volume: number | string };

/** 2000-01-01, Postgres' own epoch, in Unix seconds. */
const POSTGRES_EPOCH_SECONDS = 946684800;

/**
 * The timestamptz Postgres' `to_timestamp(seconds)` stores, in microseconds since its own epoch
 * (2000-01-01): the seconds moved to that epoch, scaled, and rounded half to even (C's rint), in
 * that order.
 */
export function pgMicros(seconds: number): number {
  const x = (seconds - POSTGRES_EPOCH_SECONDS) * 1e6;
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

async function insertTicks(tx: SqlExecutor, out: BatchOutputs): Promise<void> {
  const t = out.ticks;
  await tx.query(
    `WITH input AS (
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                            $7::float8[], $8::bigint[], $9::float8[], $10::float8[], $11::float8[], $12::bigint[],
                            $13::float8[])
         AS i(symbol, seq, ts, open, close, high, low, volume, sma, ema, rsi, kafka_offset, log_ms)
     ),
     inserted AS (
       INSERT INTO ticks (symbol, seq, "timestamp", opening_price, closing_price, high, low, volume,
                          moving_average, exponential_moving_average, relative_strength_index,
                          kafka_partition, kafka_offset, log_timestamp)
       SELECT symbol, seq, to_timestamp(ts), open, close, high, low, volume, sma, ema, rsi,
              $14::integer, kafka_offset, to_timestamp(log_ms / 1000.0)
       FROM input
       ON CONFLICT (symbol, seq) DO NOTHING
       RETURNING symbol, seq, "timestamp", opening_price, closing_price, high, low, volume
     )
     INSERT INTO minute_buckets AS b (symbol, minute, open, open_seq, close, close_seq, low, high, volume,
                                      tick_count, sum_open, sum_close)
     SELECT symbol, to_timestamp(floor(extract(epoch FROM "timestamp") / 60) * 60) AS minute,
            (array_agg(opening_price ORDER BY seq))[1], min(seq),
            (array_agg(closing_price ORDER BY seq DESC))[1], max(seq),
            min(low), max(high), sum(volume), count(*), sum(opening_price), sum(closing_price)
     FROM inserted
     GROUP BY symbol, minute
     ${MERGE_BUCKETS}`,
    [
      column(t, r => r.symbol),
      column(t, r => r.seq),
      column(t, r => r.timestamp),
      column(t, r => r.open),
      column(t, r => r.close),
      column(t, r => r.high),
      column(t, r => r.low),
      column(t, r => r.volume),
      column(t, r => r.sma),
      column(t, r => r.ema),
      column(t, r => r.rsi),
      column(t, r => r.offset),
      column(t, r => r.logTimestamp),
      out.partition,
    ],
  );
}

async function upsertAggregates(tx: SqlExecutor, rows: AggregateRow[]): Promise<void> {
  await tx.query(
    `INSERT INTO aggregated_metrics AS a (symbol, total_volume, average_volume, average_opening_price,
       average_closing_price, lowest_price, highest_price, tick_count, first_timestamp, last_timestamp, last_seq, updated_at)
     SELECT symbol, total_volume, average_volume, average_open, average_close, lowest, highest, tick_count,
            to_timestamp(first_ts), to_timestamp(last_ts), last_seq, now()
     FROM unnest($1::text[], $2::numeric[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[],
                 $8::bigint[], $9::float8[], $10::float8[], $11::bigint[])
       AS i(symbol, total_volume, average_volume, average_open, average_close, lowest, highest, tick_count,
            first_ts, last_ts, last_seq)
     ON CONFLICT (symbol) DO UPDATE SET
       total_volume = excluded.total_volume, average_volume = excluded.average_volume,
       average_opening_price = excluded.average_opening_price, average_closing_price = excluded.average_closing_price,
       lowest_price = excluded.lowest_price, highest_price = excluded.highest_price, tick_count = excluded.tick_count,
       first_timestamp = excluded.first_timestamp, last_timestamp = excluded.last_timestamp,
       last_seq = excluded.last_seq, updated_at = excluded.updated_at
     WHERE a.tick_count < excluded.tick_count`,
    [
      column(rows, r => r.symbol),
      column(rows, r => r.totalVolume),
      column(rows, r => r.averageVolume),
      column(rows, r => r.averageOpen),
      column(rows, r => r.averageClose),
      column(rows, r => r.lowest),
      column(rows, r => r.highest),
      column(rows, r => r.tickCount),
      column(rows, r => r.firstTimestamp),
      column(rows, r => r.lastTimestamp),
      column(rows, r => r.lastSeq),
    ],
  );
}
