import type { ActorView } from "../../../domain/symbol-actor";
import type { StockNode } from "../../../app/node";
import { waitFor } from "../../support/stack";
import {
  actorsEnv,
  expectedTickRows,
  generateMessages,
  place,
  produceAll,
  readSnapshots,
  readTicks,
  replay,
  settingsOf,
  startActorsNode,
  SYMBOLS,
  useActorsScenario,
  waitUntilCommitted,
  type TestScenario,
} from "./harness";

/**
 * Idle actors leave memory (ACTOR_IDLE_MS) and come back from their snapshots on their next
 * message, in the same process: memory follows the active symbols, and results do not change.
 */

const PARTITIONS = 3;

const ctx = useActorsScenario("actors_idle", PARTITIONS, {
  setup: async s => {
    s.node = await startNode(s.scenario);
  },
  setupTimeoutMs: 120000,
  teardownTimeoutMs: 60000,
});

function startNode(scenario: TestScenario): Promise<StockNode> {
  return startActorsNode(actorsEnv(scenario, { ACTOR_IDLE_MS: "1000" }));
}

async function liveActors(): Promise<number> {
  const reply = await ctx.node!.broker.call<{ actors: number }>("actors.partitions");
  return reply.actors;
}

describe("passivation of idle actors", () => {
  it("drops idle actors from memory and restores them from their snapshots on their next tick", async () => {
    const { scenario, db, node } = ctx;
    const messages = generateMessages({ seed: 71, symbols: SYMBOLS, ticks: 3000, side: 100 });
    const placed = place(messages, PARTITIONS);
    const [first, second] = [messages.slice(0, 1500), messages.slice(1500)];

    await produceAll(scenario.topic, first);
    await waitUntilCommitted(scenario.topic, scenario.groupId, 90000);
    // ACTOR_IDLE_MS is 1 s and the sweep runs every second: generous for a loaded machine.
    await waitFor("the idle actors to be passivated", async () => (await liveActors()) === 0, 60000);

    // A passivated actor's state is still served, from its snapshot.
    const soFar = replay(place(first, PARTITIONS), settingsOf({}));
    for (const [symbol, actor] of soFar.actors) {
      const reply = await node!.broker.call<{ state: ActorView }, { symbol: string }>("actors.state", {
        symbol,
      });
      expect(reply.state).toEqual(actor.view());
    }

    await produceAll(scenario.topic, second);
    await waitUntilCommitted(scenario.topic, scenario.groupId, 90000);
    const expected = replay(placed, settingsOf({}));
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    const snapshots = await readSnapshots(scenario);
    for (const [symbol, actor] of expected.actors) expect(snapshots.get(symbol)).toEqual(actor.snapshot());
  }, 300000);
});
