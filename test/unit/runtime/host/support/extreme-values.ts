/**
 * Runs the actor host on the embedded adapters (in-process log, PGlite, in-memory snapshots)
 * through the extreme-value scenarios named on the command line, in two phases with a restart of
 * the host on the same PGlite between them, and prints what it stored as JSON. PGlite cannot load
 * inside Jest's VM, so extreme-values.test.ts runs this in a child process (`tsx`).
 */
import { emptyPglite } from "../../../../support/pglite";
import { EmbeddedLog } from "../../../../../adapters/log/embedded-log";
import { PgliteClient } from "../../../../../adapters/sql/pglite-client";
import { ResultsQueries } from "../../../../../runtime/store/results-queries";
import { extremeStream, type ExtremeResult, type ExtremeScenario } from "./extreme-stream";
import { committed, runHostToTheEnd, totalVolumeReads } from "./host-phase";
import { PARTITIONS } from "./host-stream";

async function contents(sql: PgliteClient): Promise<Omit<ExtremeResult, "lag" | "restores" | "reads">> {
  const rows = async <T>(text: string) => (await sql.query<T>(text)).rows;
  const states = await rows<{ symbol: string; state: string }>("SELECT symbol, state FROM actor_state");
  return {
    ticks: await rows(
      `SELECT symbol, seq, closing_price AS close, volume, moving_average AS sma,
              exponential_moving_average AS ema, relative_strength_index AS rsi
       FROM ticks ORDER BY symbol, seq`,
    ),
    deadLetters: await rows(
      `SELECT kafka_partition AS partition, kafka_offset AS "offset", message_key AS key, reason
       FROM dead_letters ORDER BY kafka_partition, kafka_offset`,
    ),
    aggregates: await rows(
      "SELECT symbol, tick_count, total_volume::text AS total_volume FROM aggregated_metrics ORDER BY symbol",
    ),
    buckets: await rows(
      `SELECT symbol, extract(epoch FROM minute)::float8 AS minute, volume::text AS volume
       FROM minute_buckets ORDER BY symbol, minute`,
    ),
    records: Object.fromEntries(states.map(r => [r.symbol, JSON.parse(r.state)])),
  };
}

async function run(name: ExtremeScenario): Promise<ExtremeResult> {
  const sql = await emptyPglite();
  const log = new EmbeddedLog("stock", PARTITIONS);
  const stream = extremeStream(name);
  // One chunk takes all of VOL's first ticks, so that a single minute bucket passes 2^53.
  const chunkSize = name === "exact-volume" ? 10000 : 100;
  const lag: ExtremeResult["lag"] = [];
  const restores: Record<string, number>[] = [];
  for (const phase of [0, 1] as const) {
    const producer = await log.createProducer();
    await producer.send(stream.filter(r => r.phase === phase).map(r => ({ key: r.key, value: r.value })));
    await producer.close();
    restores.push(await runHostToTheEnd(log, sql, chunkSize));
    lag.push(await committed(log));
  }
  const first = stream.find(r => r.message)!.key;
  const result = {
    ...(await contents(sql)),
    lag,
    restores,
    reads: await totalVolumeReads(new ResultsQueries(sql), first),
  };
  await log.close();
  return result;
}

async function all(names: ExtremeScenario[]): Promise<Record<string, ExtremeResult>> {
  const results: Record<string, ExtremeResult> = {};
  for (const name of names) results[name] = await run(name);
  return results;
}

all(process.argv.slice(2) as ExtremeScenario[]).then(
  results => process.stdout.write(JSON.stringify(results)),
  err => {
    console.error(err);
    process.exit(1);
  },
);
