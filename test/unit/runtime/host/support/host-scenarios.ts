/**
 * Runs the actor host on the embedded adapters (in-process log, PGlite, in-memory snapshots)
 * through the scenarios named on the command line and prints what it stored as JSON. PGlite loads its WebAssembly with a
 * dynamic import, which Jest's VM cannot do, so actor-host.test.ts runs this in a child process
 * (`tsx`) and checks the output.
 */
import { emptyPglite } from "../../../../support/pglite";
import { setTimeout as sleep } from "node:timers/promises";
import { EmbeddedLog } from "../../../../../adapters/log/embedded-log";
import type { LogConsumer } from "../../../../../adapters/log/types";
import { MemorySnapshotStore } from "../../../../../adapters/snapshots/memory-snapshots";
import type { SnapshotStore } from "../../../../../adapters/snapshots/types";
import { UnavailableError } from "../../../../../domain/errors";
import { PgliteClient } from "../../../../../adapters/sql/pglite-client";

import { partitionForKey } from "../../../../../lib/partitioner";
import { ActorHost } from "../../../../../runtime/host/actor-host";
import { ResultsStore } from "../../../../../runtime/store/results-store";
import {
  GROUP,
  PARTITIONS,
  SETTINGS,
  stream,
  RECOVERIES,
  type RawRecord,
  type RecoveryName,
  type ScenarioName,
  type ScenarioResult,
} from "./host-stream";

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

async function produce(log: EmbeddedLog, records: RawRecord[]) {
  const producer = await log.createProducer();
  await producer.send(records);
  await producer.close();
}

async function runHost(
  log: EmbeddedLog,
  sql: PgliteClient,
  snapshots: SnapshotStore,
  group: string,
  commits: [number, number][],
  published: { symbol: string; seq: number }[],
  restores: Record<string, number> = {},
): Promise<LogConsumer> {
  const consumer = log.createConsumer({ groupId: group, maxBatchMessages: 25 });
  const host = new ActorHost({
    settings: SETTINGS,
    results: new ResultsStore(sql),
    snapshots,
    commit: async (partition, next) => {
      commits.push([partition, next]);
      await consumer.commit(partition, next);
    },
    partitionCount: PARTITIONS,
    idleMs: 60000,
    retryMaxBackoffMs: 50,
    logger: quiet,
    observer: {
      published: (_partition, _ticks, signals) =>
        published.push(...signals.map(s => ({ symbol: s.symbol, seq: s.seq }))),
      restored: (_partition, source, reason, count) => {
        restores[`${source}/${reason}`] = (restores[`${source}/${reason}`] ?? 0) + count;
      },
    },
  });
  await consumer.run({
    onAssignment: (partitions, generation) => host.onAssignment(partitions, generation),
    onBatch: (batch, generation) => host.handleBatch(batch, generation),
  });
  return consumer;
}

async function drained(log: EmbeddedLog, group: string): Promise<void> {
  const deadline = Date.now() + 30000;
  for (;;) {
    const lag = await log.lag(group);
    if (lag.every(p => p.lag === 0 && (p.highWatermark === 0 || p.committed === p.highWatermark))) return;
    if (Date.now() > deadline) throw new Error(`not drained: ${JSON.stringify(lag)}`);
    await sleep(10);
  }
}

async function contents(sql: PgliteClient) {
  const rows = async (text: string) => (await sql.query<Record<string, unknown>>(text)).rows;
  return {
    ticks: await rows(
      `SELECT symbol, seq, closing_price AS close, moving_average AS sma, exponential_moving_average AS ema,
              relative_strength_index AS rsi FROM ticks ORDER BY symbol, seq`,
    ),
    signals: await rows("SELECT symbol, seq, side FROM signals ORDER BY symbol, seq"),
    orderBook: await rows("SELECT symbol, side_seq FROM order_book ORDER BY symbol, side_seq"),
    economic: await rows("SELECT indicator_name, value FROM economic_indicators"),
    deadLetters: await rows("SELECT reason FROM dead_letters ORDER BY kafka_partition, kafka_offset"),
  };
}

async function recordedStates(sql: PgliteClient): Promise<Record<string, unknown>> {
  const { rows } = await sql.query<{ symbol: string; state: string }>(
    "SELECT symbol, state FROM actor_state",
  );
  return Object.fromEntries(rows.map(r => [r.symbol, JSON.parse(r.state)]));
}

/** A cache that fails every call, as Redis does while it is away. */
class DownCache implements SnapshotStore {
  readonly kind = "redis";
  private fail(): Promise<never> {
    return Promise.reject(new UnavailableError("Redis load: connect ECONNREFUSED"));
  }
  save = () => this.fail();
  load = () => this.fail();
  symbols = () => this.fail();
  ping = () => this.fail();
  close = async () => undefined;
}

/** Copies every partition's cached states into a new store. */
async function copyOf(cache: MemorySnapshotStore): Promise<MemorySnapshotStore> {
  const copy = new MemorySnapshotStore();
  for (let p = 0; p < PARTITIONS; p++) {
    const symbols = await cache.symbols(p);
    const states = await cache.load(p, symbols);
    await copy.save(
      p,
      symbols.map((symbol, i) => ({ symbol, state: states[i]! })),
    );
  }
  return copy;
}

/**
 * Consumes the scenario's log in phases, each by a new host of the same group (a restart), and
 * does to the cache between phases what the scenario is named after.
 */
async function recovery(name: RecoveryName): Promise<ScenarioResult> {
  const sql = await emptyPglite();
  const log = new EmbeddedLog("stock", PARTITIONS);
  const all = stream(name).map(r => ({ key: r.key, value: r.value }));
  const commits: [number, number][] = [];
  const published: { symbol: string; seq: number }[] = [];
  const restores: Record<string, number> = {};
  let cache: SnapshotStore = new MemorySnapshotStore();
  let older: MemorySnapshotStore | null = null;
  const cuts = [0, Math.floor(all.length * 0.3), Math.floor(all.length * 0.6), all.length];
  for (let phase = 0; phase < 3; phase++) {
    await produce(log, all.slice(cuts[phase], cuts[phase + 1]));
    const consumer = await runHost(log, sql, cache, GROUP, commits, published, restores);
    await drained(log, GROUP);
    await consumer.stop();
    const memory = cache as MemorySnapshotStore;
    if (name === "cache-emptied" && phase === 0) cache = new MemorySnapshotStore();
    if (name === "cache-stale" && phase === 0) older = await copyOf(memory);
    if (name === "cache-stale" && phase === 1) cache = older!;
    if (name === "cache-foreign" && phase === 1) {
      for (let p = 0; p < PARTITIONS; p++) {
        const symbols = await memory.symbols(p);
        const states = await memory.load(p, symbols);
        // Each symbol gets the next one's state; the first gets a damaged document instead.
        await memory.save(
          p,
          symbols.map((symbol, i) => ({
            symbol,
            state: i === 0 ? '{"v":' : states[(i + 1) % symbols.length]!,
          })),
        );
      }
    }
    if (name === "cache-down" && phase === 0) cache = new DownCache();
  }
  const result = {
    ...(await contents(sql)),
    commits,
    snapshots: {},
    published,
    replayed: null,
    records: await recordedStates(sql),
    restores,
  };
  await log.close();
  return result;
}

async function main(name: ScenarioName): Promise<ScenarioResult> {
  if ((RECOVERIES as string[]).includes(name)) return recovery(name as RecoveryName);
  const sql = await emptyPglite();
  const log = new EmbeddedLog("stock", PARTITIONS);
  const snapshots = new MemorySnapshotStore();
  const commits: [number, number][] = [];
  const records = stream(name).map(r => ({ key: r.key, value: r.value }));
  await produce(log, records);

  const published: { symbol: string; seq: number }[] = [];
  const consumer = await runHost(log, sql, snapshots, GROUP, commits, published);
  await drained(log, GROUP);
  await consumer.stop();
  const first = await contents(sql);

  let replayed = null;
  if (name === "replay") {
    // A new group reads every message again; the actors' snapshots say they applied them already.
    const publishedAgain: { symbol: string; seq: number }[] = [];
    const again = await runHost(log, sql, snapshots, `${GROUP}-again`, [], publishedAgain);
    await drained(log, `${GROUP}-again`);
    await again.stop();
    replayed = { ...(await contents(sql)), published: publishedAgain };
  }

  const symbols = [...new Set(first.ticks.map(t => t.symbol as string))];
  const stored: Record<string, unknown> = {};
  for (const symbol of symbols) {
    const [json] = await snapshots.load(partitionForKey(symbol, PARTITIONS), [symbol]);
    stored[symbol] = json ? JSON.parse(json) : null;
  }
  const recorded = await recordedStates(sql);
  await log.close();
  return { ...first, commits, snapshots: stored, published, replayed, records: recorded, restores: {} };
}

async function all(names: ScenarioName[]): Promise<Record<string, ScenarioResult>> {
  const results: Record<string, ScenarioResult> = {};
  for (const name of names) results[name] = await main(name);
  return results;
}

all(process.argv.slice(2) as ScenarioName[]).then(
  results => process.stdout.write(JSON.stringify(results)),
  err => {
    console.error(err);
    process.exit(1);
  },
);
