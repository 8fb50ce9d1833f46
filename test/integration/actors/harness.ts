import Redis from "ioredis";
import type { Producer } from "kafkajs";
import { PostgresClient } from "../../../adapters/sql/postgres-client";
import type { SymbolSideData, StockMessage } from "../../../domain/messages";
import { isPriceTick, messageKey, parseMessage } from "../../../domain/messages";
import {
  SymbolActor,
  type ActorSnapshot,
  type IndicatorSettings,
  type SideDataRecord,
  type Signal,
  type TickResult,
} from "../../../domain/symbol-actor";
import { partitionForKey } from "../../../lib/partitioner";
import { createNode, type StockNode } from "../../../app/node";
import { seededRandom } from "../../unit/domain/fixtures";
import { AppProcess } from "../../support/processes";
import {
  createTopic,
  deleteTopic,
  freshDatabase,
  kafkaClient,
  STACK,
  testConfig,
  uniqueName,
  waitFor,
  withAdmin,
} from "../../support/stack";

/**
 * Shared pieces of the actors integration tests: seeded input, a sequential producer whose
 * partition offsets are therefore known in advance, the uninterrupted in-memory run every
 * persisted result is compared with, and probes of Kafka, Postgres and Redis.
 */

/** Small periods, so a few hundred ticks per symbol give many signals and full windows. */
export const SMALL_PERIODS = { SMA_PERIOD: "5", EMA_PERIOD: "4", RSI_PERIOD: "3" } as const;

export function settingsOf(env: Record<string, string | undefined>): IndicatorSettings {
  return testConfig(env).indicators;
}

export const SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "BRK.B", "NVDA", "META"];

const ECONOMIC_NAMES = ["GDP", "CPI", "UNEMPLOYMENT", "INTEREST_RATE"];

/** Near 2023-11-14; every generated event time is a multiple of 0.25 s, exact in binary and in SQL. */
export const START_TS = 1_700_000_040;

export interface GenerateOptions {
  seed: number;
  symbols: readonly string[];
  ticks: number;
  side?: number;
  economic?: number;
}

/**
 * Valid messages in a seeded random order: random-walk price ticks (with flat stretches and event
 * times that sometimes step back), side data of every kind, and market-wide indicators.
 */
export function generateMessages(o: GenerateOptions): StockMessage[] {
  const random = seededRandom(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const price = o.symbols.map(() => 20 + random() * 300);
  const ts = o.symbols.map(() => START_TS + Math.floor(random() * 240) * 0.25);
  const kinds: ("tick" | "side" | "economic")[] = [
    ...Array<"tick">(o.ticks).fill("tick"),
    ...Array<"side">(o.side ?? 0).fill("side"),
    ...Array<"economic">(o.economic ?? 0).fill("economic"),
  ];
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
  }
  const out: StockMessage[] = [];
  let economicTs = START_TS;
  for (const kind of kinds) {
    if (kind === "economic") {
      economicTs += 30;
      out.push({
        data_type: "economic_indicator",
        timestamp: economicTs,
        indicator_name: pick(ECONOMIC_NAMES),
        value: Math.round(random() * 1e6) / 100,
      });
      continue;
    }
    const s = Math.floor(random() * o.symbols.length);
    const symbol = o.symbols[s];
    // Mostly forward in time, sometimes back by up to a minute: event time is not arrival order.
    ts[s] = Math.max(
      START_TS,
      ts[s] + (random() < 0.06 ? -Math.floor(random() * 240) : Math.floor(random() * 80)) * 0.25,
    );
    if (kind === "side") {
      out.push(sideMessage(random, symbol, price[s], ts[s]));
      continue;
    }
    const open = price[s];
    const close = random() < 0.05 ? open : open * (1 + (random() - 0.5) * 0.04);
    price[s] = close;
    out.push({
      stock_symbol: symbol,
      opening_price: open,
      closing_price: close,
      high: Math.max(open, close) * (1 + random() * 0.003),
      low: Math.min(open, close) * (1 - random() * 0.003),
      volume: random() < 0.03 ? 0 : Math.floor(random() * 10_000),
      timestamp: ts[s],
    });
  }
  return out;
}

function sideMessage(random: () => number, symbol: string, price: number, timestamp: number): SymbolSideData {
  const r = random();
  if (r < 0.5) {
    return {
      data_type: "order_book",
      stock_symbol: symbol,
      timestamp,
      order_type: random() < 0.5 ? "buy" : "sell",
      price: price * (1 + (random() - 0.5) * 0.01),
      quantity: 1 + Math.floor(random() * 1000),
    };
  }
  if (r < 0.8) {
    return {
      data_type: "news_sentiment",
      stock_symbol: symbol,
      timestamp,
      sentiment_score: random() * 2 - 1,
      sentiment_magnitude: random() * 5,
    };
  }
  return {
    data_type: "market_data",
    stock_symbol: symbol,
    timestamp,
    market_cap: 1e9 + random() * 2e12,
    pe_ratio: random() * 80 - 10,
  };
}

export interface Placed {
  message: StockMessage;
  partition: number;
  offset: number;
}

/**
 * Where each message lands when one producer sends them in this order to a fresh topic: the
 * key's partition (Kafka's default partitioner), at the next offset of that partition.
 */
export function place(messages: readonly StockMessage[], partitions: number, after?: number[]): Placed[] {
  const next = after ? [...after] : Array<number>(partitions).fill(0);
  return messages.map(message => {
    const partition = partitionForKey(messageKey(message), partitions);
    return { message, partition, offset: next[partition]++ };
  });
}

export interface EconomicRecord {
  name: string;
  value: number;
  timestamp: number;
  partition: number;
  offset: number;
}

/** What an uninterrupted run computes: one actor per symbol fed its messages in partition order. */
export interface Expected {
  actors: Map<string, SymbolActor>;
  ticks: Map<string, TickResult[]>;
  signals: Signal[];
  side: SideDataRecord[];
  economic: EconomicRecord[];
}

export function replay(placed: readonly Placed[], settings: IndicatorSettings): Expected {
  const e: Expected = { actors: new Map(), ticks: new Map(), signals: [], side: [], economic: [] };
  // Per partition in offset order, as the loops see it; symbols never share an actor across partitions.
  const ordered = [...placed].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  for (const p of ordered) {
    // Through JSON and the schema, exactly as the message reaches the actor from the log.
    const parsed = parseMessage(JSON.parse(JSON.stringify(p.message)));
    if (!parsed.ok) throw new Error(`generated an invalid message: ${JSON.stringify(parsed.issues)}`);
    const m = parsed.message;
    if (!("stock_symbol" in m)) {
      e.economic.push({
        name: m.indicator_name,
        value: m.value,
        timestamp: m.timestamp,
        partition: p.partition,
        offset: p.offset,
      });
      continue;
    }
    let actor = e.actors.get(m.stock_symbol);
    if (!actor) {
      actor = new SymbolActor(m.stock_symbol, settings);
      e.actors.set(m.stock_symbol, actor);
      e.ticks.set(m.stock_symbol, []);
    }
    const out = actor.apply(m, p.offset);
    if (out === null) throw new Error("an uninterrupted run never skips a message");
    if (out.kind === "tick") {
      e.ticks.get(m.stock_symbol)!.push(out.tick);
      if (out.signal) e.signals.push(out.signal);
    } else {
      e.side.push(out.side);
    }
  }
  return e;
}

export function countTicks(messages: readonly StockMessage[]): number {
  return messages.reduce((n, m) => n + (isPriceTick(m) ? 1 : 0), 0);
}

/** An idempotent producer that sends in order and waits for every acknowledgement (acks=all). */
export async function connectProducer(): Promise<Producer> {
  const producer = kafkaClient("actors-test-producer").producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  return producer;
}

export async function sendInOrder(
  producer: Producer,
  topic: string,
  messages: readonly StockMessage[],
  chunk = 500,
): Promise<void> {
  for (let i = 0; i < messages.length; i += chunk) {
    await producer.send({
      topic,
      acks: -1,
      messages: messages.slice(i, i + chunk).map(m => ({ key: messageKey(m), value: JSON.stringify(m) })),
    });
  }
}

export async function produceAll(topic: string, messages: readonly StockMessage[]): Promise<void> {
  const producer = await connectProducer();
  try {
    await sendInOrder(producer, topic, messages);
  } finally {
    await producer.disconnect();
  }
}

/**
 * Sends `messages` in order at about `perSecond`, in small acknowledged chunks, until all are sent
 * or `stop()` is called. `sent` counts acknowledged messages.
 */
export class PacedStream {
  sent = 0;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(producer: Producer, topic: string, messages: readonly StockMessage[], perSecond: number) {
    const tickMs = 50;
    const perTick = Math.max(1, Math.round((perSecond * tickMs) / 1000));
    this.done = (async () => {
      const started = Date.now();
      while (this.sent < messages.length && !this.stopped) {
        const chunk = messages.slice(this.sent, this.sent + perTick);
        await sendInOrder(producer, topic, chunk, chunk.length);
        this.sent += chunk.length;
        const due = started + (this.sent / perSecond) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise(r => setTimeout(r, wait));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done.catch(() => undefined);
  }
}

export async function endOffsets(topic: string): Promise<number[]> {
  return withAdmin(async admin => {
    const offsets = await admin.fetchTopicOffsets(topic);
    const out: number[] = [];
    for (const o of offsets) out[o.partition] = Number(o.high);
    return out;
  });
}

/** The group's committed offsets (next offset to read), -1 where it committed nothing. */
export async function committedOffsets(topic: string, groupId: string): Promise<number[]> {
  return withAdmin(async admin => {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const out: number[] = [];
    for (const p of t?.partitions ?? []) out[p.partition] = Number(p.offset);
    return out;
  });
}

/** Waits until the group has committed every message of the topic. */
export async function waitUntilCommitted(
  topic: string,
  groupId: string,
  timeoutMs = 60000,
): Promise<number[]> {
  let last = "";
  try {
    return await waitFor(
      `group ${groupId} to commit all of ${topic}`,
      async () => {
        const [ends, committed] = await Promise.all([endOffsets(topic), committedOffsets(topic, groupId)]);
        last = `ends ${ends.join(",")} committed ${committed.join(",")}`;
        return ends.every((end, p) => end === 0 || committed[p] === end) ? committed : undefined;
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (${last})`);
  }
}

export interface TestScenario {
  topic: string;
  groupId: string;
  partitions: number;
  databaseUrl: string;
}

/** A scenario's own names on a database: a fresh topic and consumer group, both named after `prefix`. */
export function newScenario(prefix: string, partitions: number, databaseUrl: string): TestScenario {
  return { topic: uniqueName(prefix), groupId: uniqueName(`${prefix}_group`), partitions, databaseUrl };
}

/** What a test file's scenario hands its tests; `producer`, `stream` and `node` are set by the tests. */
export interface ActorsScenario {
  /** Set up by the time the tests (and `setup`) run. */
  readonly scenario: TestScenario;
  readonly db: PostgresClient;
  /** The processes `startProcess` started, SIGKILLed at the end. */
  readonly processes: AppProcess[];
  /** Disconnected at the end. */
  producer: Producer | null;
  /** Stopped at the end (a PacedStream, or a test's own stream). */
  stream: { stop(): Promise<void> } | null;
  /** An actors node in this process, stopped at the end. */
  node: StockNode | null;
  /** Starts an actors process of the scenario (`actorsEnv` plus `env`), killed at the end. */
  startProcess(name: string, env?: Record<string, string>): AppProcess;
}

export interface ActorsScenarioOptions {
  /** The rest of the beforeAll hook, once the scenario exists: starting nodes, producing input. */
  setup?: (ctx: ActorsScenario) => Promise<void>;
  /** Extra teardown, after the producer is stopped and before the processes are killed. */
  beforeKill?: (ctx: ActorsScenario) => void | Promise<void>;
  /** The beforeAll hook's timeout, setup included. */
  setupTimeoutMs?: number;
  /** The afterAll hook's timeout. */
  teardownTimeoutMs?: number;
}

/**
 * Registers the beforeAll and afterAll hooks of a test file's scenario: a fresh database (with a
 * client of it) and a fresh topic of `partitions` partitions, named after `prefix`; at the end,
 * whatever the tests started is stopped and the topic, snapshots and database are removed.
 */
export function useActorsScenario(
  prefix: string,
  partitions: number,
  options: ActorsScenarioOptions = {},
): ActorsScenario {
  let scenario: TestScenario | undefined;
  let db: PostgresClient | undefined;
  let dropDatabase: (() => Promise<void>) | undefined;
  const processes: AppProcess[] = [];
  const notYet = (what: string): never => {
    throw new Error(`the ${what} of ${prefix} is not set up (its beforeAll failed or has not run)`);
  };
  const ctx: ActorsScenario = {
    get scenario() {
      return scenario ?? notYet("scenario");
    },
    get db() {
      return db ?? notYet("database");
    },
    processes,
    producer: null,
    stream: null,
    node: null,
    startProcess(name, env = {}) {
      const p = new AppProcess(name, actorsEnv(ctx.scenario, env)).start();
      processes.push(p);
      return p;
    },
  };

  beforeAll(async () => {
    const database = await freshDatabase();
    dropDatabase = database.drop;
    db = openDatabase(database.url);
    scenario = newScenario(prefix, partitions, database.url);
    await createTopic(scenario.topic, partitions);
    await options.setup?.(ctx);
  }, options.setupTimeoutMs ?? 30000);

  afterAll(async () => {
    await ctx.stream?.stop();
    await ctx.producer?.disconnect();
    await options.beforeKill?.(ctx);
    await Promise.all(processes.map(p => p.kill("SIGKILL")));
    await ctx.node?.broker.stop();
    await db?.close();
    if (scenario) {
      await deleteTopic(scenario.topic);
      await deleteSnapshots(scenario);
    }
    await dropDatabase?.();
  }, options.teardownTimeoutMs ?? 60000);

  return ctx;
}

/** Rows in the `ticks` table. */
export async function countTickRows(db: PostgresClient): Promise<number> {
  const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ticks");
  return rows[0].n;
}

/** The environment of an actors node for a scenario, on the real servers. */
export function actorsEnv(s: TestScenario, extra: Record<string, string> = {}): Record<string, string> {
  return {
    SERVICES: "actors",
    KAFKA_BROKERS: STACK.kafkaBrokers,
    KAFKA_TOPIC: s.topic,
    KAFKA_GROUP_ID: s.groupId,
    KAFKA_PARTITIONS: String(s.partitions),
    DATABASE_URL: s.databaseUrl,
    REDIS_URL: STACK.redisUrl,
    DATABASE_POOL_SIZE: "4",
    METRICS_PORT: "0",
    // Dead letters and retries are expected in these tests; their warnings would drown the report.
    LOG_LEVEL: "error",
    DEMO_FEED: "0",
    ...extra,
  };
}

/** An actors node in this process (no transporter), started. */
export async function startActorsNode(env: Record<string, string>): Promise<StockNode> {
  const node = createNode(testConfig(env));
  await node.broker.start();
  return node;
}

/** The Redis key prefix of a group's snapshots: one hash tag per partition. */
export function snapshotPrefix(s: Pick<TestScenario, "groupId" | "topic">): string {
  return `${s.groupId}:${s.topic}`;
}

export async function readSnapshots(
  s: Pick<TestScenario, "groupId" | "topic" | "partitions">,
): Promise<Map<string, ActorSnapshot>> {
  const redis = new Redis(STACK.redisUrl);
  try {
    const out = new Map<string, ActorSnapshot>();
    for (let p = 0; p < s.partitions; p++) {
      const hash = await redis.hgetall(`{${snapshotPrefix(s)}:${p}}:actors`);
      for (const [symbol, json] of Object.entries(hash)) out.set(symbol, JSON.parse(json) as ActorSnapshot);
    }
    return out;
  } finally {
    await redis.quit();
  }
}

/** Each symbol's state as recorded in Postgres (table actor_state): the authority on where its actor stands. */
export async function readRecords(db: PostgresClient): Promise<Map<string, ActorSnapshot>> {
  const { rows } = await db.query<{ symbol: string; state: string }>("SELECT symbol, state FROM actor_state");
  return new Map(rows.map(r => [r.symbol, JSON.parse(r.state) as ActorSnapshot]));
}

export async function deleteSnapshots(
  s: Pick<TestScenario, "groupId" | "topic" | "partitions">,
): Promise<void> {
  const redis = new Redis(STACK.redisUrl);
  try {
    const keys: string[] = [];
    for (let p = 0; p < s.partitions; p++) {
      const tag = `{${snapshotPrefix(s)}:${p}}`;
      keys.push(`${tag}:actors`, `${tag}:epoch`);
    }
    await redis.del(...keys);
  } finally {
    await redis.quit();
  }
}

export function openDatabase(url: string): PostgresClient {
  return new PostgresClient(url, 2);
}

/** A row of the `ticks` table: the actor's `TickResult`, its event time as `ts`, and its partition. */
export type TickRowRead = Omit<TickResult, "timestamp"> & { ts: number; partition: number };

export async function readTicks(db: PostgresClient): Promise<TickRowRead[]> {
  const { rows } = await db.query<TickRowRead>(
    `SELECT symbol, seq, extract(epoch FROM "timestamp")::float8 AS ts, opening_price AS open,
            closing_price AS close, high, low, volume, moving_average AS sma,
            exponential_moving_average AS ema, relative_strength_index AS rsi,
            kafka_partition AS partition, kafka_offset AS "offset"
     FROM ticks ORDER BY symbol COLLATE "C", seq`,
  );
  return rows;
}

/** The row the `ticks` table should hold for an actor's output. */
export function expectedRow(t: TickResult, partition: number): TickRowRead {
  return {
    symbol: t.symbol,
    seq: t.seq,
    ts: t.timestamp,
    open: t.open,
    close: t.close,
    high: t.high,
    low: t.low,
    volume: t.volume,
    sma: t.sma,
    ema: t.ema,
    rsi: t.rsi,
    partition,
    offset: t.offset,
  };
}

/** Every row the `ticks` table should hold after `placed` was processed, in `readTicks` order. */
export function expectedTickRows(placed: readonly Placed[], expected: Expected): TickRowRead[] {
  const partitionOf = new Map<string, number>();
  for (const p of placed)
    if ("stock_symbol" in p.message) partitionOf.set(p.message.stock_symbol, p.partition);
  return sortedByKey([...expected.ticks.keys()], s => s).flatMap(s =>
    expected.ticks.get(s)!.map(t => expectedRow(t, partitionOf.get(s)!)),
  );
}

/** Per symbol: row count, distinct seqs, lowest and highest seq. */
export async function seqSummary(
  db: PostgresClient,
): Promise<Map<string, { rows: number; distinct: number; min: number; max: number }>> {
  const { rows } = await db.query<{
    symbol: string;
    rows: number;
    distinct: number;
    min: number;
    max: number;
  }>(
    `SELECT symbol, count(*)::int AS rows, count(DISTINCT seq)::int AS distinct, min(seq) AS min, max(seq) AS max
     FROM ticks GROUP BY symbol`,
  );
  return new Map(rows.map(({ symbol, ...r }) => [symbol, r]));
}

export function sortedByKey<T>(xs: readonly T[], key: (x: T) => string | number): T[] {
  return [...xs].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}
