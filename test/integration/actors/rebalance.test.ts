import type { AppProcess } from "../../support/processes";
import { waitFor } from "../../support/stack";
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
  return ctx.startProcess(name, { KAFKA_CLIENT_ID: name, LOG_LEVEL: "info" });
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
