import type { Producer } from "kafkajs";
import { AppProcess } from "../../support/processes";
import { createTopic, deleteTopic, freshDatabase, uniqueName, waitFor } from "../../support/stack";
import {
  actorsEnv,
  connectProducer,
  deleteSnapshots,
  expectedTickRows,
  generateMessages,
  openDatabase,
  PacedStream,
  place,
  readSnapshots,
  readTicks,
  replay,
  sendInOrder,
  settingsOf,
  SYMBOLS,
  waitUntilCommitted,
  type TestScenario,
} from "./harness";

/**
 * Scaling out while busy: a second actors process joins the group in the middle of a backlog,
 * so partitions move between processes with batches in flight. The actors must follow their
 * partitions through the snapshots without losing or repeating a tick.
 */

const PARTITIONS = 4;

let scenario: TestScenario;
let dropDatabase: () => Promise<void>;
let db: ReturnType<typeof openDatabase>;
let producer: Producer | null = null;
let stream: PacedStream | null = null;
const processes: AppProcess[] = [];

beforeAll(async () => {
  const database = await freshDatabase();
  dropDatabase = database.drop;
  db = openDatabase(database.url);
  scenario = {
    topic: uniqueName("actors_rebalance"),
    groupId: uniqueName("actors_rebalance_group"),
    partitions: PARTITIONS,
    databaseUrl: database.url,
  };
  await createTopic(scenario.topic, PARTITIONS);
}, 30000);

afterAll(async () => {
  await stream?.stop();
  await producer?.disconnect();
  await Promise.all(processes.map(p => p.kill("SIGKILL")));
  await db?.close();
  if (scenario) {
    await deleteTopic(scenario.topic);
    await deleteSnapshots(scenario);
  }
  await dropDatabase?.();
}, 60000);

async function tickCount(): Promise<number> {
  const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ticks");
  return rows[0].n;
}

function startProcess(name: string): AppProcess {
  const p = new AppProcess(name, actorsEnv(scenario, { KAFKA_CLIENT_ID: name, LOG_LEVEL: "info" })).start();
  processes.push(p);
  return p;
}

describe("actors processes joining a busy group", () => {
  it("hands partitions over mid-batch without losing or repeating a tick", async () => {
    const messages = generateMessages({ seed: 53, symbols: SYMBOLS, ticks: 63000 });
    const placed = place(messages, PARTITIONS);
    const backlog = 60000;
    producer = await connectProducer();
    await sendInOrder(producer, scenario.topic, messages.slice(0, backlog));

    const first = startProcess("actors-first");
    await first.waitForLine(/assigned partitions \[0, 1, 2, 3\]/);
    stream = new PacedStream(producer, scenario.topic, messages.slice(backlog), 500);
    await waitFor("the first process to work", async () => (await tickCount()) > 1000, 30000, 20);

    const second = startProcess("actors-second");
    await second.waitForLine(/assigned partitions \[\d+(, \d+)*\]/, 40000);
    const atJoin = await tickCount();
    await stream.done;
    await waitUntilCommitted(scenario.topic, scenario.groupId, 60000);

    const ownership = [first, second].map(p => p.output.filter(l => /assigned partitions/.test(l)));
    // The second process joined while the first still had a backlog to work through.
    expect({ ownership, before: atJoin < backlog }).toEqual({ ownership, before: true });
    for (const p of [first, second]) {
      expect(p.output.filter(l => /Crash|Error when calling eachBatch/.test(l))).toEqual([]);
    }

    const expected = replay(placed, settingsOf({}));
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    const snapshots = await readSnapshots(scenario);
    for (const [symbol, actor] of expected.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
  }, 120000);
});
