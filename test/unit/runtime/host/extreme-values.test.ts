import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { SymbolActor } from "../../../../domain/symbol-actor";
import { partitionForKey } from "../../../../lib/partitioner";
import {
  ELSEWHERE,
  EXACT_TICKS,
  extremeStream,
  HOME,
  HUGE_VOLUME_TICKS,
  NEIGHBOURS,
  VOL,
  XOM,
  type ExtremeResult,
  type ExtremeScenario,
} from "./support/extreme-stream";
import { PARTITIONS, SETTINGS } from "./support/host-stream";

/**
 * Extreme values written into the log by a producer other than the gateway, on the actor host
 * with the embedded adapters, across a restart: ticks priced 1e308 and volumes of 2^53 - 1 once
 * made a symbol's state unreadable or every results write of its partition fail, and every symbol
 * of the partition stopped. The scenarios run in a child process (support/extreme-values.ts).
 */

const ROOT = path.resolve(__dirname, "../../../..");
const TSX = path.join(ROOT, "node_modules/.bin/tsx");
const SCENARIOS: ExtremeScenario[] = ["extreme-values", "exact-volume"];
let results: Record<ExtremeScenario, ExtremeResult>;

beforeAll(async () => {
  const { stdout } = await promisify(execFile)(
    TSX,
    [path.join(__dirname, "support/extreme-values.ts"), ...SCENARIOS],
    { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
  );
  results = JSON.parse(stdout) as Record<ExtremeScenario, ExtremeResult>;
}, 180000);

const computed = new Map<ExtremeScenario, ReturnType<typeof compute>>();
const expected = (name: ExtremeScenario) =>
  computed.get(name) ?? computed.set(name, compute(name)).get(name)!;

/** Where each record landed, and what one fresh actor per symbol computes from the valid ones. */
function compute(name: ExtremeScenario) {
  const next = new Array<number>(PARTITIONS).fill(0);
  const actors = new Map<string, SymbolActor>();
  const ticks: Record<string, unknown>[] = [];
  const refused: { partition: number; offset: number; key: string }[] = [];
  let plainVolume = 0;
  let exactVolume = 0n;
  for (const r of extremeStream(name)) {
    const partition = partitionForKey(r.key, PARTITIONS);
    const offset = next[partition]++;
    if (!r.message) {
      refused.push({ partition, offset, key: r.key });
      continue;
    }
    if (!("stock_symbol" in r.message)) continue;
    const symbol = r.message.stock_symbol;
    let actor = actors.get(symbol);
    if (!actor) actors.set(symbol, (actor = new SymbolActor(symbol, SETTINGS)));
    const out = actor.apply(r.message, offset);
    if (out?.kind !== "tick") continue;
    const t = out.tick;
    ticks.push({ symbol, seq: t.seq, close: t.close, volume: t.volume, sma: t.sma, ema: t.ema, rsi: t.rsi });
    plainVolume += t.volume;
    exactVolume += BigInt(t.volume);
  }
  ticks.sort((a, b) => String(a.symbol).localeCompare(String(b.symbol)) || Number(a.seq) - Number(b.seq));
  return { actors, ticks, refused, plainVolume, exactVolume: exactVolume.toString() };
}

/** Every partition that received messages is committed to its end. */
function expectCommittedToTheEnd(lag: ExtremeResult["lag"][number]): void {
  const written = lag.filter(p => p.highWatermark > 0);
  expect(written.length).toBeGreaterThan(0);
  for (const p of written) expect(p).toEqual({ ...p, committed: p.highWatermark });
}

function expectRecordsOf(result: ExtremeResult, actors: Map<string, SymbolActor>): void {
  expect(Object.keys(result.records).sort()).toEqual([...actors.keys()].sort());
  for (const [symbol, actor] of actors)
    expect(result.records[symbol]).toEqual(JSON.parse(JSON.stringify(actor.snapshot())));
}

describe("the actor host meeting extreme values in the log", () => {
  const name = "extreme-values";

  it("dead-letters two XOM ticks priced 1e308, naming each price and its bound", () => {
    const xom = results[name].deadLetters.filter(d => d.key === XOM);
    expect(xom.map(d => ({ partition: d.partition, offset: d.offset, key: d.key }))).toEqual(
      expected(name).refused.filter(r => r.key === XOM),
    );
    for (const d of xom)
      expect(d.reason).toBe(
        ["opening_price", "closing_price", "high", "low"]
          .map(f => `${f} must be at most 1000000000 (1e9)`)
          .join("; "),
      );
  });

  it("dead-letters 1,025 ticks of volume 2^53 - 1 and an order of that quantity, with their reason", () => {
    const [cvx, other] = NEIGHBOURS;
    const dead = results[name].deadLetters;
    const volumes = dead.filter(d => d.key === cvx);
    expect(volumes).toHaveLength(HUGE_VOLUME_TICKS);
    expect(new Set(volumes.map(d => d.reason))).toEqual(
      new Set(["volume must be at most 1000000000000 (1e12)"]),
    );
    expect(dead.filter(d => d.key === other).map(d => d.reason)).toEqual([
      "quantity must be at most 1000000000000 (1e12)",
    ]);
    // Nothing else: every dead letter is one of the refused records, at its place in the log.
    expect(dead.map(d => ({ partition: d.partition, offset: d.offset, key: d.key }))).toEqual(
      expected(name).refused,
    );
  });

  it("stores every other tick of XOM's partition and elsewhere as a fresh actor per symbol computes it", () => {
    const want = expected(name);
    const symbols = new Set(want.ticks.map(t => t.symbol));
    expect(symbols).toEqual(new Set([XOM, ...NEIGHBOURS, ELSEWHERE]));
    expect(partitionForKey(ELSEWHERE, PARTITIONS)).not.toBe(HOME);
    expect(results[name].ticks).toEqual(want.ticks);
    expect(results[name].aggregates).toEqual(
      [...want.actors.values()]
        .sort((a, b) => a.symbol.localeCompare(b.symbol))
        .map(a => ({ symbol: a.symbol, tick_count: a.seq, total_volume: a.totalVolumeExact() })),
    );
  });

  it("commits every partition to its end, before the restart and after it", () => {
    const { lag } = results[name];
    expect(lag).toHaveLength(2);
    lag.forEach(expectCommittedToTheEnd);
    expect(lag[1].find(p => p.partition === HOME)!.highWatermark).toBeGreaterThan(
      lag[0].find(p => p.partition === HOME)!.highWatermark,
    );
  });

  it("restores every actor from its record in Postgres after the restart, and records each one's whole state", () => {
    const { restores } = results[name];
    const want = expected(name);
    expect(restores[0]).toEqual({ "new/none": want.actors.size });
    // The cache is new with every host: each actor comes back from Postgres, XOM's included.
    expect(restores[1]).toEqual({ "postgres/missing": want.actors.size });
    expectRecordsOf(results[name], want.actors);
  });
});

describe("the actor host summing volumes past 2^53", () => {
  const name = "exact-volume";

  it("stores the exact total volume in aggregated_metrics, across the restart", () => {
    const want = expected(name);
    // A double sum of these volumes has lost units: only an exact one passes.
    expect(BigInt(want.plainVolume)).not.toBe(BigInt(want.exactVolume));
    expect(BigInt(want.exactVolume)).toBeGreaterThan(2n ** 53n);
    expect(results[name].aggregates).toEqual([
      { symbol: VOL, tick_count: want.ticks.length, total_volume: want.exactVolume },
    ]);
    expectRecordsOf(results[name], want.actors);
    results[name].lag.forEach(expectCommittedToTheEnd);
  });

  it("stores the exact volume of a minute bucket that passed 2^53 within one chunk", () => {
    const volumes = extremeStream(name).map(r => (r.message && "volume" in r.message ? r.message.volume : 0));
    const first = volumes.slice(0, EXACT_TICKS).reduce((s, v) => s + BigInt(v), 0n);
    expect(first).toBeGreaterThan(2n ** 53n);
    const buckets = results[name].buckets;
    expect(buckets[0].volume).toBe(first.toString());
    expect(buckets.reduce((s, b) => s + BigInt(b.volume), 0n).toString()).toBe(expected(name).exactVolume);
  });

  it("reads total_volume for the API as a JSON number, as it did when the columns were bigint", () => {
    const total = Number(expected(name).exactVolume);
    expect(results[name].reads).toEqual({
      latestPerSymbol: total,
      aggregates: total,
      aggregatesOverMinutes: total,
    });
  });
});
