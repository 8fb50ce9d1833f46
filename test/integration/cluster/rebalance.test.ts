import { spawn } from "node:child_process";
import path from "node:path";
import pg from "pg";
import type { ActorView } from "../../../domain/symbol-actor";
import { partitionForKey } from "../../../lib/partitioner";
import type { AppProcess } from "../../support/processes";
import { createTopic, deleteTopic, freshDatabase, ROOT, uniqueName, waitFor } from "../../support/stack";
import { waitUntilCommitted } from "../actors/harness";
import {
  comparableView,
  getJson,
  makeTicks,
  nodeEnv,
  postJson,
  referenceRun,
  startNode,
  startNodeOnFreePorts,
  waitForOwnership,
  type ClusterEnv,
  type IndicatorRow,
} from "./cluster-harness";

const TICKS = 20_000;
const SYMBOLS = 50;
const PARTITIONS = 12;
const BATCH = 100;

interface StateReply {
  nodeID: string;
  partition: number;
  state: ActorView;
}

/**
 * Three actors nodes and one gateway node, as real processes on real NATS, Kafka, Postgres and
 * Redis. During a stream of 20,000 ticks a fourth actors node joins and one is SIGKILLed; the
 * results must then be exactly once and equal to a single-node run, and queries must follow the
 * partitions to their new owners.
 */
describe("cluster: actors rebalance on scale-out and scale-in", () => {
  const processes: AppProcess[] = [];
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let cluster: ClusterEnv;
  let base = "";
  let metricsPort = 0;
  const ticks = makeTicks(TICKS, SYMBOLS, "rebalance");
  const reference = referenceRun(ticks);

  const owned = (symbol: string, table: { partition: number; nodeID: string }[]) =>
    table.find(row => row.partition === partitionForKey(symbol, PARTITIONS))?.nodeID;

  beforeAll(async () => {
    db = await freshDatabase();
    cluster = {
      topic: uniqueName("cluster"),
      groupId: uniqueName("cluster_group"),
      namespace: uniqueName("cluster"),
      databaseUrl: db.url,
      partitions: PARTITIONS,
    };
    await createTopic(cluster.topic, PARTITIONS);
    // Ports are picked just before the processes listen on them; a start that lost one is retried.
    const [gateway, actors1, ...others] = await Promise.all([
      startNodeOnFreePorts("gateway", ["PORT"], ({ PORT }) =>
        nodeEnv(cluster, "gateway-1", "gateway,ingest,query,notifier", { PORT: String(PORT) }),
      ),
      startNodeOnFreePorts("actors-1", ["METRICS_PORT"], ({ METRICS_PORT }) =>
        nodeEnv(cluster, "actors-1", "actors", { METRICS_PORT: String(METRICS_PORT) }),
      ),
      startNode("actors-2", nodeEnv(cluster, "actors-2", "actors")),
      startNode("actors-3", nodeEnv(cluster, "actors-3", "actors")),
    ]);
    processes.push(gateway.process, actors1.process, ...others);
    base = `http://127.0.0.1:${gateway.ports.PORT}`;
    metricsPort = actors1.ports.METRICS_PORT;
    await waitFor(
      "the gateway to be ready",
      async () => (await getJson(`${base}/readyz`)).status === 200,
      90000,
    );
    await waitForOwnership(base, ["actors-1", "actors-2", "actors-3"], PARTITIONS, 90000);
  }, 300000);

  afterAll(async () => {
    await Promise.all(processes.map(p => p.kill("SIGKILL")));
    await deleteTopic(cluster.topic);
    await db.drop();
  }, 60000);

  it("moves actors with nothing lost or duplicated, and queries follow them", async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const timings: Record<string, number> = {};
    const stateOf = (symbol: string) => getJson<StateReply>(`${base}/api/symbols/${symbol}`);
    try {
      let joined: Promise<void> | null = null;
      let killed: Promise<void> | null = null;
      for (let i = 0; i < TICKS; i += BATCH) {
        const r = await postJson(`${base}/ingest`, ticks.slice(i, i + BATCH));
        expect(r.status).toBe(200);

        if (i === 4000) {
          // Before any move: the live state comes from the node the cluster map names.
          const map = (
            await getJson<{ partitions: { partition: number; nodeID: string }[] }>(`${base}/api/cluster`)
          ).body;
          const symbol = ticks[0].stock_symbol;
          const live = await waitFor(
            `${symbol} to be live`,
            async () => {
              const s = await stateOf(symbol);
              return s.status === 200 ? s.body : null;
            },
            60000,
          );
          expect(live.nodeID).toBe(owned(symbol, map.partitions));
        }
        if (i === 7000) {
          const t0 = Date.now();
          joined = startNode("actors-4", nodeEnv(cluster, "actors-4", "actors")).then(async p => {
            processes.push(p);
            await waitForOwnership(base, ["actors-1", "actors-2", "actors-3", "actors-4"], PARTITIONS, 90000);
            timings.scaleOutSeconds = (Date.now() - t0) / 1000;
          });
        }
        if (i === 14000) {
          await joined;
          const victim = processes.find(p => p.name === "actors-2")!;
          const t0 = Date.now();
          await victim.kill("SIGKILL");
          killed = waitForOwnership(base, ["actors-1", "actors-3", "actors-4"], PARTITIONS, 90000).then(
            () => {
              timings.nodeDeathSeconds = (Date.now() - t0) / 1000;
            },
          );
        }
      }
      await killed;

      const { rows: counted } = await waitFor(
        "every tick to be processed",
        async () => {
          const r = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM ticks");
          return r.rows[0].n === TICKS ? r : null;
        },
        120000,
        500,
      );
      expect(counted[0].n).toBe(TICKS);

      // Exactly once: per symbol, seq runs 1..n with no gap and no duplicate.
      const { rows: perSymbol } = await pool.query<{
        symbol: string;
        n: number;
        distinct_seq: number;
        max_seq: number;
      }>(
        "SELECT symbol, count(*)::int AS n, count(DISTINCT seq)::int AS distinct_seq, max(seq)::int AS max_seq FROM ticks GROUP BY symbol",
      );
      expect(perSymbol).toHaveLength(SYMBOLS);
      for (const row of perSymbol) {
        const expected = reference.actors.get(row.symbol)!.seq;
        expect({ symbol: row.symbol, n: row.n, distinct: row.distinct_seq, max: row.max_seq }).toEqual({
          symbol: row.symbol,
          n: expected,
          distinct: expected,
          max: expected,
        });
      }

      // Same results as one uninterrupted node: every stored indicator, bit for bit.
      const { rows: stored } = await pool.query<IndicatorRow>(
        `SELECT symbol, seq::int AS seq, moving_average AS sma, exponential_moving_average AS ema, relative_strength_index AS rsi
         FROM ticks ORDER BY symbol COLLATE "C", seq`,
      );
      expect(stored).toEqual(reference.rows);

      // Final live state of every symbol equals the reference, served by the partition's current owner.
      const map = (
        await getJson<{ partitions: { partition: number; nodeID: string }[] }>(`${base}/api/cluster`)
      ).body;
      for (const [symbol, actor] of reference.actors) {
        const s = await stateOf(symbol);
        expect(s.status).toBe(200);
        expect(s.body.nodeID).toBe(owned(symbol, map.partitions));
        expect(s.body.nodeID).not.toBe("actors-2");
        expect(comparableView(s.body.state)).toEqual(comparableView(actor.view()));
      }

      const { rows: signalRows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM signals");
      expect(signalRows[0].n).toBe(reference.signals);
      expect(reference.signals).toBeGreaterThan(0);

      console.log(
        `rebalance timings: partitions moved to a joining node in ${timings.scaleOutSeconds?.toFixed(1)} s, ` +
          `away from a SIGKILLed node in ${timings.nodeDeathSeconds?.toFixed(1)} s (session timeout 6 s)`,
      );
    } finally {
      await pool.end();
    }
  }, 420000);

  it("exports the custom metrics on an actors node", async () => {
    // The lag gauge is set by an offset commit since the node's last assignment: a tick on every
    // partition (symbols of their own, which no other test counts) makes one happen.
    const now = Math.floor(Date.now() / 1000);
    const probes = Array.from({ length: 48 }, (_, i) => ({
      stock_symbol: `MX${i}`,
      opening_price: 100,
      closing_price: 100,
      high: 101,
      low: 99,
      volume: 10,
      timestamp: now,
    }));
    expect((await postJson(`${base}/ingest`, probes)).status).toBe(200);
    const text = await waitFor(
      "a committed offset on the actors node",
      async () => {
        const t = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return t.includes("stock_consumer_lag{") ? t : null;
      },
      60000,
      200,
    );
    for (const name of [
      "stock_ticks_processed_total",
      "stock_batch_persist_latency_seconds_bucket",
      "stock_snapshot_latency_seconds_bucket",
      "stock_actors_active",
      "stock_partitions_owned",
      "stock_rebalances_total",
      "stock_consumer_lag",
    ]) {
      expect(text).toContain(name);
    }
  });

  it("answers the REPL commands against the live cluster", async () => {
    const symbol = ticks[0].stock_symbol;
    // After the moves the actor is only reloaded on its next message: send one so it is live.
    const last = ticks.filter(t => t.stock_symbol === symbol).at(-1)!;
    expect((await postJson(`${base}/ingest`, { ...last, timestamp: last.timestamp + 1 })).status).toBe(200);
    const expectedSeq = reference.actors.get(symbol)!.seq + 1;
    await waitFor(
      `${symbol} to apply one more tick`,
      async () => {
        const r = await getJson<StateReply>(`${base}/api/symbols/${symbol}`);
        return r.status === 200 && r.body.state.seq === expectedSeq;
      },
      60000,
    );
    // An actor applies a tick before its offset is committed: "total lag: 0" below needs the commit.
    await waitUntilCommitted(cluster.topic, cluster.groupId, 60000);
    const output = await runRepl(cluster, [`actor ${symbol}`, `snapshot ${symbol}`, "actors", "lag"]);
    expect(output).toMatch(/all 12 partitions owned/);
    expect(output).toMatch(
      new RegExp(`${symbol.replace(".", "\\.")} lives on node actors-\\d, partition \\d+`),
    );
    expect(output).toMatch(
      new RegExp(
        `snapshot of ${symbol.replace(".", "\\.")} written by actors-\\d: partition \\d+, epoch \\d+`,
      ),
    );
    expect(output).toMatch(/node actors-\d: \d+ live actor\(s\)/);
    expect(output).toMatch(/total lag: 0/);
    expect(output).not.toMatch(/actors-2/);
  }, 240000);
});

/**
 * Drives the REPL as a user would: once its prompt is up, `partitions` until it has discovered the
 * whole cluster (a node that has just joined NATS learns of the others one by one), then
 * `commands`, and only after the last one has answered ("total lag: ...") the end of input,
 * which closes the REPL and stops its node. Resolves with everything the REPL printed.
 */
async function runRepl(cluster: ClusterEnv, commands: string[]): Promise<string> {
  const env = nodeEnv(cluster, "repl", "gateway");
  const child = spawn(process.execPath, [path.join(ROOT, "dist/bin/repl.js")], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", d => (output += d.toString()));
  child.stderr.on("data", d => (output += d.toString()));
  const exited = new Promise<void>(resolve => child.on("exit", () => resolve()));
  const alive = () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error("the REPL exited");
  };
  try {
    await waitFor("the REPL's prompt", () => (alive(), output.includes("stock $")), 90000, 100);
    await waitFor(
      "the REPL to see every partition owned",
      async () => {
        alive();
        const from = output.length;
        child.stdin.write("partitions\n");
        const answer = await waitFor(
          "an answer to `partitions`",
          () => /all \d+ partitions owned|unowned partitions|no node runs/.exec(output.slice(from))?.[0],
          30000,
          50,
        );
        return answer.startsWith("all ");
      },
      90000,
      500,
    );
    const from = output.length;
    child.stdin.write(commands.join("\n") + "\n");
    await waitFor(
      "the last command to answer",
      () => (alive(), /total lag: \d+/.test(output.slice(from))),
      60000,
      100,
    );
    child.stdin.end();
    await waitFor("the REPL to exit", () => child.exitCode !== null || child.signalCode !== null, 30000);
    return output;
  } catch (err) {
    throw new Error(`${(err as Error).message}\nREPL output:\n${output}`);
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
}
