import pg from "pg";
import type { AppProcess } from "../../support/processes";
import { waitFor, withAdmin } from "../../support/stack";
import {
  connectProducer,
  countTickRows,
  expectedTickRows,
  generateMessages,
  PacedStream,
  place,
  readSnapshots,
  readTicks,
  replay,
  sendInOrder,
  settingsOf,
  SYMBOLS,
  useActorsScenario,
  waitUntilCommitted,
} from "./harness";

/**
 * Scaling out while busy: a second actors process joins the group in the middle of a backlog,
 * so partitions move between processes with batches in flight. The actors must follow their
 * partitions through the snapshots without losing or repeating a tick.
 */

const PARTITIONS = 4;

const ctx = useActorsScenario("actors_rebalance", PARTITIONS);

const tickCount = () => countTickRows(ctx.db);

function startProcess(name: string): AppProcess {
  // kafkajs heartbeats only between batches: while the test holds the first process's batch
  // (below), a long session timeout keeps it in the group.
  return ctx.startProcess(name, {
    KAFKA_CLIENT_ID: name,
    LOG_LEVEL: "info",
    KAFKA_SESSION_TIMEOUT_MS: "45000",
  });
}

async function groupState(groupId: string): Promise<string> {
  const { groups } = await withAdmin(admin => admin.describeGroups([groupId]));
  return groups[0]?.state ?? "Unknown";
}

/**
 * Holds every write to `ticks` until released: the first process's batch waits inside its
 * transaction, so its backlog cannot drain however fast the machine is (reads stay allowed).
 */
async function holdTickWrites(databaseUrl: string): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query("BEGIN");
  await client.query("LOCK TABLE ticks IN EXCLUSIVE MODE");
  return async () => {
    await client.query("COMMIT");
    await client.end();
  };
}

describe("actors processes joining a busy group", () => {
  it("hands partitions over mid-batch without losing or repeating a tick", async () => {
    const { scenario, db } = ctx;
    const messages = generateMessages({ seed: 53, symbols: SYMBOLS, ticks: 63000 });
    const placed = place(messages, PARTITIONS);
    const backlog = 60000;
    const producer = await connectProducer();
    ctx.producer = producer;
    await sendInOrder(producer, scenario.topic, messages.slice(0, backlog));

    const first = startProcess("actors-first");
    await first.waitForLine(/assigned partitions \[0, 1, 2, 3\]/);
    const stream = new PacedStream(producer, scenario.topic, messages.slice(backlog), 500);
    ctx.stream = stream;
    await waitFor("the first process to work", async () => (await tickCount()) > 1000, 30000, 20);

    // The second process must join while the first still has a backlog. The first drains 60k
    // ticks in a few seconds on a fast machine, faster than a process starts on a loaded one,
    // so the test makes the precondition hold: it holds the first's writes until the group is
    // rebalancing, i.e. the second has asked to join.
    const release = await holdTickWrites(scenario.databaseUrl);
    let atJoin: number;
    let second: AppProcess;
    try {
      atJoin = await tickCount();
      second = startProcess("actors-second");
      await waitFor(
        "the group to rebalance for the second process",
        async () => (await groupState(scenario.groupId)) !== "Stable",
        40000,
        50,
      );
    } finally {
      await release();
    }
    await second.waitForLine(/assigned partitions \[\d+(, \d+)*\]/, 40000);
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
  }, 300000);
});
