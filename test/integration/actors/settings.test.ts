import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import type { TickResult } from "../../../domain/symbol-actor";
import { ROOT } from "../../support/stack";
import {
  expectedRow,
  expectedTickRows,
  generateMessages,
  place,
  produceAll,
  readSnapshots,
  readTicks,
  replay,
  settingsOf,
  SMALL_PERIODS,
  SYMBOLS,
  useActorsScenario,
  waitUntilCommitted,
  type TickRowRead,
} from "./harness";

/**
 * Changing an indicator setting is a supported operation: actors restarted with other periods or
 * thresholds continue every symbol exactly as if they had always run with them (the indicators are
 * recomputed from the stored ticks, nothing retries forever), and `npm run reprocess` rewrites
 * the stored history under the new settings.
 */

const PARTITIONS = 3;
const BEFORE = { ...SMALL_PERIODS };
const AFTER = { SMA_PERIOD: "7", EMA_PERIOD: "6", RSI_PERIOD: "4", RSI_OVERSOLD: "35", RSI_OVERBOUGHT: "65" };

const ctx = useActorsScenario("actors_settings", PARTITIONS);

async function readSignals() {
  const { rows } = await ctx.db.query<{
    symbol: string;
    seq: number;
    side: string;
    rsi: number;
    price: number;
  }>(`SELECT symbol, seq, side, rsi, price FROM signals ORDER BY symbol COLLATE "C", seq`);
  return rows;
}

const signalRow = (s: { symbol: string; seq: number; side: string; rsi: number; price: number }) => ({
  symbol: s.symbol,
  seq: s.seq,
  side: s.side,
  rsi: s.rsi,
  price: s.price,
});

async function reprocessWith(env: Record<string, string>): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, "dist/bin/reprocess.js")], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", DATABASE_URL: ctx.scenario.databaseUrl, ...env },
  });
  return stdout;
}

describe("changing an indicator setting", () => {
  it("continues every symbol under the new settings, and reprocess rewrites the history", async () => {
    const { scenario } = ctx;
    const messages = generateMessages({ seed: 71, symbols: SYMBOLS.slice(0, 5), ticks: 1500 });
    const firstPart = messages.slice(0, 900);
    const placed = place(messages, PARTITIONS);

    const first = ctx.startProcess("actors-before", BEFORE);
    await produceAll(scenario.topic, firstPart);
    await waitUntilCommitted(scenario.topic, scenario.groupId, 90000);
    expect(await first.kill("SIGTERM")).toBe(0);

    const second = ctx.startProcess("actors-after", { ...AFTER, LOG_LEVEL: "info" });
    await produceAll(scenario.topic, messages.slice(900));
    await waitUntilCommitted(scenario.topic, scenario.groupId, 90000);

    // Rows of the first part keep the old settings' values; later rows are the new settings'
    // values over the whole history, as if the actors had always run with them.
    const before = replay(placed.slice(0, 900), settingsOf(BEFORE));
    const after = replay(placed, settingsOf(AFTER));
    const partitionOf = new Map(
      placed.map(p => ["stock_symbol" in p.message ? p.message.stock_symbol : "", p.partition]),
    );
    const expected: TickRowRead[] = [];
    for (const symbol of [...after.ticks.keys()].sort()) {
      const old = before.ticks.get(symbol) ?? [];
      const rows: TickResult[] = [...old, ...after.ticks.get(symbol)!.slice(old.length)];
      expected.push(...rows.map(t => expectedRow(t, partitionOf.get(symbol)!)));
    }
    expect(await readTicks(ctx.db)).toEqual(expected);
    const snapshots = await readSnapshots(scenario);
    for (const [symbol, actor] of after.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
    expect(
      second.output.filter(l => /retrying|IncompatibleSnapshot|taken with other indicator settings/i.test(l)),
    ).toEqual([]);
    expect(second.output.some(l => /indicator settings changed/.test(l))).toBe(true);

    // The history, rewritten under the new settings, equals a run that always had them.
    const out = await reprocessWith(AFTER);
    expect(out).toMatch(/done in .*: 5 symbols, \d+ ticks, \d+ signals/);
    const all = expectedTickRows(placed, after);
    expect(await readTicks(ctx.db)).toEqual(all);
    const wantSignals = after.signals
      .map(signalRow)
      .sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : a.seq - b.seq));
    expect(wantSignals.length).toBeGreaterThan(10);
    expect(await readSignals()).toEqual(wantSignals);

    // Again: nothing changes.
    await reprocessWith(AFTER);
    expect(await readTicks(ctx.db)).toEqual(all);
    expect(await readSignals()).toEqual(wantSignals);
  }, 240000);
});
