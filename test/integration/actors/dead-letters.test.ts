import type { PriceTick } from "../../../domain/messages";
import { partitionForKey } from "../../../lib/partitioner";
import { kafkaClient } from "../../support/stack";
import {
  actorsEnv,
  generateMessages,
  readTicks,
  replay,
  settingsOf,
  startActorsNode,
  useActorsScenario,
  waitUntilCommitted,
} from "./harness";

const PARTITIONS = 3;
const SYMBOL = "AAPL";
const HOME = partitionForKey(SYMBOL, PARTITIONS);
/** A key that lands in another partition than AAPL's, for a message whose key and symbol disagree. */
const FOREIGN_KEY = ["MSFT", "GOOGL", "AMZN", "TSLA", "NVDA"].find(
  k => partitionForKey(k, PARTITIONS) !== HOME,
)!;

const ctx = useActorsScenario("actors_dead", PARTITIONS, {
  setup: async s => {
    s.node = await startActorsNode(actorsEnv(s.scenario));
  },
  setupTimeoutMs: 120000,
  teardownTimeoutMs: 60000,
});

describe("dead letters", () => {
  it("parks each message no actor can apply with its position and reason, and goes on with the next", async () => {
    const { scenario, db } = ctx;
    const ticks = generateMessages({ seed: 11, symbols: [SYMBOL], ticks: 30 }) as PriceTick[];
    const invalidTick = { ...ticks[0], low: ticks[0].high * 2 };
    const nulName = "GDP\u0000";
    const nulEconomic = JSON.stringify({
      data_type: "economic_indicator",
      timestamp: 1_700_000_000,
      indicator_name: nulName,
      value: 1,
    });
    const bad: { key: string; value: string | null; reason: RegExp; stored?: [string, string] }[] = [
      { key: SYMBOL, value: "not json{", reason: /^not JSON/ },
      { key: SYMBOL, value: "[1,2,3]", reason: /must be a JSON object, got an array/ },
      { key: SYMBOL, value: JSON.stringify(invalidTick), reason: /^low must not be above/ },
      {
        key: SYMBOL,
        value: JSON.stringify({ data_type: "weather", stock_symbol: SYMBOL }),
        reason: /data_type/,
      },
      { key: SYMBOL, value: null, reason: /empty message value/ },
      // Postgres text cannot hold NUL characters: they are stored as U+FFFD, like invalid UTF-8.
      { key: SYMBOL, value: "\u0000bytes\u0000", reason: /^not JSON/, stored: [SYMBOL, "\ufffdbytes\ufffd"] },
      // JSON escapes the NUL in the payload, but the name would reach Postgres with a real one:
      // the message schema refuses control characters in names.
      {
        key: nulName,
        value: nulEconomic,
        reason: /indicator_name must not contain control characters/,
        stored: ["GDP\ufffd", nulEconomic],
      },
      {
        key: FOREIGN_KEY,
        value: JSON.stringify(ticks[1]),
        reason: new RegExp(
          `symbol ${SYMBOL} belongs to partition ${HOME}, found in ${partitionForKey(FOREIGN_KEY, PARTITIONS)}`,
        ),
      },
    ];
    // Valid ticks, the bad messages interleaved, valid ticks again, and a bad message last.
    const sequence: { key: string; value: string | null; reason?: RegExp; stored?: [string, string] }[] = [
      ...ticks.slice(0, 10).map(t => ({ key: SYMBOL, value: JSON.stringify(t) })),
      ...bad.slice(0, 3),
      ...ticks.slice(10, 20).map(t => ({ key: SYMBOL, value: JSON.stringify(t) })),
      ...bad.slice(3),
      ...ticks.slice(20).map(t => ({ key: SYMBOL, value: JSON.stringify(t) })),
      { key: SYMBOL, value: "{", reason: /^not JSON/ },
    ];
    const producer = kafkaClient("dead-letter-producer").producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    await producer.send({
      topic: scenario.topic,
      acks: -1,
      messages: sequence.map(m => ({ key: m.key, value: m.value })),
    });
    await producer.disconnect();

    await waitUntilCommitted(scenario.topic, scenario.groupId, 90000);

    const next = Array<number>(PARTITIONS).fill(0);
    const want: { partition: number; offset: number; key: string; payload: string | null; reason: RegExp }[] =
      [];
    const validOffsets: number[] = [];
    for (const m of sequence) {
      const partition = partitionForKey(m.key, PARTITIONS);
      const offset = next[partition]++;
      if (m.reason) {
        const [key, payload] = m.stored ?? [m.key, m.value];
        want.push({ partition, offset, key, payload, reason: m.reason });
      } else validOffsets.push(offset);
    }
    want.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    const { rows } = await db.query<{
      kafka_partition: number;
      kafka_offset: number;
      message_key: string;
      payload: string | null;
      reason: string;
    }>("SELECT kafka_partition, kafka_offset, message_key, payload, reason FROM dead_letters ORDER BY 1, 2");
    expect(rows.map(r => [r.kafka_partition, r.kafka_offset, r.message_key, r.payload])).toEqual(
      want.map(w => [w.partition, w.offset, w.key, w.payload]),
    );
    rows.forEach((r, i) => expect(r.reason).toMatch(want[i].reason));

    // Every valid tick went through, numbered without gaps, as if the bad messages were never there.
    const expected = replay(
      ticks.map((message, i) => ({ message, partition: HOME, offset: validOffsets[i] })),
      settingsOf({}),
    );
    const stored = await readTicks(db);
    expect(stored.map(r => [r.seq, r.offset, r.close, r.rsi])).toEqual(
      expected.ticks.get(SYMBOL)!.map(t => [t.seq, t.offset, t.close, t.rsi]),
    );
  }, 180000);
});
