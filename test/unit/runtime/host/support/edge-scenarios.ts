/**
 * The actor host fed hand-built batches of one partition, on PGlite in memory, with states
 * recorded every chunk unless a scenario says otherwise: each scenario replays one way the
 * exactly-once promise used to break at the edges (see partition-task.test.ts, which runs this
 * in a child process because PGlite cannot load inside Jest's VM, and checks what it prints).
 */
import { emptyPglite } from "../../../../support/pglite";
import type { LogBatch, LogMessage } from "../../../../../adapters/log/types";
import { MemorySnapshotStore } from "../../../../../adapters/snapshots/memory-snapshots";
import { PgliteClient } from "../../../../../adapters/sql/pglite-client";
import type { PriceTick } from "../../../../../domain/messages";
import { ActorHost, type ActorHostOptions } from "../../../../../runtime/host/actor-host";
import {
  IDEMPOTENCY_INDEX_HEADER,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_USE_HEADER,
} from "../../../../../runtime/apply-chunk";
import { ResultsStore } from "../../../../../runtime/store/results-store";

export const EDGE_SETTINGS = { smaPeriod: 3, emaPeriod: 3, rsiPeriod: 3, rsiOversold: 30, rsiOverbought: 70 };
const T0 = 1_764_000_000_000;
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/** A price tick of `symbol` closing at `close`. */
export function tick(symbol: string, close: number, i = 0): PriceTick {
  return {
    stock_symbol: symbol,
    opening_price: close,
    closing_price: close,
    high: close + 1,
    low: close - 1,
    volume: 100 + i,
    timestamp: 1_764_000_000 + i,
  };
}

interface Sent {
  value: object;
  /** Idempotency key, use and index, as the gateway sets them. */
  key?: [string, number, number];
  /** When the log accepted it (ms); default T0 + offset. */
  at?: number;
}

function message(offset: number, s: Sent): LogMessage {
  const v = s.value as { stock_symbol?: string; indicator_name?: string };
  return {
    partition: 0,
    offset,
    key: v.stock_symbol ?? v.indicator_name ?? null,
    value: Buffer.from(JSON.stringify(s.value)),
    timestamp: s.at ?? T0 + offset,
    headers: s.key && {
      [IDEMPOTENCY_KEY_HEADER]: s.key[0],
      [IDEMPOTENCY_USE_HEADER]: String(s.key[1]),
      [IDEMPOTENCY_INDEX_HEADER]: String(s.key[2]),
    },
  };
}

/** The log of partition 0. */
class Log {
  readonly messages: LogMessage[] = [];
  append(...sent: Sent[]): this {
    for (const s of sent) this.messages.push(message(this.messages.length, s));
    return this;
  }
  from(offset: number): LogMessage[] {
    return this.messages.slice(offset);
  }
}

interface BatchOptions {
  /** Kafka's generation id of the batch's assignment; absent: a log without generations. */
  generation?: number;
  /** Whether the log confirms this member now (a heartbeat it accepts); default true. */
  confirming?: () => boolean;
}

function batchOf(messages: LogMessage[], o: BatchOptions = {}): LogBatch {
  let confirmedAt = Date.now();
  return {
    partition: 0,
    messages,
    highWatermark: (messages.at(-1)?.offset ?? -1) + 1,
    heartbeat: async () => {
      if (o.confirming?.() ?? true) confirmedAt = Date.now();
    },
    isActive: () => true,
    ...(o.generation === undefined
      ? {}
      : { groupGeneration: () => ({ id: o.generation as number, confirmedAt }) }),
  };
}

/** One node's host, with what it announced and committed. */
class Node {
  readonly host: ActorHost;
  readonly published: { ticks: number[]; signals: number[] }[] = [];
  readonly commits: number[] = [];
  private generation = 0;

  constructor(results: ResultsStore, options: Partial<ActorHostOptions> = {}) {
    this.host = new ActorHost({
      settings: EDGE_SETTINGS,
      results,
      snapshots: new MemorySnapshotStore(),
      commit: async (_p, next) => void this.commits.push(next),
      partitionCount: 1,
      idleMs: 60000,
      retryMaxBackoffMs: 20,
      recordIntervalMs: 0,
      generationWaitMs: 300,
      logger: quiet,
      observer: {
        published: (_p, ticks, signals) =>
          this.published.push({ ticks: ticks.map(t => t.seq), signals: signals.map(s => s.seq) }),
      },
      ...options,
    });
    this.assign();
  }

  assign(): void {
    this.host.onAssignment([0], ++this.generation);
  }

  handle(messages: LogMessage[], o?: BatchOptions): Promise<number> {
    return this.host.handleBatch(batchOf(messages, o), this.generation);
  }
}

async function database(): Promise<{ sql: PgliteClient; results: ResultsStore }> {
  const sql = await emptyPglite();
  return { sql, results: new ResultsStore(sql) };
}

async function stored(sql: PgliteClient) {
  const rows = async (text: string) => (await sql.query<Record<string, unknown>>(text)).rows;
  return {
    ticks: await rows(
      "SELECT symbol, seq, closing_price AS close, kafka_offset AS offset FROM ticks ORDER BY symbol, seq",
    ),
    // Every column, so that this also runs against a schema from before the `kind` column.
    deadLetters: (await rows("SELECT * FROM dead_letters ORDER BY kafka_offset")).map(r => ({
      offset: r.kafka_offset,
      kind: r.kind,
      reason: r.reason,
    })),
    orderBook: await rows("SELECT symbol, side_seq FROM order_book ORDER BY symbol, side_seq"),
  };
}

/** Fails the first call of `method` with `err`, then behaves. */
function failOnce<K extends keyof ResultsStore>(results: ResultsStore, method: K, err: Error): void {
  const original = (results[method] as (...args: unknown[]) => unknown).bind(results);
  let failed = false;
  Object.assign(results, {
    [method]: (...args: unknown[]) => {
      if (failed) return original(...args);
      failed = true;
      return Promise.reject(err);
    },
  });
}

async function error(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
}

const SCENARIOS = {
  /** 2. The idempotency marks' read fails once after the claim (a statement timeout); then the batch comes again. */
  async "marks-read-fails"() {
    const { sql, results } = await database();
    const log = new Log().append(
      ...[0, 1, 2].map(i => ({
        value: tick("AAPL", 100 + i, i),
        key: ["r1", 1, i] as [string, number, number],
      })),
    );
    await new Node(results).handle(log.from(0));
    // The client's retry reached the log too; a restarted node reads it.
    log.append(
      ...[0, 1, 2].map(i => ({
        value: tick("AAPL", 100 + i, i),
        key: ["r1", 1, i] as [string, number, number],
      })),
    );
    const timeout = Object.assign(new Error("canceling statement due to statement timeout"), {
      code: "57014",
    });
    failOnce(results, "idempotencyMarks", timeout);
    const node = new Node(results);
    const firstTry = await error(node.handle(log.from(3)));
    const done = await node.handle(log.from(3));
    return { firstTry, done, ...(await stored(sql)) };
  },

  /** 3a. A retry near the TTL, read after more than the TTL of consumer lag. */
  async "retry-after-lag"() {
    const { sql, results } = await database();
    const node = new Node(results, { idempotencyTtlMs: 1000 });
    const log = new Log().append({ value: tick("AAPL", 100), key: ["r1", 1, 0], at: T0 });
    await node.handle(log.from(0));
    log.append({ value: tick("AAPL", 100), key: ["r1", 1, 0], at: T0 + 50 });
    await new Promise(r => setTimeout(r, 1100));
    await node.handle(log.from(1));
    return stored(sql);
  },

  /**
   * 3b. A replay that crosses the TTL: the retry was skipped, the chunk after the last record was
   * stored but not recorded, the node crashed, and the log is read again after the TTL.
   */
  async "replay-across-ttl"() {
    const { sql, results } = await database();
    const log = new Log()
      .append({ value: tick("AAPL", 100, 0), key: ["r1", 1, 0] })
      .append({ value: tick("AAPL", 100, 0), key: ["r1", 1, 0] }, { value: tick("AAPL", 90, 1) });
    const first = new Node(results, { idempotencyTtlMs: 1000, recordIntervalMs: 3_600_000 });
    await first.handle(log.from(0).slice(0, 1));
    await first.host.flushDue(true);
    await first.handle(log.from(1));
    const storedFirst = await stored(sql);
    await new Promise(r => setTimeout(r, 1100));
    await new Node(results, { idempotencyTtlMs: 1000 }).handle(log.from(1));
    return { storedFirst, ...(await stored(sql)) };
  },

  /** 3c. A key reused after its TTL (use 2), then a restart, then the client's retry of the new use. */
  async "key-reused"() {
    const { sql, results } = await database();
    const log = new Log().append(
      ...[0, 1, 2, 3].map(i => ({
        value: tick("AAPL", 100 + i, i),
        key: ["k", 1, i] as [string, number, number],
      })),
    );
    await new Node(results, { idempotencyTtlMs: 1000 }).handle(log.from(0));
    await new Promise(r => setTimeout(r, 1100));
    // The new request under the key: two messages, indexes 0 and 1, below the old use's 3.
    log.append(
      { value: tick("AAPL", 50, 10), key: ["k", 2, 0], at: T0 + 5000 },
      { value: tick("AAPL", 51, 11), key: ["k", 2, 1], at: T0 + 5001 },
    );
    await new Node(results, { idempotencyTtlMs: 1000 }).handle(log.from(4));
    log.append(
      { value: tick("AAPL", 50, 10), key: ["k", 2, 0], at: T0 + 5100 },
      { value: tick("AAPL", 51, 11), key: ["k", 2, 1], at: T0 + 5101 },
    );
    await new Node(results, { idempotencyTtlMs: 1000 }).handle(log.from(6));
    return stored(sql);
  },

  /** 4. The offset commit after a stored chunk fails (a rebalance): its signal must be announced all the same. */
  async "commit-fails"() {
    const { sql, results } = await database();
    let commits = 0;
    const node = new Node(results, {
      commit: async () => {
        commits += 1;
        throw Object.assign(new Error("The group is rebalancing"), { type: "REBALANCE_IN_PROGRESS" });
      },
    });
    // Falling closes: RSI(3) enters the oversold zone at the fourth tick, a buy signal.
    const log = new Log().append(...[100, 99, 98, 97, 96].map((c, i) => ({ value: tick("AAPL", c, i) })));
    const failure = await error(node.handle(log.from(0)));
    const signals = (await sql.query<{ seq: number }>("SELECT seq FROM signals ORDER BY seq")).rows;
    return { failure, commits, signals, published: node.published };
  },

  /** 5. A node froze after fetching the first batch of its assignment; the group moved the partition on. */
  async "paused-node"() {
    const { sql, results } = await database();
    const log = new Log().append(...[0, 1, 2, 3].map(i => ({ value: tick("AAPL", 100 + i, i) })));
    const paused = new Node(results, { owner: "paused" });
    const rightful = new Node(results, { owner: "rightful" });
    await rightful.handle(log.from(0).slice(0, 2), { generation: 6 });
    // It wakes up and handles the batch it fetched in generation 5; Kafka answers it no more.
    const pausedDone = await paused.handle(log.from(0), { generation: 5, confirming: () => false });
    const rightfulDone = await rightful.handle(log.from(2), { generation: 6 });
    const epochs = (await sql.query("SELECT * FROM partition_epochs")).rows;
    return { pausedDone, rightfulDone, epochs, ...(await stored(sql)) };
  },

  /** 5'. The consumer group was deleted and made anew: its generations start again at 1. */
  async "group-made-anew"() {
    const { sql, results } = await database();
    const log = new Log().append(...[0, 1, 2].map(i => ({ value: tick("AAPL", 100 + i, i) })));
    await new Node(results).handle(log.from(0).slice(0, 1), { generation: 40 });
    const done = await new Node(results).handle(log.from(1), { generation: 1 });
    const epochs = (await sql.query("SELECT * FROM partition_epochs")).rows;
    return { done, epochs, ...(await stored(sql)) };
  },

  /** 6. A replayed chunk (a new node reads from the start) announces no tick: browsers would see seq go back. */
  async "replay-announces"() {
    const { sql, results } = await database();
    const log = new Log().append(...[0, 1, 2].map(i => ({ value: tick("AAPL", 100 + i, i) })));
    const first = new Node(results);
    await first.handle(log.from(0));
    // The record of its actor is lost (and no cache holds it): the next node computes it again from 0.
    await sql.query("DELETE FROM actor_state");
    const again = new Node(results);
    await again.handle(log.from(0));
    return { first: first.published, again: again.published };
  },

  /** 6. The REST live view while a chunk is applied but not stored, and after that chunk failed. */
  async "view-in-flight"() {
    const { results } = await database();
    const log = new Log().append({ value: tick("AAPL", 100, 0) }, { value: tick("AAPL", 101, 1) });
    const node = new Node(results);
    await node.handle(log.from(0).slice(0, 1));
    let release: () => void = () => undefined;
    const gate = new Promise<void>(r => (release = r));
    const write = results.write.bind(results);
    Object.assign(results, {
      write: async () => {
        await gate;
        throw new Error("the transaction failed");
      },
    });
    const handling = node.handle(log.from(1));
    await new Promise(r => setTimeout(r, 100));
    const during = (await node.host.view("AAPL"))?.seq;
    release();
    Object.assign(results, { write });
    await handling.catch(() => undefined);
    const after = (await node.host.view("AAPL"))?.seq;
    return { during, after };
  },

  /** 6. A chunk of side data alone for an actor with no record, behind the ticks Postgres holds. */
  async "side-data-unverified"() {
    const { sql, results } = await database();
    const book = {
      data_type: "order_book",
      timestamp: 1_764_000_100,
      stock_symbol: "AAPL",
      order_type: "buy",
      price: 99,
      quantity: 5,
    };
    const log = new Log()
      .append(...[0, 1, 2].map(i => ({ value: tick("AAPL", 100 + i, i) })))
      .append({ value: book }, { value: { ...book, quantity: 6 } });
    await new Node(results).handle(log.from(0).slice(0, 4));
    await sql.query("DELETE FROM actor_state");
    const failure = await error(new Node(results).handle(log.from(4)));
    return { failure, ...(await stored(sql)) };
  },

  /** 1. Postgres refuses one message's results with a data error (a trigger stands in for an out-of-range value). */
  async "data-error"() {
    const { sql, results } = await database();
    await sql.exec(`
      CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.closing_price = 123.25 THEN
          RAISE EXCEPTION 'value % is out of range for type bigint', NEW.volume USING ERRCODE = '22003';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_close BEFORE INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION refuse_close();`);
    const log = new Log().append(
      { value: tick("AAPL", 100, 0) },
      { value: tick("MSFT", 50, 1) },
      { value: tick("AAPL", 123.25, 2) },
      { value: tick("MSFT", 51, 3) },
      { value: tick("AAPL", 101, 4) },
    );
    const node = new Node(results);
    const done = await node.handle(log.from(0));
    const first = await stored(sql);
    // The record of AAPL is lost and the trigger gone: a new node computes AAPL again from offset 0.
    await sql.exec("DROP TRIGGER refuse_close ON ticks; DELETE FROM actor_state WHERE symbol = 'AAPL'");
    const replayDone = await new Node(results).handle(log.from(0));
    const record = (await sql.query<{ state: string }>("SELECT state FROM actor_state WHERE symbol = 'AAPL'"))
      .rows;
    const state = JSON.parse(record[0].state) as { seq: number; lastTick: { close: number } };
    return {
      done,
      first,
      replayDone,
      replayed: await stored(sql),
      record: { seq: state.seq, close: state.lastTick.close },
    };
  },

  /** 1. A recorded state one valid tick away from overflowing (written before the bounds, or damaged). */
  async "state-overflows"() {
    const { sql, results } = await database();
    const log = new Log().append({ value: tick("AAPL", 100, 0) });
    await new Node(results).handle(log.from(0));
    const { rows } = await sql.query<{ state: string }>(
      "SELECT state FROM actor_state WHERE symbol = 'AAPL'",
    );
    // Wilder's smoothing multiplies the average gain by period - 1 before it divides.
    const state = JSON.parse(rows[0].state) as { rsi: object };
    Object.assign(state.rsi, {
      changes: EDGE_SETTINGS.rsiPeriod,
      avgGain: Number.MAX_VALUE,
      previousClose: 100,
    });
    await sql.query("UPDATE actor_state SET state = $1 WHERE symbol = 'AAPL'", [JSON.stringify(state)]);
    log.append({ value: tick("AAPL", 200, 1) }, { value: tick("MSFT", 50, 2) });
    const done = await new Node(results).handle(log.from(1));
    // A restart: the next node restores AAPL from its record and reads on.
    log.append({ value: tick("AAPL", 201, 3) }, { value: tick("MSFT", 51, 4) });
    const afterRestart = await error(new Node(results).handle(log.from(3)));
    return { done, afterRestart, ...(await stored(sql)) };
  },
};

export type EdgeScenario = keyof typeof SCENARIOS;

async function all(names: EdgeScenario[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const name of names) out[name] = await SCENARIOS[name]();
  return out;
}

all(process.argv.slice(2) as EdgeScenario[]).then(
  results => process.stdout.write(JSON.stringify(results)),
  err => {
    console.error(err);
    process.exit(1);
  },
);
