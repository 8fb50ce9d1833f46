import type { PostgresClient } from "../../../adapters/sql/postgres-client";
import { reprocess } from "../../../runtime/reprocess";
import { IndicatorRewrites } from "../../../runtime/store/reindex";
import { ResultsWriter } from "../../../runtime/store/results-writer";
import { storedRows, migratedDatabases } from "./support/database";
import { PartitionFeed, priceTicks, SETTINGS } from "./support/feed";

/**
 * `reprocess` on Postgres: after a change of the indicator settings, each symbol's stored
 * indicators and signals become what actors under the new settings compute from the same ticks;
 * nothing else changes. (The tool's process, `npm run reprocess` while actors run, is
 * test/integration/actors/settings.test.ts.)
 */

const fresh = migratedDatabases();
const NEW = { ...SETTINGS, smaPeriod: 5, rsiPeriod: 4, rsiOverbought: 65 };
const SYMBOLS = ["RP_A", "RP_B", "RP_C"];

/** A database holding the symbols' results under `settings`. */
async function storedUnder(settings: typeof SETTINGS): Promise<PostgresClient> {
  const { db } = await fresh();
  const feed = new PartitionFeed(0, 0, settings);
  const writer = new ResultsWriter(db);
  for (const [i, symbol] of SYMBOLS.entries())
    await writer.writeAlone({ out: feed.chunk(priceTicks(symbol, 80, 20 + i)).out });
  return db;
}

describe("reprocess", () => {
  it("rewrites every symbol's indicators and signals as the new settings compute them, and nothing else", async () => {
    const db = await storedUnder(SETTINGS);
    const always = await storedRows(await storedUnder(NEW));
    const before = await storedRows(db);
    const progress: [string, number, number][] = [];
    const summary = await reprocess(new IndicatorRewrites(db), NEW, { progress: (...p) => progress.push(p) });

    const after = await storedRows(db);
    expect(after.ticks).toEqual(always.ticks);
    expect(after.signals).toEqual(always.signals);
    expect(after.signals).not.toEqual(before.signals);
    expect(summary).toEqual({ symbols: 3, ticks: 240, signals: always.signals.length });
    expect(progress).toEqual(SYMBOLS.map((s, i) => [s, i + 1, 3]));
    // Prices, volumes, aggregates and buckets do not depend on the settings.
    for (const table of ["minute_buckets", "aggregated_metrics"]) expect(after[table]).toEqual(before[table]);
  });

  it("rewrites only the symbols asked for", async () => {
    const db = await storedUnder(SETTINGS);
    const always = await storedRows(await storedUnder(NEW));
    const before = await storedRows(db);
    const summary = await reprocess(new IndicatorRewrites(db), NEW, { symbols: ["RP_B"] });
    expect(summary.symbols).toBe(1);
    const after = await storedRows(db);
    const of = (rows: Record<string, unknown>[], symbol: string) => rows.filter(r => r.symbol === symbol);
    expect(of(after.ticks, "RP_B")).toEqual(of(always.ticks, "RP_B"));
    expect(of(after.ticks, "RP_A")).toEqual(of(before.ticks, "RP_A"));
    expect(of(after.signals, "RP_C")).toEqual(of(before.signals, "RP_C"));
  });
});
