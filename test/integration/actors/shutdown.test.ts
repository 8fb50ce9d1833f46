import type { Consumer } from "kafkajs";
import pg from "pg";
import { kafkaClient, waitFor, withAdmin } from "../../support/stack";
import {
  actorsEnv,
  committedOffsets,
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
  seqSummary,
  settingsOf,
  startActorsNode,
  SYMBOLS,
  useActorsScenario,
  waitUntilCommitted,
} from "./harness";

/**
 * SIGTERM to an actors process in the middle of a stream. A second group member that only
 * holds partitions (it never processes or commits) shows how fast the group reacts, and keeps
 * the database still while the stopped process's commits are compared with its rows.
 */

const PARTITIONS = 4;
/** Long, so that the partitions coming back within half of it can only be the process leaving. */
const SESSION_TIMEOUT_MS = 60000;
/** Generous: the product exits 1 when a shutdown takes longer (bin/start.ts), which would fail the test. */
const GRACE_MS = 30000;

let observer: Consumer | null = null;

const ctx = useActorsScenario("actors_sigterm", PARTITIONS, {
  beforeKill: async () => {
    await observer?.disconnect();
  },
});

const tickCount = () => countTickRows(ctx.db);

/**
 * Holds every write to `ticks` until released (reads stay allowed): the process's batch waits
 * inside its transaction, so it is in flight whatever the speed of the machine.
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

/** A group member that takes its share of partitions and pauses them: it reads and commits nothing. */
async function joinIdleMember(assignments: number[][]): Promise<Consumer> {
  const { scenario } = ctx;
  const consumer = kafkaClient("idle-member").consumer({
    groupId: scenario.groupId,
    sessionTimeout: SESSION_TIMEOUT_MS,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100,
  });
  consumer.on(consumer.events.GROUP_JOIN, e => {
    assignments.push([...(e.payload.memberAssignment[scenario.topic] ?? [])].sort((a, b) => a - b));
  });
  await consumer.connect();
  await consumer.subscribe({ topic: scenario.topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async () => undefined,
  });
  consumer.pause([{ topic: scenario.topic }]);
  return consumer;
}

describe("graceful shutdown of an actors process", () => {
  it("on SIGTERM finishes and commits its batches, leaves the group at once and exits 0", async () => {
    const { scenario, db } = ctx;
    const messages = generateMessages({ seed: 23, symbols: SYMBOLS, ticks: 64000 });
    const placed = place(messages, PARTITIONS);
    const backlog = 60000;

    // A backlog keeps the process busy, so the signal lands in the middle of its batches. The
    // idle member joins first; the process then takes its share of the partitions from it.
    const producer = await connectProducer();
    ctx.producer = producer;
    await sendInOrder(producer, scenario.topic, messages.slice(0, backlog));
    const assignments: number[][] = [];
    observer = await joinIdleMember(assignments);
    await waitFor(
      "the idle member to hold every partition",
      () => assignments.at(-1)?.length === PARTITIONS,
      60000,
    );
    const app = ctx.startProcess("actors-a", {
      KAFKA_CLIENT_ID: "actors-a",
      KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
      LOG_LEVEL: "info",
    });
    await app.waitForLine(/assigned partitions \[\d/, 90000);
    const stream = new PacedStream(producer, scenario.topic, messages.slice(backlog), 400);
    ctx.stream = stream;
    await waitFor("the first rows", async () => (await tickCount()) > 1000, 60000, 20);

    // The signal must land in the middle of a batch. The process drains its share of the backlog
    // in seconds on a fast machine, faster than the test may get to send it on a loaded one, so the
    // test makes it hold: it holds the process's writes until the process has taken the signal.
    let stopped: Promise<number | null>;
    const release = await holdTickWrites(scenario.databaseUrl);
    try {
      expect(await tickCount()).toBeLessThan(backlog / 2);
      stopped = app.kill("SIGTERM");
      await app.waitForLine(/SIGTERM: stopping/, 30000);
    } finally {
      await release();
    }
    const code = await stopped;
    // Exit code 0 also says it finished within its grace period: past it, the process exits 1.
    expect({ code, tail: code === 0 ? "" : app.tail() }).toEqual({ code: 0, tail: "" });
    expect(app.output.some(l => /actors stopped: offsets committed, group left/.test(l))).toBe(true);

    // Nothing processes the topic now: whatever the process stored, it also committed.
    const committed = await committedOffsets(scenario.topic, scenario.groupId);
    const { rows } = await db.query<{ partition: number; n: number; max: number }>(
      `SELECT kafka_partition AS partition, count(*)::int AS n, max(kafka_offset) AS max FROM ticks GROUP BY 1`,
    );
    for (const r of rows) {
      expect({ partition: r.partition, rows: r.n, nextAfterRows: r.max + 1 }).toEqual({
        partition: r.partition,
        rows: committed[r.partition],
        nextAfterRows: committed[r.partition],
      });
    }

    // It left the group: the idle member is alone in it, long before the session timeout.
    const group = await withAdmin(admin => admin.describeGroups([scenario.groupId]));
    expect(group.groups[0].members.map(m => m.clientId)).not.toContain("actors-a");
    await waitFor(
      "the idle member to get the partitions back",
      () => assignments.length >= 3 && assignments.at(-1)?.length === PARTITIONS,
      SESSION_TIMEOUT_MS / 2,
    );

    // Another actors node finishes the stream; every tick has its row exactly once.
    await observer.disconnect();
    observer = null;
    await stream.done;
    ctx.node = await startActorsNode(actorsEnv(scenario));
    await waitUntilCommitted(scenario.topic, scenario.groupId, 120000);

    const expected = replay(placed, settingsOf({}));
    const summary = await seqSummary(db);
    for (const [symbol, ticks] of expected.ticks) {
      expect(summary.get(symbol)).toEqual({
        rows: ticks.length,
        distinct: ticks.length,
        min: 1,
        max: ticks.length,
      });
    }
    const stored = await readTicks(db);
    expect(stored).toEqual(expectedTickRows(placed, expected));
    const snapshots = await readSnapshots(scenario);
    for (const [symbol, actor] of expected.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
  }, 600000);
});
