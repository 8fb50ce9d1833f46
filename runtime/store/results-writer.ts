import type { SqlClient, SqlExecutor } from "../../adapters/sql/types";
import type { Signal } from "../../domain/symbol-actor";
import type { BatchOutputs } from "../batch-outputs";
import { upsertActorRecords } from "./actor-records";
import { fence, fenceMany, upsertMarks, type RecordFence } from "./partition-fence";
import {
  appendTicks,
  DEAD_LETTERS,
  ECONOMIC,
  insertTicks,
  MARKET_DATA,
  ORDER_BOOK,
  SENTIMENT,
  SIGNALS,
  upsertAggregates,
} from "./results-tables";

/** One chunk to write: its outputs, and its place in its partition's ownership (none: an unfenced write). */
export interface ChunkWrite {
  out: BatchOutputs;
  record?: RecordFence;
}

const UNIQUE_VIOLATION = "23505";

/**
 * The one write path of the results: one transaction for one chunk, or for several partitions'
 * chunks at once (group commit), one statement per table for all of them.
 */
export class ResultsWriter {
  /** Chunks whose append met a stored row and were written again with the conflict check. */
  checkedRewrites = 0;
  /** Transactions that wrote several partitions' chunks at once. */
  combinedWrites = 0;

  constructor(private readonly db: SqlClient) {}

  /**
   * One chunk in its own transaction. Its ticks above the partition's written offset are
   * appended with COPY; if that meets a stored row anyway (results older than written offsets),
   * the chunk is written again with the conflict check.
   */
  async writeAlone(chunk: ChunkWrite): Promise<{ newSignals: Signal[] }> {
    try {
      const [result] = await this.db.transaction(tx => writeChunks(tx, [chunk], "append"));
      return result;
    } catch (err) {
      if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
      this.checkedRewrites += 1;
      const [result] = await this.db.transaction(tx => writeChunks(tx, [chunk], "check"));
      return result;
    }
  }

  /** Several partitions' chunks, all combinable (see GroupCommit), in one transaction; any failure fails them all. */
  async writeCombined(chunks: readonly ChunkWrite[]): Promise<{ newSignals: Signal[] }[]> {
    const results = await this.db.transaction(tx => writeChunks(tx, chunks, "append"));
    this.combinedWrites += 1;
    return results;
  }
}

/**
 * Chunks' outputs in one transaction, in this order: the fences, the ticks, then one statement
 * per table (per partition for the tables keyed by log position), the actors' states and the
 * marks last. "append" COPYs the ticks of a chunk that lie all above its partition's written
 * offset, "check" inserts them with ON CONFLICT DO NOTHING. Returns each chunk's signals that
 * this write inserted: a replayed chunk's are stored already, and must not be notified twice.
 */
async function writeChunks(
  tx: SqlExecutor,
  chunks: readonly ChunkWrite[],
  mode: "append" | "check",
): Promise<{ newSignals: Signal[] }[]> {
  const written = await fences(tx, chunks);
  // Ticks are in offset order; with no fence nothing says what is stored.
  const fresh = (c: ChunkWrite, i: number) => {
    const before = written[i];
    return mode === "append" && before !== null && c.out.ticks[0].offset > before;
  };
  const withTicks = chunks.map((c, i) => ({ c, i })).filter(({ c }) => c.out.ticks.length > 0);
  const appended = withTicks.filter(({ c, i }) => fresh(c, i)).map(({ c }) => c.out);
  if (appended.length > 0) await appendTicks(tx, appended);
  for (const { c, i } of withTicks) if (!fresh(c, i)) await insertTicks(tx, c.out);
  const outs = chunks.map(c => c.out);
  const all = <T>(pick: (o: BatchOutputs) => T[]): T[] => outs.flatMap(pick);
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
  const records = chunks.flatMap(c => (c.record ? [c.record] : []));
  const actors = records.flatMap(r => r.actors);
  if (actors.length > 0) await upsertActorRecords(tx, actors);
  for (const r of records) if (r.marks && r.marks.length > 0) await upsertMarks(tx, r.partition, r.marks);
  return newSignals(outs, inserted.length === signals.length ? null : inserted);
}

/**
 * Each chunk's fence, and the written offset its partition had before (null: no fence). One
 * chunk takes its own fence; several (group commit) take one statement, with the written offsets
 * their owners know.
 */
async function fences(tx: SqlExecutor, chunks: readonly ChunkWrite[]): Promise<(number | null)[]> {
  if (chunks.length === 1) {
    const record = chunks[0].record;
    return [record ? await fence(tx, record) : null];
  }
  const records = chunks.map(c => c.record);
  const known = records.filter((r): r is RecordFence => r?.writtenBefore !== undefined);
  if (known.length !== records.length) throw new Error("a combined write needs every chunk's written offset");
  await fenceMany(tx, known);
  return known.map(r => r.writtenBefore ?? null);
}

/** Each chunk's signals that the write inserted (`inserted` null: all of them). */
function newSignals(
  outs: readonly BatchOutputs[],
  inserted: Record<string, unknown>[] | null,
): { newSignals: Signal[] }[] {
  if (!inserted) return outs.map(o => ({ newSignals: o.signals }));
  const isNew = new Set(inserted.map(r => `${String(r.symbol)}\u0000${String(r.seq)}`));
  return outs.map(o => ({ newSignals: o.signals.filter(s => isNew.has(`${s.symbol}\u0000${s.seq}`)) }));
}
