import type { AppProcess } from "../../support/processes";
import { waitFor } from "../../support/stack";
import {
  connectProducer,
  countTickRows,
  expectedTickRows,
  generateMessages,
  PacedStream,
  place,
  readRecords,
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
 * The zombie of docs/architecture.md ("Fencing"): an actors process frozen (SIGSTOP, as in a long GC pause or a
 * network cut) in the middle of its work for longer than the session timeout. The group gives
 * its partitions to another process, which claims them in Postgres. When the frozen process wakes
 * up with its batches still in flight, it must neither overwrite the new owner's records nor
 * commit, nor hold the owner back with the transaction it froze in, and it must rejoin the group.
 */

const PARTITIONS = 4;
const SESSION_TIMEOUT_MS = 6000;

const ctx = useActorsScenario("actors_zombie", PARTITIONS, {
  // A failed test may leave the zombie frozen (SIGSTOP): continue it before it is killed.
  beforeKill: ({ processes }) => {
    for (const p of processes) if (p.pid && p.running) process.kill(p.pid, "SIGCONT");
  },
});

const tickCount = () => countTickRows(ctx.db);

function startProcess(name: string): AppProcess {
  return ctx.startProcess(name, {
    KAFKA_CLIENT_ID: name,
    KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
    LOG_LEVEL: "info",
  });
}

describe("a frozen actors process that wakes up after losing its partitions", () => {
  it("keeps out of the new owner's way and rejoins without a lost or repeated tick", async () => {
    const { scenario, db } = ctx;
    const messages = generateMessages({ seed: 61, symbols: SYMBOLS, ticks: 63000 });
    const placed = place(messages, PARTITIONS);
    const backlog = 60000;
    const producer = await connectProducer();
    ctx.producer = producer;
    await sendInOrder(producer, scenario.topic, messages.slice(0, backlog));

    const zombie = startProcess("actors-zombie");
    await zombie.waitForLine(/assigned partitions \[0, 1, 2, 3\]/, 90000);
    await waitFor("the first process to work", async () => (await tickCount()) > 1000, 60000, 20);
    process.kill(zombie.pid!, "SIGSTOP");
    const atFreeze = await tickCount();

    const owner = startProcess("actors-owner");
    // The group waits for the frozen member's session to expire, then gives everything to the owner.
    await owner.waitForLine(/assigned partitions \[0, 1, 2, 3\]/, 90000);
    const stream = new PacedStream(producer, scenario.topic, messages.slice(backlog), 500);
    ctx.stream = stream;
    await waitFor("the owner to work", async () => (await tickCount()) > atFreeze + 5000, 60000, 50);

    // Woken up with batches in flight, it finds out that it lost its partitions, from Postgres
    // refusing its transaction (fencing) or from Kafka refusing its commits and heartbeats,
    // whichever it reaches first; then it rejoins the group and takes its share again.
    process.kill(zombie.pid!, "SIGCONT");
    // Any generation after its first (1): a loaded machine may go through more rebalances than two.
    await zombie
      .waitForLine(/assigned partitions \[[\d, ]*\] \(generation (?!1\))\d+\)/, 90000)
      .catch(err => {
        throw new Error(`${(err as Error).message}\n--- zombie:\n${zombie.tail(60)}`);
      });
    await stream.done;
    await waitUntilCommitted(scenario.topic, scenario.groupId, 120000).catch(err => {
      throw new Error(
        `${(err as Error).message}\n--- zombie:\n${zombie.tail(80)}\n--- owner:\n${owner.tail(80)}`,
      );
    });
    for (const p of [zombie, owner]) expect(p.output.filter(l => /Crash|eachBatch/.test(l))).toEqual([]);

    const expected = replay(placed, settingsOf({}));
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    const records = await readRecords(db);
    for (const [symbol, actor] of expected.actors) expect(records.get(symbol)).toEqual(actor.snapshot());
    // The cache may hold a state the zombie wrote late (it is checked against the record before
    // any use), but never one ahead of the record.
    const snapshots = await readSnapshots(scenario);
    for (const [symbol, actor] of expected.actors)
      expect(snapshots.get(symbol)!.lastOffset).toBeLessThanOrEqual(actor.snapshot().lastOffset);
  }, 600000);
});
