import { setTimeout as sleep } from "node:timers/promises";
import type { Producer } from "kafkajs";
import { bucketTicks } from "../../../domain/aggregates";
import type { StockMessage } from "../../../domain/messages";
import { closeRelative, seededRandom } from "../../unit/domain/fixtures";
import type { AppProcess } from "../../support/processes";
import { waitFor } from "../../support/stack";
import {
  committedOffsets,
  connectProducer,
  countTickRows,
  countTicks,
  expectedTickRows,
  generateMessages,
  place,
  readSnapshots,
  readTicks,
  replay,
  sendInOrder,
  seqSummary,
  settingsOf,
  SMALL_PERIODS,
  sortedByKey,
  SYMBOLS,
  useActorsScenario,
  waitUntilCommitted,
} from "./harness";

/**
 * The effectively-once promise under the worst failure: an actors process SIGKILLed at random
 * points of a live stream (idle, mid-batch, mid catch-up), restarted each time. At the end the
 * stored results and the Redis snapshots must be exactly those of one uninterrupted run.
 */

const PARTITIONS = 4;
const ENV = { ...SMALL_PERIODS, KAFKA_SESSION_TIMEOUT_MS: "6000", LOG_LEVEL: "info" };
const settings = settingsOf(ENV);
const RATE = 1500;
const MESSAGES = 52000;
const KILLS = 4;
/**
 * Held back from the stream for each odd kill and let out right after the kill before it, while
 * the process is dead: however fast the machine drained the stream, the restarted process then
 * has a backlog that piled up while it was down.
 */
const BURST = 3000;
/** Generous: a new member waits for the dead one's session (6 s), and starts slowly on a loaded machine. */
const RESTART_TIMEOUT_MS = 90000;

const ctx = useActorsScenario("actors_crash", PARTITIONS);

function startProcess(): AppProcess {
  return ctx.startProcess(`actors-${ctx.processes.length + 1}`, ENV);
}

const tickCount = () => countTickRows(ctx.db);

/**
 * Sends `messages` in order at about `perSecond` (like the harness's PacedStream), but never past
 * `allowed` of them until `allow()` raises it: the test decides when the last messages go out.
 */
class HeldStream {
  sent = 0;
  readonly done: Promise<void>;
  private allowed: number;
  private wake: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly messages: readonly StockMessage[],
    private readonly perSecond: number,
    allowed: number,
  ) {
    this.allowed = Math.min(allowed, messages.length);
    this.done = this.run();
  }

  /** Lets `n` more messages out (all of them without `n`). */
  allow(n = Infinity): void {
    this.allowed += n;
    this.wake?.();
    this.wake = null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.allow();
    await this.done.catch(() => undefined);
  }

  private async run(): Promise<void> {
    const perTick = Math.max(1, Math.round((this.perSecond * 50) / 1000));
    let origin = Date.now();
    let originSent = 0;
    while (this.sent < this.messages.length && !this.stopped) {
      if (this.sent >= this.allowed) {
        await new Promise<void>(resolve => (this.wake = resolve));
        // Paced from here on, not in a burst to catch up with the time spent held.
        origin = Date.now();
        originSent = this.sent;
        continue;
      }
      const chunk = this.messages.slice(this.sent, Math.min(this.sent + perTick, this.allowed));
      await sendInOrder(this.producer, this.topic, chunk, chunk.length);
      this.sent += chunk.length;
      const wait = origin + ((this.sent - originSent) / this.perSecond) * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
    }
  }
}

/** Rows whose message lies at or past its partition's committed offset: work a restart replays. */
async function storedPastCommit(): Promise<number> {
  const committed = await committedOffsets(ctx.scenario.topic, ctx.scenario.groupId);
  const { rows } = await ctx.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ticks t
     JOIN unnest($1::int[], $2::bigint[]) AS c(p, next) ON c.p = t.kafka_partition
     WHERE t.kafka_offset >= c.next`,
    [committed.map((_, p) => p), committed.map(c => Math.max(c, 0))],
  );
  return rows[0].n;
}

describe("actors process killed mid-stream", () => {
  it("stores every result exactly once and ends in the state of an uninterrupted run", async () => {
    const { scenario, db } = ctx;
    const seed = Date.now() % 1_000_000;
    const random = seededRandom(seed);
    const messages = generateMessages({
      seed: 31,
      symbols: SYMBOLS,
      ticks: MESSAGES - 800,
      side: 700,
      economic: 100,
    });
    const placed = place(messages, PARTITIONS);
    const expected = replay(placed, settings);
    const history: string[] = [`kill seed ${seed}`];

    let current = startProcess();
    await current.waitForLine(/assigned partitions \[0, 1, 2, 3\]/, RESTART_TIMEOUT_MS);
    ctx.producer = await connectProducer();
    // BURST messages per odd kill are held back (see BURST).
    const oddKills = Math.floor(KILLS / 2);
    const stream = new HeldStream(ctx.producer, scenario.topic, messages, RATE, MESSAGES - oddKills * BURST);
    ctx.stream = stream;

    let rowsAtStart = 0;
    for (let k = 0; k < KILLS; k++) {
      if (k % 2 === 1) {
        // Right after a restart the process works through the backlog that piled up while the
        // group waited for the dead member: kill it in the middle of that burst.
        await waitFor(
          "the restarted process to work",
          async () => (await tickCount()) > rowsAtStart,
          RESTART_TIMEOUT_MS,
          20,
        );
        // Best effort for the narrowest window: results stored, their offsets not yet committed.
        await waitFor(
          "results ahead of the commit",
          async () => (await storedPastCommit()) > 0,
          3000,
          0,
        ).catch(() => undefined);
      } else {
        await sleep(1500 + random() * 5000);
      }
      history.push(`kill ${k + 1}: ${await tickCount()} rows, ${stream.sent} sent`);
      await current.kill("SIGKILL");
      history.push(`  stored past the committed offsets: ${await storedPastCommit()} rows`);
      rowsAtStart = await tickCount();
      // The next kill hits the catch-up of a backlog: make sure there is one, even if the stream
      // had already sent everything it was allowed while the machine was slow to restart.
      if (k % 2 === 0 && k + 1 < KILLS) stream.allow(BURST);
      current = startProcess();
      // A new member waits for the dead one's session to expire before it gets the partitions.
      await current.waitForLine(/assigned partitions \[0, 1, 2, 3\]/, RESTART_TIMEOUT_MS);
    }
    stream.allow();
    await stream.done;
    await waitUntilCommitted(scenario.topic, scenario.groupId, 120000);
    history.push(`done: ${await tickCount()} rows`);

    // Every tick once: per symbol, seq 1..n without gaps or duplicates.
    const summary = await seqSummary(db);
    const counts = Object.fromEntries([...summary].map(([s, r]) => [s, r]));
    const want = Object.fromEntries(
      [...expected.ticks].map(([s, t]) => [s, { rows: t.length, distinct: t.length, min: 1, max: t.length }]),
    );
    expect({ history, counts }).toEqual({ history, counts: want });
    expect(await tickCount()).toBe(countTicks(messages));

    // The same rows, bit for bit, as the uninterrupted run, and the same signals.
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    const { rows: signals } = await db.query<{ symbol: string; seq: number; side: string }>(
      `SELECT symbol, seq, side FROM signals ORDER BY symbol COLLATE "C", seq`,
    );
    expect(signals).toEqual(
      sortedByKey(expected.signals, s => `${s.symbol}/${String(s.seq).padStart(8, "0")}`).map(s => ({
        symbol: s.symbol,
        seq: s.seq,
        side: s.side,
      })),
    );
    expect(signals.length).toBeGreaterThan(100);

    // Side data and market-wide indicators once each.
    const { rows: side } = await db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM order_book) + (SELECT count(*) FROM news_sentiment)
              + (SELECT count(*) FROM market_data) AS n`,
    );
    expect(side[0].n).toBe(expected.side.length);
    const { rows: economic } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM economic_indicators",
    );
    expect(economic[0].n).toBe(expected.economic.length);

    // Replays must not have counted any tick twice into the additive minute buckets.
    const { rows: buckets } = await db.query<{
      symbol: string;
      minute: number;
      tickCount: number;
      volume: number;
      sumClose: number;
    }>(
      `SELECT symbol, extract(epoch FROM minute)::float8 AS minute, tick_count AS "tickCount", volume::float8 AS volume,
              sum_close AS "sumClose"
       FROM minute_buckets ORDER BY symbol COLLATE "C", minute`,
    );
    const wantBuckets = bucketTicks([...expected.ticks.values()].flat());
    expect(buckets.map(b => [b.symbol, b.minute, b.tickCount, b.volume])).toEqual(
      wantBuckets.map(b => [b.symbol, b.minute, b.tickCount, b.volume]),
    );
    buckets.forEach((b, i) => expect(closeRelative(b.sumClose, wantBuckets[i].sumClose, 1e-9)).toBe(true));

    // Running aggregates and the actors' final state.
    const { rows: aggregates } = await db.query<{
      symbol: string;
      tick_count: number;
      total_volume: string;
      last_seq: number;
    }>(
      `SELECT symbol, tick_count, total_volume::text AS total_volume, last_seq
       FROM aggregated_metrics ORDER BY symbol COLLATE "C"`,
    );
    expect(aggregates).toEqual(
      sortedByKey([...expected.actors.values()], a => a.symbol).map(a => ({
        symbol: a.symbol,
        tick_count: a.seq,
        total_volume: a.totalVolumeExact(),
        last_seq: a.seq,
      })),
    );
    const snapshots = await readSnapshots(scenario);
    expect([...snapshots.keys()].sort()).toEqual([...expected.actors.keys()].sort());
    for (const [symbol, actor] of expected.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
  }, 600000);
});
