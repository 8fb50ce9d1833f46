import { KafkaLog } from "../../../adapters/log/kafka-log";
import { messageKey, type StockMessage } from "../../../domain/messages";
import { SymbolActor } from "../../../domain/symbol-actor";
import { partitionForKey } from "../../../lib/partitioner";
import { AppProcess } from "../../support/processes";
import {
  createTopic,
  deleteTopic,
  freshDatabase,
  readTopic,
  STACK,
  uniqueName,
  waitFor,
  withAdmin,
} from "../../support/stack";
import {
  actorsEnv,
  deleteSnapshots,
  generateMessages,
  newScenario,
  openDatabase,
  settingsOf,
  startActorsNode,
  SYMBOLS,
  waitUntilCommitted,
  type TestScenario,
} from "./harness";

/**
 * Symbols are placed by KAFKA_PARTITIONS on every node, never by the topic's current partition
 * count: a topic grown while nodes run sends no valid tick to dead_letters; a node that finds the
 * topic and KAFKA_PARTITIONS apart refuses to start with one line saying what to do; and after
 * the documented change (drain, grow the topic, set KAFKA_PARTITIONS everywhere) the symbols that
 * moved to another partition carry on exactly.
 */

const cleanups: (() => Promise<unknown>)[] = [];
const processes: AppProcess[] = [];

afterAll(async () => {
  await Promise.all(processes.map(p => p.kill("SIGKILL")));
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}, 60000);

function kafkaLog(topic: string, partitions: number): KafkaLog {
  const log = new KafkaLog({
    brokers: STACK.kafkaBrokers.split(","),
    clientId: "partition-count-test",
    topic,
    partitions,
  });
  cleanups.push(() => log.close());
  return log;
}

async function produce(log: KafkaLog, messages: readonly StockMessage[]): Promise<void> {
  const producer = await log.createProducer();
  for (let i = 0; i < messages.length; i += 500)
    await producer.send(
      messages.slice(i, i + 500).map(m => ({ key: messageKey(m), value: JSON.stringify(m) })),
    );
  await producer.close();
}

async function growTopic(topic: string, count: number): Promise<void> {
  await withAdmin(admin => admin.createPartitions({ topicPartitions: [{ topic, count }] }));
  await waitFor(`topic ${topic} to have ${count} partitions`, () =>
    withAdmin(
      async admin =>
        (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length === count,
    ),
  );
}

async function scenario(
  prefix: string,
  partitions: number,
): Promise<{ s: TestScenario; db: ReturnType<typeof openDatabase> }> {
  const database = await freshDatabase();
  cleanups.push(database.drop);
  const db = openDatabase(database.url);
  cleanups.push(() => db.close());
  const s = newScenario(prefix, partitions, database.url);
  await createTopic(s.topic, partitions);
  cleanups.push(
    () => deleteTopic(s.topic),
    () => deleteSnapshots({ ...s, partitions: 8 }),
  );
  return { s, db };
}

describe("the partition count", () => {
  it("places every message by KAFKA_PARTITIONS, also on a topic that has grown since", async () => {
    const topic = uniqueName("grown_topic");
    await createTopic(topic, 5);
    cleanups.push(() => deleteTopic(topic));
    const keys = [
      "AAPL",
      "MSFT",
      "GOOGL",
      "AMZN",
      "TSLA",
      "BRK.B",
      "NVDA",
      "META",
      "NFLX",
      "ORCL",
      "IBM",
      "INTC",
    ];
    // Placed by 3, although the topic has 5 partitions: kafkajs's own partitioner would use 5.
    expect(keys.some(k => partitionForKey(k, 3) !== partitionForKey(k, 5))).toBe(true);
    const producer = await kafkaLog(topic, 3).createProducer();
    await producer.send(keys.map(key => ({ key, value: JSON.stringify({ key }) })));
    await producer.close();
    const records = await readTopic(topic, keys.length);
    expect(
      records.map(r => ({ key: r.key, partition: r.partition })).sort((a, b) => a.key!.localeCompare(b.key!)),
    ).toEqual([...keys].sort().map(key => ({ key, partition: partitionForKey(key, 3) })));
  }, 60000);

  it("refuses to start, in one line saying what to do, when the topic and KAFKA_PARTITIONS disagree", async () => {
    const { s } = await scenario("actors_count_mismatch", 3);
    const node = new AppProcess(
      "count-mismatch",
      actorsEnv(s, { KAFKA_PARTITIONS: "4", LOG_LEVEL: "info" }),
    ).start();
    processes.push(node);
    const code = await node.waitForExit();
    expect(code).not.toBe(0);
    const said = node.output.filter(l => /has 3 partitions but KAFKA_PARTITIONS is 4/.test(l));
    expect(said.length).toBeGreaterThanOrEqual(1);
    expect(said[0]).toMatch(/set KAFKA_PARTITIONS=3/);
  }, 120000);

  it("carries every symbol on exactly after the count is changed as documented", async () => {
    const { s, db } = await scenario("actors_count_change", 3);
    const messages = generateMessages({ seed: 71, symbols: SYMBOLS, ticks: 2000 });
    const [first, second] = [messages.slice(0, 1000), messages.slice(1000)];
    const moved = SYMBOLS.filter(symbol => partitionForKey(symbol, 3) !== partitionForKey(symbol, 5));
    expect(moved.length).toBeGreaterThan(0);

    // Under 3 partitions, drained, then stopped.
    await produce(kafkaLog(s.topic, 3), first);
    let node = await startActorsNode(actorsEnv(s));
    await waitUntilCommitted(s.topic, s.groupId, 90000);
    await node.broker.stop();

    // The topic grows to 5; every node now runs with KAFKA_PARTITIONS=5.
    await growTopic(s.topic, 5);
    const grown = { ...s, partitions: 5 };
    await produce(kafkaLog(s.topic, 5), second);
    node = await startActorsNode(actorsEnv(grown));
    cleanups.push(() => node.broker.stop());
    await waitUntilCommitted(s.topic, s.groupId, 90000);

    // One actor per symbol fed its messages in order computes what must be stored.
    const settings = settingsOf({});
    const actors = new Map<string, SymbolActor>();
    const want: {
      symbol: string;
      seq: number;
      close: number;
      sma: number | null;
      ema: number | null;
      rsi: number | null;
    }[] = [];
    messages.forEach((m, offset) => {
      if (!("stock_symbol" in m)) return;
      let actor = actors.get(m.stock_symbol);
      if (!actor) actors.set(m.stock_symbol, (actor = new SymbolActor(m.stock_symbol, settings)));
      const out = actor.apply(m, offset);
      if (out?.kind === "tick") {
        const t = out.tick;
        want.push({ symbol: t.symbol, seq: t.seq, close: t.close, sma: t.sma, ema: t.ema, rsi: t.rsi });
      }
    });
    want.sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : a.seq - b.seq));
    const { rows } = await db.query<(typeof want)[number]>(
      `SELECT symbol, seq, closing_price AS close, moving_average AS sma, exponential_moving_average AS ema,
              relative_strength_index AS rsi
       FROM ticks ORDER BY symbol COLLATE "C", seq`,
    );
    expect(rows).toEqual(want);
    const { rows: dead } = await db.query("SELECT reason FROM dead_letters");
    expect(dead).toEqual([]);
    // The moved symbols' records now name their new partition.
    const { rows: records } = await db.query<{ symbol: string; partition: number }>(
      "SELECT symbol, partition FROM actor_state WHERE symbol = ANY($1::text[]) ORDER BY symbol",
      [moved],
    );
    expect(records).toEqual(
      [...moved].sort().map(symbol => ({ symbol, partition: partitionForKey(symbol, 5) })),
    );
  }, 240000);
});
